"""Bad input, systematically: every public entry point gets every kind of bad input.

Each case must raise its documented exception (``InvalidInputError`` for data, ``ValueError`` for Params and
model directories, ``FileNotFoundError`` for missing files, ``SystemExit`` for a job's command line) with a message
naming the problem, start no Spark job that fits anything -- and no Spark job at all when the problem is visible
without reading the data (Params, schema, numpy input, files) -- and leave the outputs already on disk untouched
(a checkpoint directory, a saved model, a job's result files).  Jobs are counted with the classic session's status
tracker, by job group.
"""

import contextlib
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from _spark_jobs import spark_jobs

from sparknmf import NMF, InvalidInputError, MaskedALS, MaskedALSModel, NMFModel, datasets, multistart, nmf

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]
_FITTING = ("sparknmf: iter", "sparknmf: ALS iter", "sparknmf: randomized SVD")


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def outputs(spark, tmp_path_factory):
    """A folder of existing outputs every case points at: a checkpoint, a saved model, a job's results."""
    folder = tmp_path_factory.mktemp("outputs")
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "checkpoint.npz").write_bytes(b"an earlier fit's checkpoint")
    NMF(k=1, maxIter=1).fit(np.ones((2, 2))).save(str(folder / "model"))
    (folder / "survey.csv").write_text("k,cophenetic\n2,0.9\n")
    (folder / "survey.json").write_text("[]")
    return folder


# ------------------------------------------------------------------------------------------ inputs
def _coordinates(spark, rows, ddl="row string, col string, value double"):
    return spark.createDataFrame(rows, ddl)


def _ratings(spark, rows, ddl="user string, item long, rating double"):
    return spark.createDataFrame(rows, ddl)


GOOD = [("a", "x", 1.0), ("b", "y", 2.0), ("a", "y", 3.0)]
GOOD_RATINGS = [("u1", 1, 4.0), ("u2", 2, 3.0), ("u1", 2, 5.0)]
MTX = "%%MatrixMarket matrix coordinate real general\n3 2 3\n1 1 1.0\n2 2 2.5\n3 1 0.5\n"


def _file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _nmf_est(out, **params):
    return NMF(k=params.pop("k", 1), maxIter=2, checkpointDir=str(out / "checkpoint"), **params)


def _als_est(out, **params):
    return MaskedALS(rank=params.pop("rank", 1), maxIter=2, implicitFeedback=False,
                     checkpointDir=str(out / "checkpoint"), checkpointInterval=1, **params)


def _newer_model(spark, tmp_path, out):
    path = tmp_path / "newer"
    NMFModel.load(str(out / "model")).save(str(path))
    part = next((path / "metadata").glob("part-*"))
    meta = json.loads(part.read_text())
    part.write_text(json.dumps({**meta, "formatVersion": 2}))
    for crc in (path / "metadata").glob(".*.crc"):
        crc.unlink()
    return str(path)


class JobExit(Exception):
    """A job's non-zero exit code, with what it printed on stderr."""


def _rank_survey(conf_path, *overrides):
    """Run jobs/rank_survey.py's entry point; a non-zero exit code raises JobExit("exit N: <its error line>")."""
    import io

    sys.path.insert(0, str(ROOT / "jobs"))
    try:
        import rank_survey
    finally:
        sys.path.remove(str(ROOT / "jobs"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = rank_survey.main([str(conf_path), *(a for o in overrides for a in ("--set", o))])
    if code:
        errors = [line for line in err.getvalue().splitlines() if line.startswith("rank_survey: error:")]
        raise JobExit(f"exit {code}: {' '.join(errors)}")


@dataclass
class Case:
    entry: str
    kind: str
    call: object  # call(spark, tmp_path, outputs)
    error: type
    match: str
    jobs: str = "none"  # "none": no Spark job at all; "no fit": only the jobs that read and check the data

    @property
    def id(self):
        return f"{self.entry}-{self.kind}"


NUMPY_BAD = {
    "negative": (np.array([[1.0, -0.5], [2.0, 3.0]]), InvalidInputError, r"1 negative entries, e.g. -0.5 at \(0, 1\)"),
    "NaN": (np.array([[1.0, np.nan], [2.0, 3.0]]), InvalidInputError, r"1 NaN or infinite entries, e.g. nan"),
    "inf": (np.array([[1.0, 2.0], [np.inf, 3.0]]), InvalidInputError, r"1 NaN or infinite entries, e.g. inf"),
    "empty": (np.zeros((0, 4)), InvalidInputError, r"is empty \(shape \(0, 4\)\)"),
    "one row, k too large": (np.ones((1, 4)), ValueError, r"k=2 is out of range: .* min\(n, m\) = 1"),
    "duplicates": (sp.coo_matrix(([1.0, 2.0], ([0, 0], [1, 1])), shape=(2, 2)), InvalidInputError,
                   r"1 duplicate coordinates, e.g. \(0, 1\); pass duplicates='sum'"),
    "wrong dtype": (np.array([["1", "2"], ["3", "4"]]), InvalidInputError, "must hold real numbers, got dtype <U1"),
    "mismatched shapes": (np.array([[1.0, 2.0], [3.0]], dtype=object), InvalidInputError,
                          r"must be 2-D, got shape \(2,\)"),
}


def _numpy_cases():
    for kind, (V, error, match) in NUMPY_BAD.items():
        yield Case("nmf()", kind, lambda s, t, o, V=V: nmf(V, 2), error, match)
        yield Case("NMF.fit(numpy)", kind, lambda s, t, o, V=V: _nmf_est(o, k=2).fit(V), error, match)
        yield Case("NMF.fit(numpy, spark)", kind, lambda s, t, o, V=V: _nmf_est(o, k=2, backend="spark").fit(V),
                   error, match)
    yield Case("nmf(nrun)", "negative", lambda s, t, o: nmf(NUMPY_BAD["negative"][0], 1, nrun=3), InvalidInputError,
               "negative entries")
    yield Case("multistart", "k out of range", lambda s, t, o: multistart(np.ones((3, 3)), 5, 2), ValueError,
               "k")


COORDINATE_BAD = [
    ("negative", GOOD + [("c", "x", -2.0)], r"1 entries with a negative value, e.g. -2.0 at \(row='c', col='x'\)"),
    ("NaN", GOOD + [("c", "x", float("nan"))], r"1 entries with a null or NaN/inf value, e.g. nan at \(row='c'"),
    ("inf", GOOD + [("c", "x", float("inf"))], r"null or NaN/inf value, e.g. inf"),
    ("null value", GOOD + [("c", "x", None)], "null or NaN/inf value"),
    ("duplicates", GOOD + [("a", "x", 5.0)], r"1 entries with a duplicate coordinate, e.g. .* at \(row='a', col='x'\)"),
    ("null ids", GOOD + [(None, "x", 1.0)], "column 'row' has null ids"),
]


def _frame_cases():
    for kind, rows, match in COORDINATE_BAD:
        yield Case("NMF.fit(coordinates)", kind, lambda s, t, o, rows=rows: _nmf_est(o).fit(_coordinates(s, rows)),
                   InvalidInputError, match, "no fit")
    yield Case("NMF.fit(coordinates)", "empty", lambda s, t, o: _nmf_est(o).fit(_coordinates(s, GOOD).limit(0)),
               InvalidInputError, "is empty", "no fit")
    yield Case("NMF.fit(coordinates)", "one row, k too large",
               lambda s, t, o: _nmf_est(o, k=2).fit(_coordinates(s, GOOD[:1])), ValueError,
               r"k=2 is out of range.*min\(n, m\) = 1", "no fit")
    yield Case("NMF.fit(coordinates)", "unknown columns",
               lambda s, t, o: _nmf_est(o, valueCol="count").fit(_coordinates(s, GOOD)), InvalidInputError,
               r"unknown column\(s\) \['count'\]")
    yield Case("NMF.fit(coordinates)", "wrong dtype",
               lambda s, t, o: _nmf_est(o).fit(
                   _coordinates(s, [("a", "x", "1")], "row string, col string, value string")),
               InvalidInputError, "column 'value' must be numeric, got string")
    yield Case("NMF.fit(coordinates)", "k out of range", lambda s, t, o: _nmf_est(o, k=0).fit(_coordinates(s, GOOD)),
               ValueError, r"NMF: invalid k=0; it must be an integer >= 1")
    yield Case("NMF.fit(vectors)", "mismatched shapes",
               lambda s, t, o: _nmf_est(o).fit(s.createDataFrame([([1.0, 2.0],), ([1.0],)], "features array<double>")),
               InvalidInputError, "vector size other than 2", "no fit")
    yield Case("NMF.fit(vectors)", "null ids",
               lambda s, t, o: _nmf_est(o, idCol="id").fit(
                   s.createDataFrame([("a", [1.0, 2.0]), (None, [1.0, 3.0])], "id string, features array<double>")),
               InvalidInputError, "column 'id' has null ids", "no fit")
    yield Case("NMF.fit(vectors)", "negative",
               lambda s, t, o: _nmf_est(o).fit(
                   s.createDataFrame([([1.0, -2.0],), ([1.0, 1.0],)], "features array<double>")),
               InvalidInputError, "negative value", "no fit")
    yield Case("NMFModel.transform", "mismatched shapes",
               lambda s, t, o: NMFModel.load(str(o / "model")).transform(np.ones((3, 2))), ValueError,
               "V_new must have 2 rows", "no fit")


RATINGS_BAD = [
    ("null ids", GOOD_RATINGS + [(None, 1, 4.0)], r"1 null ids in column 'user'"),
    ("NaN", GOOD_RATINGS + [("u3", 1, float("nan"))], r"1 null, NaN or infinite ratings, e.g. \(user='u3'"),
    ("inf", GOOD_RATINGS + [("u3", 1, float("-inf"))], "null, NaN or infinite ratings"),
    ("duplicates", GOOD_RATINGS + [("u1", 1, 2.0)], r"1 duplicate \(user, item\) pairs, e.g. \(user='u1', item=1\)"),
]


def _ratings_cases():
    for kind, rows, match in RATINGS_BAD:
        yield Case("MaskedALS.fit", kind, lambda s, t, o, rows=rows: _als_est(o).fit(_ratings(s, rows)),
                   InvalidInputError, match, "no fit")
    yield Case("MaskedALS.fit", "negative (outside ratingRange)",
               lambda s, t, o: _als_est(o, ratingRange=[1.0, 5.0]).fit(_ratings(s, GOOD_RATINGS + [("u3", 1, -1.0)])),
               InvalidInputError, r"1 ratings outside the declared ratingRange \[1.0, 5.0\]", "no fit")
    yield Case("MaskedALS.fit", "empty", lambda s, t, o: _als_est(o).fit(_ratings(s, GOOD_RATINGS).limit(0)),
               InvalidInputError, r"is empty \(no ratings\)", "no fit")
    yield Case("MaskedALS.fit", "unknown columns",
               lambda s, t, o: _als_est(o, ratingCol="stars").fit(_ratings(s, GOOD_RATINGS)), InvalidInputError,
               r"unknown column\(s\) \['stars'\]")
    yield Case("MaskedALS.fit", "wrong dtype",
               lambda s, t, o: _als_est(o).fit(_ratings(s, [("u1", 1, "4")], "user string, item long, rating string")),
               InvalidInputError, "column 'rating' must be numeric, got string")
    yield Case("MaskedALS.fit", "k out of range", lambda s, t, o: _als_est(o, rank=0).fit(_ratings(s, GOOD_RATINGS)),
               ValueError, r"invalid rank=0; it must be an integer >= 1")
    yield Case("MaskedALS.fit", "negative weights",
               lambda s, t, o: _als_est(o, weightCol="w").fit(
                   _ratings(s, [("u1", 1, 4.0, -1.0)], "user string, item long, rating double, w double")),
               InvalidInputError, "negative weights in column 'w'", "no fit")


def _file_cases():
    mm = datasets.read_matrix_market
    yield Case("read_matrix_market", "truncated", lambda s, t, o: mm(_file(t, "v.mtx", MTX.rsplit("\n", 2)[0])),
               InvalidInputError, r"declares 3 entries but has 2 \(truncated\?\)")
    yield Case("read_matrix_market", "wrong column count", lambda s, t, o: mm(_file(t, "v.mtx", MTX + "1 2\n")),
               InvalidInputError, r"line 6 has the wrong number of columns \(expected 3\)")
    yield Case("read_matrix_market", "latin-1",
               lambda s, t, o: mm(_file(t, "v.mtx", "%%MatrixMarket matrix coordinate "
                                                    "real general\n% caf\xe9\n1 1 1\n1 1 1\n".encode("latin-1"))),
               InvalidInputError, r"not valid UTF-8 \(byte 51: b'\\xe9'\)")
    yield Case("read_matrix_market", "negative", lambda s, t, o: mm(_file(t, "v.mtx", MTX.replace("2.5", "-2.5"))),
               InvalidInputError, "1 negative entries")
    yield Case("read_matrix_market", "NaN", lambda s, t, o: mm(_file(t, "v.mtx", MTX.replace("2.5", "nan"))),
               InvalidInputError, "NaN or infinite entries")
    yield Case("read_matrix_market", "duplicates",
               lambda s, t, o: mm(_file(t, "v.mtx", MTX.replace("3 1 0.5", "1 1 0.5"))),
               InvalidInputError, "duplicate coordinates")
    yield Case("read_matrix_market", "mismatched shapes",
               lambda s, t, o: mm(_file(t, "v.mtx", MTX.replace("3 1 0.5", "4 1 0.5"))),
               InvalidInputError, "an index is outside the declared size 3x2")
    yield Case("read_matrix_market", "empty", lambda s, t, o: mm(_file(t, "v.mtx", "")), InvalidInputError,
               "no %%MatrixMarket banner")
    yield Case("read_matrix_market", "missing", lambda s, t, o: mm(t / "nowhere.mtx"), FileNotFoundError,
               "no such file")
    yield Case("read_movielens_ratings", "wrong column count",
               lambda s, t, o: datasets.read_movielens_ratings(_file(t, "u.data", "1\t2\t3\t4\n5\t6\t7\n")),
               InvalidInputError, "line 2 has 3 fields, expected 4")
    yield Case("read_movielens_ratings", "latin-1",
               lambda s, t, o: datasets.read_movielens_ratings(
                   _file(t, "u.data", "1\t2\t3\t4\xe9\n".encode("latin-1"))),
               InvalidInputError, "not valid UTF-8")
    yield Case("read_movielens_ratings", "wrong dtype",
               lambda s, t, o: datasets.read_movielens_ratings(_file(t, "u.data", "1\tx\t3\t4\n")),
               InvalidInputError, "non-numeric field")
    yield Case("load_movielens_users", "wrong column count",
               lambda s, t, o: datasets.load_movielens_users(_file(t, "u.user", "1|24|M\n").parent), InvalidInputError,
               "line 1 has 3 fields, expected 5")
    yield Case("load_movielens_csv", "unknown columns",
               lambda s, t, o: datasets.load_movielens_csv(
                   (_file(t, "ratings.csv", "user,item,rating,ts\n1,2,3,4\n"),
                    _file(t, "movies.csv", "movieId,title,genres\n1,A,Drama\n"))[0].parent),
               InvalidInputError, r"ratings.csv: expected columns \['userId'")
    yield Case("load_iris", "wrong column count",
               lambda s, t, o: datasets.load_iris(_file(t, "iris.csv", "a,b,c,d,e\n1,2,3,4\n").parent),
               InvalidInputError, "expected 5 columns per row")


def _model_cases():
    yield Case("MaskedALSModel.load", "another class", lambda s, t, o: MaskedALSModel.load(str(o / "model")),
               ValueError, r"holds a 'sparknmf.NMFModel', not a 'sparknmf.MaskedALSModel'", "no fit")
    yield Case("NMFModel.load", "another class", lambda s, t, o: (NMF(k=2).save(str(t / "est")),
                                                                 NMFModel.load(str(t / "est"))),
               ValueError, r"holds a 'sparknmf.NMF', not a 'sparknmf.NMFModel'", "no fit")
    yield Case("NMFModel.load", "newer format version", lambda s, t, o: NMFModel.load(_newer_model(s, t, o)),
               ValueError, "was written in format version 2; this sparknmf reads up to 1", "no fit")
    yield Case("NMFModel.save", "existing path", lambda s, t, o: NMFModel.load(str(o / "model")).save(str(o / "model")),
               Exception, "already exists", "no fit")


def _job_cases():
    def survey(t, o, source, *overrides):
        conf = t / "survey.toml"
        conf.write_text(f'[input]\npath = "{source}"\nformat = "matrix_market"\nlabel_column = ""\n'
                        f'[survey]\nks = [2, 3]\n[multistart]\nnrun = 2\n'
                        f'[output]\npath = "{o / "survey"}"\nreport = false\n')
        _rank_survey(conf, *overrides)

    yield Case("jobs/rank_survey.py", "truncated",
               lambda s, t, o: survey(t, o, _file(t, "v.mtx", MTX.rsplit("\n", 2)[0])),
               JobExit, r"exit 2: .*declares 3 entries but has 2")
    yield Case("jobs/rank_survey.py", "latin-1",
               lambda s, t, o: survey(t, o, _file(t, "v.mtx", b"%%MatrixMarket \xe9")),
               JobExit, "exit 2: .*not valid UTF-8")
    yield Case("jobs/rank_survey.py", "k out of range", lambda s, t, o: survey(t, o, _file(t, "v.mtx", MTX)),
               JobExit, "exit 2: .*k")
    yield Case("jobs/rank_survey.py", "malformed option",
               lambda s, t, o: survey(t, o, _file(t, "v.mtx", MTX), "multistart.nrun=x"), JobExit,
               "exit 2: .*multistart.nrun")


CASES = list(itertools.chain(_numpy_cases(), _frame_cases(), _ratings_cases(), _file_cases(), _model_cases(),
                             _job_cases()))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_rejected_before_any_work(spark, outputs, tmp_path, case):
    before = _snapshot(outputs)
    with spark_jobs(spark) as jobs:
        with pytest.raises(case.error, match=case.match):
            case.call(spark, tmp_path, outputs)
    if case.jobs == "none":
        assert jobs == [], f"{case.id} started Spark jobs: {jobs}"
    else:
        assert not [d for d in jobs if d.startswith(_FITTING)], f"{case.id} started fitting jobs: {jobs}"
    assert _snapshot(outputs) == before, f"{case.id} changed existing outputs"


def test_every_entry_point_meets_every_kind():
    """The table covers the issue's list of bad kinds, on every public entry point."""
    kinds = {c.kind for c in CASES}
    for kind in ("negative", "NaN", "inf", "empty", "duplicates", "wrong dtype", "null ids", "unknown columns",
                 "mismatched shapes", "k out of range", "truncated", "wrong column count", "latin-1",
                 "another class", "newer format version"):
        assert any(k.startswith(kind) for k in kinds), kind
    entries = {c.entry for c in CASES}
    assert {"nmf()", "NMF.fit(numpy)", "NMF.fit(coordinates)", "NMF.fit(vectors)", "MaskedALS.fit",
            "read_matrix_market", "NMFModel.load", "MaskedALSModel.load", "jobs/rank_survey.py"} <= entries
