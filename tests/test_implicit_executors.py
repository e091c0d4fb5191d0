"""MaskedALS(implicitPrefs=True) with factorPlacement="executors" (issues 16 and 17).

The executors placement must give the driver placement's factors and objective over all pairs (YᵀY aggregated
from the item blocks, only k×k on the driver), keep the training events in Spark, filter them out of the
recommendations by blocks, and save and load them without collecting them.
"""

import _als_capped
import numpy as np
import pytest
from test_als_executors import _recs, _same_recs, _small_budget
from test_implicit_als import IMPLICIT, _dense, _events, _objective

from sparknmf import MaskedALS, MaskedALSModel
from sparknmf.ratings.distributed_implicit import side_gram

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


@pytest.fixture(scope="module")
def events(spark):
    return spark.createDataFrame(_events(negative=True, weights=True)).cache()


def _fit_both(events, **options):
    est = MaskedALS(**{**IMPLICIT, "maxIter": 2, "backend": "spark", "executionMode": "jobs", **options})
    driver = est.copy({est.factorPlacement: "driver"}).fit(events)
    executors = est.copy({est.factorPlacement: "executors"}).fit(events)
    return driver, executors


@pytest.mark.parametrize("options", [
    dict(numUserBlocks=3, numItemBlocks=2),
    dict(numUserBlocks=1, numItemBlocks=4),
    dict(numUserBlocks=5, numItemBlocks=1, confidence="log", epsilon=0.5),
    dict(numUserBlocks=2, numItemBlocks=3, nonnegative=True),
    dict(numUserBlocks=3, numItemBlocks=2, cgSteps=2),
    dict(numUserBlocks=2, numItemBlocks=2, weightCol="w", regularization="weighted", confidence="log"),
], ids=["3x2", "1x4-linear", "5x1-log", "2x3-nonnegative", "3x2-cg", "2x2-weights-weighted-log"])
def test_executors_equal_driver(events, options):
    driver, executors = _fit_both(events, **options)
    assert executors.placement == "executors" and driver.placement == "driver"
    assert executors.implicitPrefs and executors.globalMean == 0.0
    for side in ("user", "item"):
        np.testing.assert_allclose(executors.parameters(side), driver.parameters(side), rtol=1e-10, atol=1e-12)
    assert executors.history == pytest.approx(driver.history, rel=1e-10)
    assert executors.nIter == driver.nIter and executors.itemIds.equals(driver.itemIds)
    if options.get("nonnegative"):
        assert (executors.userParams >= 0).all() and (executors.itemParams >= 0).all()


def test_objective_over_all_pairs_is_the_brute_force_one_and_never_increases(events):
    table = _events(negative=True, weights=True)
    R, _, _ = _dense(table)
    est = MaskedALS(**{**IMPLICIT, "maxIter": 4, "backend": "spark", "numUserBlocks": 2, "numItemBlocks": 3,
                       "factorPlacement": "executors"})
    model = est.fit(events)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(model.history, model.history[1:]))
    assert model.history[-1] == pytest.approx(_objective(R, model.userParams, model.itemParams, 0.5, 2.0), rel=1e-10)


def test_side_gram_sums_the_blocks_gram_pieces(spark):
    from sparknmf.engine import codec

    rng = np.random.default_rng(3)
    Y = rng.standard_normal((11, 4))
    rows = [(0, key, codec.encode(Y[start : start + 4])) for key, start in enumerate(range(0, 11, 4))]
    rows.append((1, 0, codec.encode(np.full((2, 4), 9.0))))  # a message row: not a parameter block
    frame = spark.createDataFrame(rows, "kind int, key int, x binary")
    np.testing.assert_allclose(side_gram(frame, 3), Y[:, :3].T @ Y[:, :3], rtol=1e-12)


@pytest.fixture(scope="module")
def models(events):
    return _fit_both(events, numUserBlocks=3, numItemBlocks=2)


def test_recommendations_leave_out_seen_items_and_equal_the_driver(spark, events, models):
    driver, executors = models
    table = _events(negative=True, weights=True)
    seen = set(zip(table.column("user").to_pylist(), table.column("item").to_pylist()))
    got = _recs(executors.recommendForAllUsers(4), "user")
    assert set(got) == set(driver.userIds.to_pylist())
    assert not any((user, item) in seen for user, recs in got.items() for item, _ in recs)
    _same_recs(got, _recs(driver.recommendForAllUsers(4), "user"))
    by_item = _recs(executors.recommendForAllItems(3), "item")
    assert not any((user, item) in seen for item, recs in by_item.items() for user, _ in recs)
    _same_recs(by_item, _recs(driver.recommendForAllItems(3), "item"))
    # filterRated=False scores seen items too; an exclude frame adds to the seen pairs
    everything = _recs(executors.recommendForAllUsers(4, filterRated=False), "user")
    assert any((user, item) in seen for user, recs in everything.items() for item, _ in recs)
    _same_recs(everything, _recs(driver.recommendForAllUsers(4, filterRated=False), "user"))
    users = spark.createDataFrame([("u01",), ("u04",), ("nobody",)], "user string")
    extra = spark.createDataFrame([("u01", got["u01"][0][0])], "user string, item long")
    subset = _recs(executors.recommendForUserSubset(users, 3, exclude=extra), "user")
    _same_recs(subset, _recs(driver.recommendForUserSubset(users, 3, exclude=extra), "user"))
    assert got["u01"][0][0] not in [item for item, _ in subset["u01"]]


def test_outputs_transform_and_factor_frames(events, models):
    driver, executors = models
    for name in ("userFactors", "itemFactors"):
        a, b = sorted(getattr(driver, name).collect()), sorted(getattr(executors, name).collect())
        assert [r[0] for r in a] == [r[0] for r in b]
        np.testing.assert_allclose([r[1] for r in b], [r[1] for r in a], rtol=1e-10, atol=1e-12)
    a = sorted(driver.transform(events).collect())
    b = sorted(executors.transform(events).collect())
    assert [r.prediction for r in b] == pytest.approx([r.prediction for r in a], rel=1e-9, abs=1e-12)
    seen = executors.seenPairs  # a DataFrame of index pairs, one per event
    assert seen.count() == events.count() and sorted(seen.columns) == ["item", "user"]


def test_save_and_load_keep_the_events_in_the_executors(spark, events, models, tmp_path, monkeypatch):
    from sparknmf.ratings import model_files

    driver, executors = models
    executors.save(str(tmp_path / "exe"))
    small = MaskedALSModel.load(str(tmp_path / "exe"))  # small: on the driver, events as a CSR
    assert small.placement == "driver" and small.implicitPrefs
    assert (small.seenPairs != driver.seenPairs).nnz == 0
    monkeypatch.setattr(model_files, "choose_placement", _small_budget(model_files.choose_placement))
    big = MaskedALSModel.load(str(tmp_path / "exe"))
    assert big.placement == "executors" and big.implicitPrefs and big.globalMean == 0.0
    assert not hasattr(big.seenPairs, "tocsr") and big.seenPairs.count() == events.count()
    np.testing.assert_array_equal(big.userParams, executors.userParams)
    _same_recs(_recs(big.recommendForAllUsers(3), "user"), _recs(driver.recommendForAllUsers(3), "user"))
    big.save(str(tmp_path / "again"))
    again = MaskedALSModel.load(str(tmp_path / "again"))
    np.testing.assert_array_equal(again.itemParams, executors.itemParams)
    _same_recs(_recs(again.recommendForAllUsers(3), "user"), _recs(driver.recommendForAllUsers(3), "user"))


def launch(workdir):
    """The capped-driver child (tests/_als_capped.py implicit), started at collection (tests/conftest.py)."""
    return workdir, _als_capped.launch(workdir, implicit=True)


@pytest.mark.background
def test_a_capped_driver_fits_recommends_and_saves_an_implicit_model(spark, background):
    """maxResultSize=1m, about 0.64 MiB of factors: auto keeps them in the executors with implicitPrefs=True; no
    recommendation is a training event, and the saved model equals a driver-placement fit on the uncapped session.
    The child runs in the background."""
    tmp_path, report = background.result(timeout=1600)
    assert "factorPlacement='driver'" in report["driver"] and "spark.driver.maxResultSize" in report["driver"]
    assert report["placement"] == "executors" and report["seenRecommended"] == 0
    assert report["recommended"] == _als_capped.users(True) and report["predicted"] > 0
    est = _als_capped.estimator(True, backend="spark", factorPlacement="driver")
    driver = est.fit(_als_capped.ratings(spark, True))
    loaded = MaskedALSModel.load(str(tmp_path / "model"))
    assert loaded.implicitPrefs and (loaded.seenPairs != driver.seenPairs).nnz == 0
    np.testing.assert_allclose(loaded.userParams, driver.userParams, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loaded.itemParams, driver.itemParams, rtol=1e-10, atol=1e-12)
