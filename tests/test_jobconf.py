"""Job configuration: layered TOML files, --set overrides, errors naming the key and the file; the conf/ files."""

import importlib
import re
from pathlib import Path

import pytest

from sparknmf import NMF
from sparknmf.pipeline.jobconf import REQUIRED, ConfError, Option, load_conf, params_section, parse_override
from sparknmf.pipeline.jobrun import SPARK_SECTION, nmf_section

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("factorize", "rank_survey", "topics", "recommend")

SCHEMA = {
    "input": {"path": Option("path"), "header": Option("bool", False)},
    "nmf": nmf_section(),
    "survey": {"ks": Option("list[int]", [2, 3]), "names": Option("list[str]", [], choices=("a", "b"))},
    "spark": SPARK_SECTION,
}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_files_layer_and_overrides_win(tmp_path):
    base = write(tmp_path, "base.toml", '[input]\npath = "v.mtx"\n[nmf]\nk = 3\nalgorithm = "hals"\n')
    job = write(tmp_path, "job.toml", '[nmf]\nk = 5\ntol = 0\n[spark.conf]\n"spark.executor.memory" = "8g"\n')
    conf = load_conf(SCHEMA, [base, job], ["nmf.max_iter=7", "survey.ks=[2, 4]", "spark.conf.spark.x=1"])
    assert conf["nmf"]["k"] == 5 and conf["nmf"]["algorithm"] == "hals" and conf["nmf"]["max_iter"] == 7
    assert conf["nmf"]["tol"] == 0.0 and isinstance(conf["nmf"]["tol"], float)  # an integer is a valid number
    assert conf["nmf"]["seed"] == NMF().getSeed()  # defaults come from the Estimator
    assert conf["survey"]["ks"] == [2, 4]
    assert conf["spark"]["conf"] == {"spark.executor.memory": "8g", "spark.x": 1}
    assert conf.source("nmf.k") == str(job) and conf.source("nmf.algorithm") == str(base)
    assert conf.source("nmf.max_iter") == "--set nmf.max_iter=7" and conf.source("nmf.beta") == "default"
    assert conf.params("nmf")["maxIter"] == 7 and conf.params("nmf")["k"] == 5
    assert NMF(**conf.params("nmf")).getAlgorithm() == "hals"


@pytest.mark.parametrize("text, expected", [
    ("als.rank=50", ("als", "rank", 50)),
    ("nmf.tol=1e-6", ("nmf", "tol", 1e-6)),
    ('nmf.algorithm="snmf/r"', ("nmf", "algorithm", "snmf/r")),
    ("nmf.algorithm=snmf/r", ("nmf", "algorithm", "snmf/r")),  # not TOML: a plain string
    ("input.path=/data/v.mtx", ("input", "path", "/data/v.mtx")),
    ("survey.ks=[2,3,4]", ("survey", "ks", [2, 3, 4])),
    ("input.header=true", ("input", "header", True)),
    (" nmf.k = 4 ", ("nmf", "k", 4)),
])
def test_override_syntax(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["nmf.k", "k=5", ".k=5", "nmf.=5", "=5"])
def test_malformed_override_is_an_error(text):
    with pytest.raises(ConfError, match=r"--set .*expected SECTION\.KEY=VALUE, e\.g\. --set als\.rank=50"):
        parse_override(text)


@pytest.mark.parametrize("text, message", [
    ('[nmf]\nkk = 3\n', r"{f}: unknown key nmf\.kk; \[nmf\] has \[.*'k'.*\]"),
    ('[nfm]\nk = 3\n', r"{f}: unknown section \[nfm\]; this job knows \['input', 'nmf', 'spark', 'survey'\]"),
    ('k = 3\n', r"{f}: k = 3 is outside any section"),
    ('[nmf]\nk = "ten"\n', r"{f}: nmf\.k must be an integer, got 'ten' \(string\)"),
    ('[nmf]\nk = 2.5\n', r"{f}: nmf\.k must be an integer, got 2\.5 \(number\)"),
    ('[nmf]\ntol = true\n', r"{f}: nmf\.tol must be a number, got True \(boolean\)"),
    ('[input]\nheader = 1\n', r"{f}: input\.header must be true or false, got 1 \(integer\)"),
    ('[survey]\nks = [2, "3"]\n', r"{f}: survey\.ks must be an array of integers"),
    ('[survey]\nnames = ["a", "c"]\n', r"{f}: survey\.names must contain only values among \['a', 'b'\]"),
    ('[nmf]\nk = 0\n', r"{f}: nmf\.k must be an integer >= 1, got 0"),
    ('[nmf]\nalgorithm = "als"\n', r"{f}: nmf\.algorithm must be one of \['auto', 'bpp', "),
    ('[spark.conf]\nx = [1]\n', r"{f}: spark\.conf must be a table of name = string, number or boolean"),
    ('[nmf.extra]\nx = 1\n', r"{f}: unknown section \[nmf\.extra\]"),
    ('[nmf]\nk = \n', r"{f}: not valid TOML"),
])
def test_bad_files_name_the_key_and_file(tmp_path, text, message):
    path = write(tmp_path, "bad.toml", text + ("" if text.startswith("[input]") else '\n[input]\npath = "v"\n'))
    with pytest.raises(ConfError, match=message.format(f=re.escape(str(path)))):
        load_conf(SCHEMA, [path])


def test_bad_override_names_the_argument(tmp_path):
    path = write(tmp_path, "ok.toml", '[input]\npath = "v"\n')
    with pytest.raises(ConfError, match=r"--set nmf\.k=ten: nmf\.k must be an integer, got 'ten' \(string\)"):
        load_conf(SCHEMA, [path], ["nmf.k=ten"])
    with pytest.raises(ConfError, match=r"--set nmf\.kk=3: unknown key nmf\.kk"):
        load_conf(SCHEMA, [path], ["nmf.kk=3"])


def test_missing_file_and_missing_required_key(tmp_path):
    with pytest.raises(ConfError, match=r"nope\.toml: no such configuration file"):
        load_conf(SCHEMA, [tmp_path / "nope.toml"])
    empty = write(tmp_path, "empty.toml", "")
    with pytest.raises(ConfError, match=r"input\.path is required but set in none of: .*empty\.toml "
                                        r"\(add it under \[input\] or pass --set input\.path=\.\.\.\)"):
        load_conf(SCHEMA, [empty])


def test_environment_variables_in_paths(tmp_path, monkeypatch):
    path = write(tmp_path, "env.toml", '[input]\npath = "${SPARKNMF_TEST_DIR}/v.mtx"\n')
    monkeypatch.setenv("SPARKNMF_TEST_DIR", "/data")
    assert load_conf(SCHEMA, [path])["input"]["path"] == "/data/v.mtx"
    monkeypatch.delenv("SPARKNMF_TEST_DIR")
    with pytest.raises(ConfError, match=r"env\.toml: input\.path = '\$\{SPARKNMF_TEST_DIR\}/v\.mtx' uses the "
                                        r"environment variable SPARKNMF_TEST_DIR, which is not set"):
        load_conf(SCHEMA, [path])


def test_error_after_loading_names_value_and_source(tmp_path):
    conf = load_conf(SCHEMA, [write(tmp_path, "a.toml", '[input]\npath = "x.mtx"\n')])
    err = conf.error("input.path", "no such file or folder")
    assert str(err) == f"{tmp_path / 'a.toml'}: input.path = 'x.mtx': no such file or folder"


def test_params_section_follows_the_estimator():
    section = params_section(NMF, exclude=("featuresCol",), defaults={"k": 7})
    assert section["k"].default == 7 and section["k"].param == "k" and section["k"].kind == "int"
    assert section["max_iter"].param == "maxIter" and section["max_iter"].default == 200
    assert section["algorithm"].check.describe().startswith("one of")
    assert "features_col" not in section and "row_col" in section
    with pytest.raises(ValueError, match=r"NMF has no Params \['nope'\]"):
        params_section(NMF, defaults={"nope": 1})


def _job(name):
    return importlib.import_module(f"jobs.{name}")


@pytest.mark.parametrize("name", JOBS)
def test_every_option_is_documented_in_the_jobs_file(name, monkeypatch):
    """conf/<job>.toml sets every key of the job's schema, each under a comment, and loads as it is."""
    monkeypatch.setenv("SPARKNMF_DATA", "/data")
    schema = _job(name).SCHEMA
    path = ROOT / "conf" / f"{name}.toml"
    lines = path.read_text().splitlines()
    conf = load_conf({**schema, "spark": SPARK_SECTION}, [path])
    for section, options in schema.items():
        for key in options:
            assert conf.source(f"{section}.{key}") == str(path), f"{path} does not set {section}.{key}"
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            before = lines[number - 1]
            assert before.startswith("#") or re.match(r"^[a-z_]+ = ", before), \
                f"{path}:{number + 1}: {line!r} has no comment"


@pytest.mark.parametrize("name", ["local", "cluster"])
def test_spark_files_cover_the_spark_section(name):
    path = ROOT / "conf" / f"{name}.toml"
    conf = load_conf({"spark": SPARK_SECTION}, [path])
    for key in SPARK_SECTION:
        assert conf.source(f"spark.{key}") == str(path)
    assert REQUIRED not in conf["spark"].values()
    if name == "cluster":
        assert conf["spark"]["master"] == "yarn" and conf["spark"]["checkpoint_dir"].startswith("/mnt/shared")
        assert "spark.executor.memory" in conf["spark"]["conf"] and "spark.executor.cores" in conf["spark"]["conf"]
