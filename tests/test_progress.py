"""Issue 22, item 6: progress people can see -- ``verbose``, ``show_progress`` and rank_survey's per-k report."""

import io
import logging
import re

import numpy as np
import pytest
import scipy.sparse as sp

import sparknmf
from sparknmf import NMF, MaskedALS, MultiStartNMF, nmf, rank_survey
from sparknmf.analysis import survey
from sparknmf.datasets import block_diagonal
from sparknmf.progress import ProgressHandler, progress

pytestmark = pytest.mark.filterwarnings("ignore::sparknmf.errors.ConvergenceWarning")  # short fits on purpose

ITERATION = re.compile(r"^\[sparknmf\] iteration (\d+) objective (\S+) elapsed (\S+)s$")
LOGGER = logging.getLogger("sparknmf")


def _V():
    rng = np.random.default_rng(0)
    return rng.random((8, 3)) @ rng.random((3, 7))


def _lines(text, pattern=ITERATION):
    return [pattern.match(line).groups() for line in text.splitlines() if pattern.match(line)]


@pytest.fixture(autouse=True)
def _logging_is_left_as_found():
    before = LOGGER.level, list(LOGGER.handlers)
    yield
    assert (LOGGER.level, list(LOGGER.handlers)) == before


def test_nmf_verbose_prints_each_iteration_objective_and_elapsed(capsys):
    fit = nmf(_V(), 2, algorithm="hals", max_iter=6, tol=0, verbose=1)
    lines = _lines(capsys.readouterr().out)
    assert [int(i) for i, _, _ in lines] == list(range(fit.n_iter + 1))
    np.testing.assert_allclose([float(o) for _, o, _ in lines], fit.history, rtol=1e-9)
    elapsed = [float(e) for _, _, e in lines]
    assert elapsed == sorted(elapsed) and elapsed[-1] <= fit.elapsed + 1e-3


def test_silent_by_default_and_verbose_false(capsys):
    nmf(_V(), 2, max_iter=3)
    nmf(_V(), 2, max_iter=3, verbose=False)
    assert capsys.readouterr().out == ""


def test_estimators_take_verbose_as_a_param(capsys):
    model = NMF(k=2, maxIter=4, tol=0, verbose=1).fit(_V())
    assert len(_lines(capsys.readouterr().out)) == model.nIter + 1
    MultiStartNMF(k=2, nrun=2, runMode="local", maxIter=3, verbose=1).fit(_V())
    out = capsys.readouterr().out
    assert out.count("multi-start run") == 2 and len(_lines(out)) == 2 * 4
    assert NMF(verbose=True).getVerbose() == 1


def test_masked_als_verbose(spark, capsys):
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", int(i), float(rng.integers(1, 6))) for u in range(6) for i in rng.choice(8, 4, replace=False)]
    frame = spark.createDataFrame(rows, "user string, item long, rating double")
    MaskedALS(rank=2, maxIter=3, tol=0, backend="local", implicitFeedback=False, verbose=1).fit(frame)
    lines = _lines(capsys.readouterr().out, re.compile(r"^\[sparknmf\] ALS iteration (\d+) objective (\S+)"))
    assert [int(i) for i, _ in lines][-1] == 3


@pytest.mark.parametrize("make, message", [
    (lambda: nmf(_V(), 2, verbose=-1), r"nmf: invalid verbose=-1; it must be an integer >= 0 or a bool"),
    (lambda: nmf(_V(), 2, verbose="yes"), r"nmf: invalid verbose='yes'"),
    (lambda: NMF(k=2, verbose=-2).fit(_V()), r"NMF: invalid verbose=-2; it must be an integer >= 0"),
    (lambda: rank_survey(_V(), [2], nrun=1, verbose=1.5), r"rank_survey: invalid verbose=1.5"),
    (lambda: sparknmf.show_progress("on"), "enabled must be True or False, got 'on'"),
])
def test_bad_verbose_is_refused_before_any_work(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_progress_restores_logging_after_an_error(capsys):
    with pytest.raises(RuntimeError), progress(1):
        LOGGER.info("iteration 0 objective 1 elapsed 0.000s")
        raise RuntimeError("boom")
    assert _lines(capsys.readouterr().out) == [("0", "1", "0.000")]


def test_show_progress_until_switched_off_and_never_twice(capsys):
    try:
        sparknmf.show_progress()
        sparknmf.show_progress()  # a second call replaces the handler: lines are not doubled
        fit = nmf(_V(), 2, max_iter=2, tol=0)
        assert len(_lines(capsys.readouterr().out)) == fit.n_iter + 1
    finally:
        sparknmf.show_progress(False)
    nmf(_V(), 2, max_iter=2, tol=0)
    assert capsys.readouterr().out == ""


def test_handler_writes_to_a_given_stream_and_filters_by_logger():
    stream = io.StringIO()
    handler = ProgressHandler(stream, names=("sparknmf.survey",))
    LOGGER.addHandler(handler)
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO)
    try:
        LOGGER.info("iteration 0 objective 1 elapsed 0s")
        logging.getLogger("sparknmf.survey").info("rank_survey: original k=2 done")
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
    assert stream.getvalue() == "[sparknmf] rank_survey: original k=2 done\n"


SURVEY_LINE = re.compile(r"^\[sparknmf\] rank_survey: (original|randomized) k=(\d+) done in \S+s \(2 runs\): "
                         r"cophenetic (\S+) dispersion \S+ evar \S+$")


def test_rank_survey_reports_each_rank_as_it_finishes(capsys):
    V, _ = block_diagonal((5, 5, 5), features=12, seed=3)
    seen = []

    def on_fit(data, k, fit):  # called before the next rank starts: its line is already printed
        seen.append((data, k, len(_lines(capsys.readouterr().out, SURVEY_LINE))))

    table = rank_survey(V, [2, 3], nrun=2, mode="local", max_iter=30, on_fit=on_fit, verbose=1)
    assert seen == [("original", 2, 1), ("original", 3, 1), ("randomized", 2, 1), ("randomized", 3, 1)]
    assert table.column("k") == [2, 3]
    # verbose=1 prints the ranks only; verbose=2 every run's iterations too
    rank_survey(V, [2], nrun=2, mode="local", max_iter=3, tol=0, randomized=False, verbose=1)
    out = capsys.readouterr().out
    assert len(_lines(out, SURVEY_LINE)) == 1 and not _lines(out)
    rank_survey(V, [2], nrun=2, mode="local", max_iter=3, tol=0, randomized=False, verbose=2)
    out = capsys.readouterr().out
    assert len(_lines(out, SURVEY_LINE)) == 1 and len(_lines(out)) == 2 * 4


def test_rank_survey_reads_spark_dataframes(spark):
    V, labels = block_diagonal((4, 4, 4), features=10, seed=5)
    V = np.asarray(V)
    coo = sp.coo_matrix(V)
    coordinates = spark.createDataFrame(
        [(int(i), int(j), float(v)) for i, j, v in zip(coo.row, coo.col, coo.data)], "r long, c long, v double")
    options = dict(nrun=2, seed=1, max_iter=40, randomized=False, labels=labels)
    expected = rank_survey(V, [3], mode="local", **options)
    got = rank_survey(coordinates, [3], frame_params={"rowCol": "r", "colCol": "c", "valueCol": "v"}, **options)
    for name in ("k", "purity", "cophenetic", "dispersion", "n_iter"):
        np.testing.assert_allclose(got.column(name), expected.column(name), rtol=1e-6, err_msg=name)
    # vectors: one sample (column of V) per DataFrame row, in order of idCol
    vectors = spark.createDataFrame([(j, V[:, j].tolist()) for j in range(V.shape[1])],
                                    "id long, features array<double>")
    got = rank_survey(vectors, [3], frame_params={"idCol": "id"}, **options)
    assert got.column("purity") == expected.column("purity") == [1.0]


def test_rank_survey_spark_input_errors(spark, monkeypatch):
    frame = spark.createDataFrame([(0, 0, 1.0), (1, 1, 2.0), (2, 2, 1.0), (0, 2, 1.0)],
                                  "row long, col long, value double")
    with pytest.raises(ValueError, match=r"frame_params may set \[.*\], got \['k'\]"):
        rank_survey(frame, [2], nrun=1, frame_params={"k": 3})
    with pytest.raises(ValueError, match="frame_params applies to DataFrame input only"):
        rank_survey(np.ones((3, 3)), [2], nrun=1, frame_params={"rowCol": "r"})
    monkeypatch.setattr(survey, "TASK_LIMIT", 2)
    with pytest.raises(ValueError, match=r"stores 4 values, more than 2; pass randomized=False"):
        rank_survey(frame, [2], nrun=1, max_iter=5)
