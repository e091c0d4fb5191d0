"""The jobs as installed commands (issue 22, item 2): ``sparknmf-factorize``, ``sparknmf-rank-survey``,
``sparknmf-topics`` and ``sparknmf-recommend``, with ``--print-config``, ``--dry-run`` and ``--log-level``.

The commands come from ``[project.scripts]`` once the package is installed (``pip install -e .``, as
.ci/run does); each is run here in a subprocess, as a user would, on each job's own conf/<job>.toml with
``SPARKNMF_DATA`` pointing at tiny stand-ins of the real files.  No test here starts Spark.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from sparknmf.pipeline.jobconf import REQUIRED, ConfError, load_conf, tomllib
from sparknmf.pipeline.jobrun import SPARK_SECTION
from sparknmf.pipeline.jobs import JOBS, command, script

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

MTX = "%%MatrixMarket matrix coordinate real general\n3 4 5\n1 1 1.0\n1 2 2.0\n2 3 1.5\n3 4 4.0\n3 1 0.5\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A stand-in for SPARKNMF_DATA: the files the jobs' conf files name, tiny and valid."""
    root = tmp_path_factory.mktemp("data")
    (root / "associated_press").mkdir()
    (root / "associated_press" / "associated_press.mtx").write_text(MTX)
    (root / "associated_press" / "associated_press_terms.txt").write_text("a\nb\nc\nd\n")
    (root / "iris").mkdir()
    (root / "iris" / "iris.csv").write_text("a\tb\tc\tspecies\n1\t2\t3\tx\n4\t5\t6\ty\n7\t8\t9\tx\n")
    (root / "ml-100k").mkdir()
    for name in ("u1.base", "u1.test"):
        (root / "ml-100k" / name).write_text("1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n")
    return root


def run(job, *args, data, cwd):
    """``sparknmf-<job> args...`` in a subprocess, with its conf/<job>.toml first."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["SPARKNMF_DATA"] = str(data)
    return subprocess.run([str(BIN / command(job)), str(ROOT / "conf" / f"{job}.toml"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_job_is_an_installed_console_script():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("sparknmf-")}
    assert scripts == {command(job): f"sparknmf.pipeline.jobs.{job}:main" for job in JOBS}
    with open(ROOT / "pyproject.toml", "rb") as handle:
        assert tomllib.load(handle)["project"]["scripts"] == scripts
    assert {path.stem for path in (ROOT / "jobs").glob("*.py")} - {"__init__"} == set(JOBS)
    for job in JOBS:
        assert (BIN / command(job)).is_file(), f"{command(job)} is not installed next to {sys.executable}"
        assert script(job).is_file() and script(job).parent.name == "jobs"


@pytest.mark.parametrize("job", JOBS)
def test_print_config_prints_toml_that_loads_back_to_the_same_configuration(job, data, tmp_path, monkeypatch):
    conf = ROOT / "conf" / f"{job}.toml"
    done = run(job, "--set", "spark.conf.spark.executor.memory=2g", "--print-config", data=data, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"# the configuration of {job}: {conf}, --set spark.conf.spark.executor.memory=2g\n")
    assert f"  # {conf}\n" in text and "[spark.conf]  # --set spark.conf.spark.executor.memory=2g\n" in text
    (tmp_path / "printed.toml").write_text(text)
    schema = {**import_module(f"sparknmf.pipeline.jobs.{job}").SCHEMA, "spark": SPARK_SECTION}
    monkeypatch.setenv("SPARKNMF_DATA", str(data))
    expected = load_conf(schema, [conf], ["spark.conf.spark.executor.memory=2g"])
    assert load_conf(schema, [tmp_path / "printed.toml"]).to_dict() == expected.to_dict()
    assert expected["spark"]["conf"]["spark.executor.memory"] == "2g"
    as_json = run(job, "--print-config-json", data=data, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == load_conf(schema, [conf]).to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["printed.toml"]  # nothing else happened


@pytest.mark.parametrize("job", JOBS)
def test_dry_run_checks_everything_and_writes_nothing(job, data, tmp_path):
    done = run(job, "--log-level", "warning", "--dry-run", data=data, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{job}: dry run: ") and "nothing was read, fitted or written" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no output, publication, lock or run record
    assert " INFO " not in done.stderr  # --log-level warning


@pytest.mark.parametrize("job, override, message", [
    ("factorize", "input.path=${SPARKNMF_DATA}/nope.mtx", r"input\.path = '.*nope\.mtx': no such file or folder"),
    ("topics", "vocabulary.path=/nope/terms.txt", r"vocabulary\.path = '/nope/terms\.txt': no such file"),
    ("rank_survey", "nmf.algorithm=als", r"nmf\.algorithm must be one of"),
    ("recommend", "holdout.fraction=1.5", r"holdout\.fraction must be"),
])
def test_dry_run_reports_what_a_run_would_refuse(job, override, message, data, tmp_path):
    done = run(job, "--dry-run", "--set", override.replace("${SPARKNMF_DATA}", str(data)), data=data, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert re.search(message, done.stderr), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_checkout_scripts_and_the_module_listing(data, tmp_path):
    env = {**os.environ, "SPARKNMF_DATA": str(data)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, str(ROOT / "jobs" / "topics.py"), str(ROOT / "conf" / "topics.toml"),
                           "--print-config-json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nmf"]["k"] == 4
    usage = subprocess.run([sys.executable, str(ROOT / "jobs" / "topics.py"), "--help"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert usage.stdout.startswith("usage: jobs/topics.py ") and "--dry-run" in usage.stdout
    listing = subprocess.run([sys.executable, "-m", "sparknmf.pipeline.jobs"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert [line.split()[:2] for line in listing.stdout.splitlines()] == [[job, command(job)] for job in JOBS]
    one = subprocess.run([sys.executable, "-m", "sparknmf.pipeline.jobs", "factorize"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.stdout.strip() == str(script("factorize"))


@pytest.mark.parametrize("job", JOBS)
def test_example_config_documents_every_key_and_loads_once_required_keys_are_set(job, tmp_path, capsys):
    """What an installed package has instead of the repository's conf/ files."""
    module = import_module(f"sparknmf.pipeline.jobs.{job}")
    assert module.main(["--example-config"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# {command(job)}: every option, set to its default")
    (tmp_path / "example.toml").write_text(text)
    schema = {**module.SCHEMA, "spark": SPARK_SECTION}
    required = [f"{section}.{key}" for section, options in schema.items() for key, option in options.items()
                if option.default is REQUIRED]
    assert required and all(f"# {key.split('.')[1]} = ...  # required: " in text for key in required)
    with pytest.raises(ConfError, match="is required but set in none of"):
        load_conf(schema, [tmp_path / "example.toml"])
    filled = {"path": "x", "str": "x", "int": "2", "float": "2.0", "list[int]": "[2]"}
    conf = load_conf(schema, [tmp_path / "example.toml"],
                     [f"{key}={filled[schema[key.split('.')[0]][key.split('.')[1]].kind]}" for key in required])
    for section, options in schema.items():
        for key, option in options.items():
            if option.default is not REQUIRED:
                assert conf.source(f"{section}.{key}") == str(tmp_path / "example.toml"), f"{section}.{key}"
                assert conf[section][key] == option.default
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            assert lines[number - 1].startswith("# "), f"{line!r} has no comment"


def test_the_commands_run_from_an_installed_wheel(tmp_path, data):
    """pip builds a wheel of the project and installs it (with its console scripts) into a fresh folder; the
    commands there run from the wheel's package, not from this checkout."""
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT / "sparknmf", source / "sparknmf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w",
                            str(tmp_path / "dist")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    if build.returncode:
        pytest.skip(f"pip cannot build the wheel here (no index for its build requirements?): {build.stderr[-300:]}")
    (wheel,) = (tmp_path / "dist").glob("sparknmf-*.whl")
    # --target, never --prefix: pip would uninstall this environment's sparknmf (the checkout) first
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--ignore-installed",
                              "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "SPARKNMF_DATA": str(data), "PYTHONPATH": str(site)}  # the wheel first on sys.path
    for job in JOBS:
        done = subprocess.run([str(site / "bin" / command(job)), "--example-config"], env=env,
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0 and "[spark]" in done.stdout, done.stderr
    where = subprocess.run([sys.executable, "-m", "sparknmf.pipeline.jobs", "factorize"], env=env,
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert Path(where.stdout.strip()) == site / "sparknmf" / "pipeline" / "jobs" / "factorize.py"
    done = subprocess.run([str(site / "bin" / command("factorize")), "--dry-run",
                           str(ROOT / "conf" / "factorize.toml")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_dry_run_checks_the_columns_of_table_inputs_from_their_schemas(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparknmf.pipeline.inputs import _ddl_names

    assert _ddl_names("user int, `item id` bigint, r decimal(3,1), m map<string,int>") == ["user", "item id", "r",
                                                                                            "m"]
    pq.write_table(pa.table({"feature": ["a"], "sample": [1], "value": [1.0]}), tmp_path / "v.parquet")
    conf = tmp_path / "f.toml"
    conf.write_text(f'[input]\npath = "{tmp_path / "v.parquet"}"\nformat = "coordinates"\ncol_col = "sample"\n'
                    f'[output]\npath = "{tmp_path / "o"}"\nreport = false\n')
    factorize = import_module("sparknmf.pipeline.jobs.factorize")
    assert factorize.main([str(conf), "--dry-run"]) == 2
    assert (f"factorize: error: default: input.row_col = 'row': no such column in {tmp_path / 'v.parquet'} "
            f"(it has ['feature', 'sample', 'value'])") in capsys.readouterr().err
    assert factorize.main([str(conf), "--dry-run", "--set", "input.row_col=feature"]) == 0
    (tmp_path / "r.csv").write_text("1,2,5.0\n")
    pq.write_table(pa.table({"user": [1], "item": [2]}), tmp_path / "test.parquet")
    rconf = tmp_path / "r.toml"
    rconf.write_text(f'[input]\npath = "{tmp_path / "r.csv"}"\nfile_format = "csv"\nschema = "u int, i int, r double"\n'
                     f'[publish]\nroot = "{tmp_path / "pub"}"\n')
    recommend = import_module("sparknmf.pipeline.jobs.recommend")
    assert recommend.main([str(rconf), "--dry-run"]) == 2
    assert "input.user_col = 'user': no such column in" in capsys.readouterr().err
    assert recommend.main([str(rconf), "--dry-run", "--set", "input.schema=user int, item int, rating double"]) == 0
    pq.write_table(pa.table({"user": [1], "item": [2], "rating": [5.0]}), tmp_path / "train.parquet")
    assert recommend.main([str(rconf), "--dry-run", "--set", f"input.path={tmp_path / 'train.parquet'}",
                           "--set", "input.file_format=parquet", "--set", f"holdout.path={tmp_path / 'test.parquet'}"
                           ]) == 2  # the held-out ratings are in the input's format, with its columns
    assert f"holdout.path = '{tmp_path / 'test.parquet'}': has no column 'rating' (rating_col)" in \
        capsys.readouterr().err
    assert not (tmp_path / "pub").exists() and not (tmp_path / "o").exists()
