"""The spark-submit jobs through their function entry points ``main(argv)``, on small data in the shared session.

factorize on every input format, multi-start with labels and a report, outputs that appear only when
complete, loop checkpoints; rank_survey (table and per-k maps); topics (vocabulary, selection, top
terms, document weights); configuration and input errors reported before any work with exit code 2.
"""

import csv
import importlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io
import scipy.sparse as sp

from sparknmf import MultiStartNMFModel, NMFModel, nmf
from sparknmf.datasets import block_diagonal

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.spark


def load_job(name):
    return importlib.import_module(f"jobs.{name}")


def run(name, tmp_path, text, *overrides):
    conf = tmp_path / f"{name}.toml"
    conf.write_text(text)
    argv = [str(conf)]
    for item in overrides:
        argv += ["--set", item]
    return load_job(name).main(argv)


@pytest.fixture(scope="module")
def planted():
    """V (12×10) with two planted clusters of samples, its labels and ids."""
    V, labels = block_diagonal((5, 5), features=12, seed=2)
    return V, [f"class{c}" for c in labels]


def write_input(kind, folder, V, spark):
    """V in one of the input formats; returns the [input] section."""
    n, m = V.shape
    rows, cols = np.nonzero(V)
    if kind == "matrix_market":
        scipy.io.mmwrite(str(folder / "v.mtx"), sp.coo_matrix(V))
        return f'path = "{folder / "v.mtx"}"\nformat = "matrix_market"\n'
    if kind == "dense":
        lines = ["\t".join([f"f{i}"] + [repr(float(x)) for x in V[i]]) for i in range(n)]
        (folder / "v.tsv").write_text("\n".join(lines) + "\n")
        return f'path = "{folder / "v.tsv"}"\nformat = "dense"\nrow_names = true\n'
    if kind in ("parquet", "csv"):
        table = pa.table({"feature": [f"f{i:02d}" for i in rows], "sample": cols + 100, "value": V[rows, cols]})
        if kind == "parquet":
            pq.write_table(table, folder / "v.parquet")
        else:
            pa.csv.write_csv(table, folder / "v.csv")
        return (f'path = "{folder / ("v." + kind)}"\nformat = "coordinates"\nfile_format = "{kind}"\nheader = true\n'
                f'row_col = "feature"\ncol_col = "sample"\n')
    table = pa.table({"sid": [f"s{j}" for j in range(m)], "vec": pa.array(list(V.T), pa.list_(pa.float64()))})
    pq.write_table(table, folder / "vectors.parquet")
    return f'path = "{folder / "vectors.parquet"}"\nformat = "vectors"\nfeatures_col = "vec"\nid_col = "sid"\n'


import pyarrow.csv  # noqa: E402  (pa.csv above)


@pytest.mark.parametrize("kind", ["matrix_market", "dense", "parquet", "csv", "vectors"])
def test_factorize_reads_every_input_format(spark, tmp_path, planted, kind):
    V, _ = planted
    section = write_input(kind, tmp_path, V, spark)
    text = f"[input]\n{section}\n[nmf]\nk = 2\nmax_iter = 50\ninit = \"nndsvd\"\n" \
           f"[output]\npath = \"{tmp_path / 'out'}\"\nreport = false\n"
    assert run("factorize", tmp_path, text) == 0
    out = tmp_path / "out"
    model = NMFModel.load(str(out))
    assert model.W.shape == (12, 2) and model.H.shape == (2, 10)
    oracle = nmf(V, 2, max_iter=50, init="nndsvd")  # the same fit without the job (and without Spark)
    np.testing.assert_allclose(model.W @ model.H, oracle.W @ oracle.H, rtol=1e-6, atol=1e-9)
    W = spark.read.parquet(str(out / "W")).toArrow()
    assert W.column_names == ["index", "id", "features"] and W.num_rows == 12
    expected_ids = {"dense": [f"f{i}" for i in range(12)], "parquet": [f"f{i:02d}" for i in range(12)],
                    "csv": [f"f{i:02d}" for i in range(12)]}.get(kind)
    if expected_ids:
        assert W.sort_by("index").column("id").to_pylist() == expected_ids
    if kind == "vectors":
        assert model.colIds.to_pylist() == sorted(f"s{j}" for j in range(10))
    measures = json.loads((out / "measures.json").read_text())
    assert measures["shape"] == [12, 10] and measures["k"] == 2 and 0 < measures["sparseness_basis"] < 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done" and summary["counts"] == {"rows": 12, "columns": 10}
    assert set(summary["timings"]) >= {"read input", "fit", "write outputs"} and summary["conf"]["nmf"]["k"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_factorize_multistart_with_labels_and_report(spark, tmp_path, planted):
    pytest.importorskip("matplotlib")
    from test_report import check_page

    V, labels = planted
    (tmp_path / "labels.txt").write_text("\n".join(labels))
    scipy.io.mmwrite(str(tmp_path / "v.mtx"), sp.coo_matrix(V))
    text = f"""[input]\npath = "{tmp_path / 'v.mtx'}"\nlabels = "{tmp_path / 'labels.txt'}"
[nmf]\nk = 2\nseed = 3\n[multistart]\nnrun = 3\nrun_mode = "local"\n[output]\npath = "{tmp_path / 'out'}"\n"""
    assert run("factorize", tmp_path, text) == 0
    out = tmp_path / "out"
    measures = json.loads((out / "measures.json").read_text())
    assert measures["purity"] == 1.0 and measures["nrun"] == 3 and measures["dispersion"] == 1.0
    assert MultiStartNMFModel.load(str(out)).assignments.shape == (3, 10)
    assert {"consensus.png", "basis.png", "coefficients.png", "history.png"} <= set(check_page(out / "report" /
                                                                                                "index.html"))


def test_existing_output_is_refused_before_work_and_replaced_only_when_complete(spark, tmp_path, planted,
                                                                                  capsys, monkeypatch):
    V, _ = planted
    scipy.io.mmwrite(str(tmp_path / "v.mtx"), sp.coo_matrix(V))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    text = f'[input]\npath = "{tmp_path / "v.mtx"}"\n[nmf]\nk = 2\n[output]\npath = "{tmp_path / "out"}"\n' \
           'report = false\n'
    job = load_job("factorize")
    conf = tmp_path / "f.toml"
    conf.write_text(text)
    with monkeypatch.context() as patch:
        patch.setattr("sparknmf.pipeline.inputs.read_input",
                      lambda *a, **k: pytest.fail("input read before the output check"))
        assert job.main([str(conf)]) == 2
    err = capsys.readouterr().err
    assert f"factorize: error: {conf}: output.path = '{tmp_path / 'out'}': exists already" in err
    # a failure after the fit leaves the old output exactly as it was
    with monkeypatch.context() as patch:
        patch.setattr(job, "write_json", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(OSError, match="disk full"):
            job.main([str(conf), "--set", "output.overwrite=true"])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert load_job("factorize").main([str(conf), "--set", "output.overwrite=true"]) == 0
    assert not (tmp_path / "out" / "old.txt").exists() and (tmp_path / "out" / "measures.json").exists()


@pytest.mark.parametrize("text, overrides, message", [
    ("[nmf]\nk = 2\n", [], r"input\.path is required but set in none of: .*bad\.toml"),
    ('[input]\npath = "{d}/nope.mtx"\n[output]\npath = "{d}/o"\n', [],
     r"bad\.toml: input\.path = '.*nope\.mtx': no such file or folder"),
    ('[input]\npath = "{d}/v.mtx"\n[output]\npath = "{d}/o"\n', ["nmf.k=ten"],
     r"--set nmf\.k=ten: nmf\.k must be an integer, got 'ten' \(string\)"),
    ('[input]\npath = "{d}/v.mtx"\n[output]\npath = "{d}/o"\n[nmf]\nrank = 3\n', [],
     r"bad\.toml: unknown key nmf\.rank; \[nmf\] has \["),
    ('[input]\npath = "{d}/v.mtx"\nformat = "vectors"\nfile_format = "csv"\n[output]\npath = "{d}/o"\n', [],
     r"bad\.toml: input\.file_format = 'csv': vectors are read from Parquet only"),
    ('[input]\npath = "{d}/v.mtx"\n[output]\npath = "{d}/o"\n', ["nmf.k=50"],
     r"k=50 is out of range"),
])
def test_bad_configuration_exits_2_with_the_key_and_file(spark, tmp_path, planted, capsys, text, overrides, message):
    scipy.io.mmwrite(str(tmp_path / "v.mtx"), sp.coo_matrix(planted[0]))
    conf = tmp_path / "bad.toml"
    conf.write_text(text.format(d=tmp_path))
    argv = [str(conf)] + [a for item in overrides for a in ("--set", item)]
    assert load_job("factorize").main(argv) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_missing_conf_file_exits_2(tmp_path, capsys):
    assert load_job("topics").main([str(tmp_path / "nope.toml")]) == 2
    assert f"topics: error: {tmp_path / 'nope.toml'}: no such configuration file" in capsys.readouterr().err


def test_single_fit_checkpoints_and_a_rerun_resumes(spark, tmp_path, planted):
    V, _ = planted
    scipy.io.mmwrite(str(tmp_path / "v.mtx"), sp.coo_matrix(V))
    text = f"""[input]\npath = "{tmp_path / 'v.mtx'}"\n[nmf]\nk = 2\nmax_iter = 20\ntol = 0\ncheckpoint_interval = 5
[output]\npath = "{tmp_path / 'a'}"\nreport = false\n[spark]\ncheckpoint_dir = "{tmp_path / 'ckpt'}"\n"""
    assert run("factorize", tmp_path, text) == 0
    (folder,) = (tmp_path / "ckpt").iterdir()
    assert folder.name.startswith("factorize-") and (folder / "checkpoint.npz").exists()
    assert run("factorize", tmp_path, text, f"output.path={tmp_path / 'b'}") == 0  # resumes at iteration 20
    a, b = NMFModel.load(str(tmp_path / "a")), NMFModel.load(str(tmp_path / "b"))
    np.testing.assert_array_equal(a.W, b.W)
    assert b.history == a.history


def test_rank_survey_job_writes_tables_and_a_report_with_maps(spark, tmp_path, planted):
    pytest.importorskip("matplotlib")
    from test_report import check_page

    V, labels = planted
    lines = ["\t".join(["species"] + [f"m{i}" for i in range(12)])]
    lines += ["\t".join([labels[j]] + [repr(float(x)) for x in V[:, j]]) for j in range(10)]
    (tmp_path / "v.tsv").write_text("\n".join(lines))
    text = f"""[input]\npath = "{tmp_path / 'v.tsv'}"\nformat = "dense"\nheader = true\nlabel_column = "species"
transpose = true\n[survey]\nks = [2, 3]\n[multistart]\nnrun = 2\n[output]\npath = "{tmp_path / 'out'}"
maps = true\nmeasures = ["purity", "entropy", "dispersion"]\n"""
    assert run("rank_survey", tmp_path, text) == 0
    out = tmp_path / "out"
    rows = json.loads((out / "survey.json").read_text())
    assert [(r["data"], r["k"]) for r in rows] == [("original", 2), ("original", 3), ("randomized", 2),
                                                   ("randomized", 3)]
    assert rows[0]["mode"] == "tasks" and rows[0]["purity"] == 1.0
    assert len(list(csv.DictReader((out / "survey.csv").open()))) == 4
    links = check_page(out / "report" / "index.html")
    assert {"survey.png", "consensus_k2.png", "basis_k3.png"} <= set(links)
    assert "<td>survey.ks</td>" in (out / "report" / "index.html").read_text()


def test_topics_job_selects_names_and_ranks_terms(spark, tmp_path):
    rng = np.random.default_rng(0)
    # 8 terms × 6 documents; term 8 appears in one document only, documents 5-6 are cut by first_documents
    V = np.zeros((8, 6))
    V[:4, :2] = rng.integers(1, 5, (4, 2))
    V[3:7, 2:4] = rng.integers(1, 5, (4, 2))
    V[7, 0] = 1
    V[:, 4:] = 9
    scipy.io.mmwrite(str(tmp_path / "dt.mtx"), sp.coo_matrix(V.T))  # documents × terms, as usual
    vocabulary = "".join(f"{i}|térm {i}|x\n" for i in range(1, 9)).encode("latin-1")
    (tmp_path / "vocab.txt").write_bytes(vocabulary)
    text = f"""[input]\npath = "{tmp_path / 'dt.mtx'}"\ntranspose = true
[vocabulary]\npath = "{tmp_path / 'vocab.txt'}"\ndelimiter = "|"\nid_field = 1\nname_field = 2\nencoding = "latin-1"
[select]\nfirst_documents = 4\nmin_document_fraction = 0.5\n[nmf]\nk = 2\ninit = "nndsvd"
[output]\npath = "{tmp_path / 'out'}"\ntop_terms = 3\nreport = false\n"""
    assert run("topics", tmp_path, text) == 0
    out = tmp_path / "out"
    top = list(csv.DictReader((out / "top_terms.csv").open(encoding="utf-8")))
    assert len(top) == 6 and {r["factor"] for r in top} == {"1", "2"}
    assert all(r["term"].startswith("térm ") and r["term"] != "térm 8" for r in top)  # term 8: 1 of 4 documents
    model = NMFModel.load(str(out))
    assert model.W.shape == (7, 2) and model.H.shape == (2, 4)
    assert model.rowIds.to_pylist() == list(range(1, 8)) and model.colIds.to_pylist() == [1, 2, 3, 4]
    first = [r for r in top if r["factor"] == "1"]
    assert [r["term"] for r in first] == [f"térm {i + 1}" for i in np.argsort(-model.W[:, 0], kind="stable")[:3]]
    docs = spark.read.parquet(str(out / "document_topics")).orderBy("document").toArrow()
    assert docs.column("document").to_pylist() == [1, 2, 3, 4]
    assert docs.column("topic").to_pylist() == list(np.argmax(model.H, axis=0) + 1)
    assert json.loads((out / "summary.json").read_text())["counts"] == {
        "terms": 7, "documents": 4, "terms_read": 8, "documents_read": 6}


def test_topics_scatter_must_name_two_topics(tmp_path, capsys):
    (tmp_path / "dt.mtx").write_text("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 1\n")
    text = f'[input]\npath = "{tmp_path / "dt.mtx"}"\n[nmf]\nk = 2\n[output]\npath = "{tmp_path / "o"}"\n' \
           'scatter = [1, 3]\n'
    assert run("topics", tmp_path, text) == 2
    assert "output.scatter = [1, 3]: needs two topics between 1 and nmf.k = 2" in capsys.readouterr().err
