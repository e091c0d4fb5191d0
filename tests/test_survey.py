"""Rank survey: planted clusters, the randomised baseline, tables and writers, bad input."""

import csv
import json

import numpy as np
import pytest
import scipy.sparse as sp

from sparknmf.analysis.survey import Survey, randomize, rank_survey
from sparknmf.datasets import block_diagonal


@pytest.fixture(scope="module")
def planted_survey():
    V, labels = block_diagonal((10, 10, 10), features=30, seed=1)
    return rank_survey(V, [2, 3, 4, 5], nrun=10, labels=labels, mode="local", seed=0)


def test_planted_clusters_are_found_at_true_k(planted_survey):
    by_k = {row["k"]: row for row in planted_survey if row["data"] == "original"}
    assert by_k[3]["purity"] == 1.0 and by_k[3]["entropy"] == 0.0
    cophenetic = planted_survey.column("cophenetic")
    assert cophenetic[1] == pytest.approx(1.0) and cophenetic[1] == max(cophenetic)
    assert planted_survey.column("k") == [2, 3, 4, 5]
    random_k3 = next(r for r in planted_survey if r["data"] == "randomized" and r["k"] == 3)
    assert random_k3["cophenetic"] < by_k[3]["cophenetic"] and random_k3["purity"] < 1.0
    assert len(planted_survey) == 8


def test_randomize_permutes_each_column():
    V = np.arange(20, dtype=float).reshape(5, 4)
    R = randomize(V, seed=3)
    np.testing.assert_array_equal(np.sort(R, axis=0), np.sort(V, axis=0))
    assert not np.array_equal(R, V)
    np.testing.assert_array_equal(R, randomize(V, seed=3))
    S = sp.random(40, 6, density=0.3, random_state=1, format="csr")
    RS = randomize(S, seed=2)
    assert sp.issparse(RS) and RS.nnz == S.nnz
    for j in range(6):
        np.testing.assert_allclose(np.sort(RS[:, j].toarray().ravel()), np.sort(S[:, j].toarray().ravel()))


def test_table_writers_and_frame(planted_survey, tmp_path, spark):
    rows = list(csv.DictReader(planted_survey.write_csv(tmp_path / "s.csv").open()))
    assert len(rows) == 8 and rows[0]["data"] == "original" and float(rows[1]["purity"]) == 1.0
    loaded = json.loads(planted_survey.write_json(tmp_path / "s.json").read_text())
    assert loaded[1]["k"] == 3 and loaded[1]["entropy"] == 0.0
    frame = planted_survey.to_frame(spark)
    assert frame.count() == 8 and {"k", "data", "cophenetic", "purity"} <= set(frame.columns)
    assert frame.filter("data = 'original' AND k = 3").first()["purity"] == 1.0


def test_nan_is_null_in_json(tmp_path):
    path = Survey([{"data": "original", "k": 2, "cophenetic": float("nan")}]).write_json(tmp_path / "n.json")
    assert json.loads(path.read_text())[0]["cophenetic"] is None


@pytest.mark.parametrize("kwargs, error, message", [
    ({"labels": [0, 1] * 5}, ValueError, r"labels has 10 entries but there are 12 samples"),
    ({"labels": ["x"] * 12}, ValueError, r"one class only"),
    ({"ks": [1, 2]}, ValueError, r"k in ks=1 is out of range: clustering needs 2 <= k <= min\(n, m\) = 8"),
    ({"ks": [2, 9]}, ValueError, r"k in ks=9 is out of range"),
    ({"ks": []}, ValueError, r"ks is empty"),
    ({"ks": [2, 2]}, ValueError, r"ks has repeated ranks"),
    ({"nrun": 0}, ValueError, r"nrun must be an integer >= 1"),
    ({"consensus_limit": 5}, ValueError, r"consensus over the size limit: 12 samples > consensus_limit=5"),
    ({"maxiter": 5}, TypeError, r"rank_survey: .*maxiter"),
])
def test_bad_input_before_any_run(no_fits, kwargs, error, message):
    V = np.random.default_rng(0).random((8, 12))
    args = {"ks": [2, 3], "nrun": 2, "mode": "local", **kwargs}
    with pytest.raises(error, match=message):
        rank_survey(V, **args)


def test_on_fit_sees_every_fit_as_it_is_done():
    V, labels = block_diagonal((5, 5), features=8, seed=2)
    seen = []
    survey = rank_survey(V, [2, 3], nrun=2, mode="local", on_fit=lambda data, k, fit: seen.append((data, k, fit.k)))
    assert seen == [("original", 2, 2), ("original", 3, 3), ("randomized", 2, 2), ("randomized", 3, 3)]
    assert len(survey) == 4
    with pytest.raises(TypeError, match=r"rank_survey: on_fit must be callable"):
        rank_survey(V, [2], nrun=1, mode="local", on_fit=3)
