"""Evaluation metrics, grid search and cross-validation against hand computations."""

import math

import numpy as np
import pyarrow as pa
import pytest

from sparknmf import MaskedALS
from sparknmf.ratings.evaluation import catalog_coverage, cross_validate, grid_search, mae, ranking_metrics, rmse

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


def test_error_metrics(spark):
    frame = spark.createDataFrame([(4.0, 3.5), (2.0, 3.0), (5.0, 5.0)], "rating double, prediction double")
    assert rmse(frame) == pytest.approx(math.sqrt((0.25 + 1.0) / 3))
    assert mae(frame) == pytest.approx(1.5 / 3)
    with_nan = spark.createDataFrame([(4.0, float("nan")), (2.0, 3.0)], "rating double, prediction double")
    with pytest.raises(ValueError, match="1 of 2 predictions are null or NaN"):
        rmse(with_nan)


def test_ranking_metrics_and_coverage(spark):
    recs = spark.createDataFrame(
        [("a", [(1, 5.0), (2, 4.0), (3, 3.0)]), ("b", [(4, 5.0), (1, 4.0), (2, 1.0)])],
        "user string, recommendations array<struct<item:int,rating:float>>")
    relevant = spark.createDataFrame([("a", 2), ("a", 9), ("b", 4), ("b", 2), ("b", 7), ("c", 1)],
                                     "user string, item int")
    got = ranking_metrics(recs, relevant, 2)
    # a: hit at position 1 of {2, 9}; b: hit at position 0 of {4, 2, 7}; c: no recommendations
    dcg = 1 / math.log2(2)
    ideal2 = 1 + 1 / math.log2(3)
    assert got["queries"] == 3
    assert got["precision"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert got["recall"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    assert got["ndcg"] == pytest.approx(((1 / math.log2(3)) / ideal2 + dcg / ideal2 + 0) / 3)
    assert catalog_coverage(recs, 10) == pytest.approx(0.4)


def _frame(spark, seed=0):
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(20), 8)
    i = np.concatenate([rng.choice(15, 8, replace=False) for _ in range(20)])
    r = np.clip(np.round(3 + 0.1 * u - 0.1 * i + rng.normal(0, 0.5, u.size)), 1, 5)
    return spark.createDataFrame(pa.table({"user": u, "item": i, "rating": r}))


def test_grid_search_reuses_blocks_and_equals_separate_fits(spark):
    frame = _frame(spark)
    train, test = frame.randomSplit([0.8, 0.2], seed=1)
    train, test = train.cache(), test.cache()
    est = MaskedALS(rank=2, maxIter=3, implicitFeedback=False, backend="local", coldStartStrategy="biases")
    results = grid_search(est, train, test, {"rank": [1, 2], "regParam": [0.5, 5.0]})
    assert [(r["rank"], r["regParam"]) for r in results] == [(1, 0.5), (1, 5.0), (2, 0.5), (2, 5.0)]
    single = est.copy({est.rank: 2, est.regParam: 5.0}).fit(train)
    assert results[3]["rmse"] == pytest.approx(rmse(single.transform(test)), rel=1e-10)
    assert results[3]["mae"] == pytest.approx(mae(single.transform(test)), rel=1e-10)


def test_cross_validation_folds_partition_the_data(spark):
    frame = _frame(spark, 1)
    est = MaskedALS(rank=1, maxIter=2, implicitFeedback=False, backend="local", coldStartStrategy="biases")
    summary = cross_validate(est, frame, folds=3, seed=4, grid={"regParam": [1.0, 10.0]})
    assert [s["regParam"] for s in summary] == [1.0, 10.0]
    for point in summary:
        assert len(point["folds"]["rmse"]) == 3 and point["rmse"] == pytest.approx(np.mean(point["folds"]["rmse"]))
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        cross_validate(est, frame, folds=1)
