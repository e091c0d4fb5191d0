"""MaskedALS with factorPlacement="executors": the parameters live in Spark as blocks (issue 16).

The executors placement must give the driver placement's parameters (same seed, same blocks), never grow
its plan, refuse what it does not support before any fitting, and keep the model's outputs in Spark.
"""

import numpy as np
import pytest
from test_als import FAST, _table

from sparknmf import MaskedALS
from sparknmf.kernels.seeding import chunked_draw
from sparknmf.ratings.distributed import draw_rows, out_lists, read_out_lists

pytestmark = pytest.mark.spark

GRID = dict(backend="spark", numUserBlocks=3, numItemBlocks=2)


@pytest.fixture(scope="module")
def frame(spark):
    return spark.createDataFrame(_table(1, times=True, weights=True)).cache()


def _fit_both(frame, **options):
    est = MaskedALS(**{**FAST, "maxIter": 3, **GRID, **options})
    driver = est.copy({est.factorPlacement: "driver"}).fit(frame)
    executors = est.copy({est.factorPlacement: "executors"}).fit(frame)
    return driver, executors


def test_draw_rows_are_the_driver_chunks():
    full = chunked_draw(10_000, 3, 7, 11)
    for start, stop in ((0, 5), (4090, 4100), (4096, 8192), (8000, 10_000), (9_999, 10_000)):
        np.testing.assert_array_equal(draw_rows(start, stop, 10_000, 3, 7, 11), full[start:stop])


def test_out_lists_name_the_rows_each_destination_needs():
    # rows: 0 -> cols 0, 3; 1 -> col 1; 2 -> cols 0, 2 (other side in blocks of 2)
    indptr, cols = np.array([0, 2, 3, 5]), np.array([0, 3, 1, 0, 2])
    got = [(dst, rows.tolist()) for dst, rows in read_out_lists(out_lists(indptr, cols, 2))]
    assert got == [(0, [0, 1, 2]), (1, [0, 2])]


@pytest.mark.parametrize("options", [
    dict(),
    dict(biases=False),
    dict(nonnegative=True),
    dict(weightCol="w", regularization="weighted"),
    dict(timestampCol="ts", timeBins=3, userDrift=True, weightCol="w"),
], ids=["plain", "no-biases", "nonnegative", "weights", "time-terms"])
def test_executors_equal_driver(frame, options):
    driver, executors = _fit_both(frame, **options)
    assert executors.placement == "executors" and driver.placement == "driver"
    for side in ("user", "item"):
        np.testing.assert_allclose(executors.params(side), driver.params(side), rtol=1e-10, atol=1e-12)
    assert executors.history == pytest.approx(driver.history, rel=1e-10)
    assert executors.userIds.equals(driver.userIds) and executors.nIter == driver.nIter


def test_forced_driver_beyond_the_budget_is_a_value_error(spark, frame, monkeypatch):
    from sparknmf.ratings import estimator

    monkeypatch.setattr(estimator, "choose_placement", _small_budget(estimator.choose_placement))
    est = MaskedALS(**{**FAST, "maxIter": 1, **GRID, "factorPlacement": "driver"})
    with pytest.raises(ValueError, match="factorPlacement='driver'.*budget.*factorPlacement='executors'"):
        est.fit(frame)
    # auto picks the executors under the same budget, and says why when it cannot
    model = est.copy({est.factorPlacement: "auto"}).fit(frame)
    assert model.placement == "executors"
    with pytest.raises(ValueError, match="chosen by factorPlacement='auto'.*implicitFeedback=True"):
        est.copy({est.factorPlacement: "auto", est.implicitFeedback: True}).fit(frame)


def _small_budget(choose):
    from sparknmf.engine import placement

    def small(spark, requested, rows, width, **kwargs):
        original = placement.driver_budget
        placement.driver_budget = lambda spark: (64.0, "spark.driver.maxResultSize")
        try:
            return choose(spark, requested, rows, width, **kwargs)
        finally:
            placement.driver_budget = original

    return small


@pytest.mark.parametrize("options, message", [
    (dict(implicitFeedback=True), "implicitFeedback=True"),
    (dict(backend="local"), "backend='local'"),
    (dict(executionMode="resident"), "executionMode='resident'"),
    (dict(checkpointDir="/tmp/x"), "checkpointDir"),
])
def test_unsupported_combinations_are_refused_before_any_job(spark, frame, options, message):
    from reliability._spark_jobs import spark_jobs

    est = MaskedALS(**{**FAST, **GRID, "factorPlacement": "executors", **options})
    with spark_jobs(spark) as jobs, pytest.raises(ValueError, match=message):
        est.fit(frame)
    assert not jobs


def test_factor_placement_param_is_checked(spark):
    with pytest.raises(ValueError, match="factorPlacement"):
        MaskedALS(factorPlacement="gpu")._check_rules()
