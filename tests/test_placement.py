"""factorPlacement (issue 16): W and H as row blocks in the executors give the driver placement's factors.

Tiny matrices on the shared session; the executors placement runs Spark jobs
(a join, a checkpoint and a small collect per half-step), so iterations are few.
"""

import numpy as np
import pytest

from sparknmf import NMF, NMFModel
from sparknmf.decomposition.factorize import factorize
from sparknmf.engine import placement as placement_module
from sparknmf.engine.factors import random_factor
from sparknmf.engine.id_index import IdIndex
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.validation import as_weighted
from sparknmf.kernels import seeding

pytestmark = pytest.mark.spark


def _V(n=14, m=11, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.random((n, 3)) @ rng.random((3, m))
    V[rng.random((n, m)) < 0.2] = 0.0
    return V


def _close(a, b, rtol=1e-10):
    scale = max(np.abs(b).max(), 1e-300)
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def _both(spark, V, grid, **kwargs):
    """(driver FitResult, executors W, executors H, executors FitResult) of one fit on one grid."""
    backend = BlockMatrix.from_array(spark, V, grid)
    backend.execution = "jobs"
    kwargs.setdefault("init", "random")  # bit for bit; NNDSVD starts agree to rounding (test_frame_nndsvd.py)
    try:
        driver = factorize(backend, kwargs.pop("k", 3), placement="driver", **kwargs)
        executors = factorize(backend, driver.W.shape[1], placement="executors", **kwargs)
        W, Ht = (X.collect() for X in executors.factors)
        for X in executors.factors:
            X.release()
        return driver, W, Ht.T, executors
    finally:
        backend.unpersist()


@pytest.mark.parametrize("algorithm", ["bpp", "hals", "lee", "brunet", "snmf/r", "snmf/l"])
def test_executors_equal_driver_two_dimensional_grid(spark, algorithm):
    driver, W, H, executors = _both(spark, _V(), (2, 2), algorithm=algorithm, max_iter=3, tol=0, seed=3)
    _close(W, driver.W)
    _close(H, driver.H)
    assert executors.history == pytest.approx(driver.history, rel=1e-10)
    assert executors.placement == "executors" and executors.W is None and executors.H is None


@pytest.mark.parametrize("grid", [(3, 1), (1, 3)])
@pytest.mark.parametrize("algorithm", ["bpp", "brunet"])
def test_executors_equal_driver_fused_grids(spark, grid, algorithm):
    driver, W, H, executors = _both(spark, _V(), grid, algorithm=algorithm, max_iter=3, tol=0, seed=5)
    _close(W, driver.W)
    _close(H, driver.H)
    assert executors.history == pytest.approx(driver.history, rel=1e-10)


@pytest.mark.parametrize("algorithm,grid", [("bpp", (2, 2)), ("lee", (3, 1)), ("bpp", (1, 3))])
def test_executors_equal_driver_weighted_with_missing_entries(spark, algorithm, grid):
    V = _V()
    V[np.random.default_rng(1).random(V.shape) < 0.15] = np.nan
    driver, W, H, _ = _both(spark, as_weighted(V, None, None, missing="missing"), grid, algorithm=algorithm,
                            max_iter=3, tol=0, seed=2, reg=0.1)
    _close(W, driver.W)
    _close(H, driver.H)


def test_custom_start_split_into_blocks(spark):
    rng = np.random.default_rng(4)
    W0, H0 = rng.random((14, 3)), rng.random((3, 11))
    driver, W, H, _ = _both(spark, _V(), (2, 2), algorithm="hals", init="custom", W0=W0, H0=H0, max_iter=2, tol=0)
    _close(W, driver.W)
    _close(H, driver.H)


def test_random_blocks_drawn_in_executors_are_the_driver_numbers(spark):
    """Blocks that straddle the 4096-row chunks of the seeded draw still give random_factors bit for bit."""
    n, k, mean = 9000, 2, 0.7
    W, Ht = seeding.random_factors(n, 5, k, 11, mean)
    scale = np.sqrt(mean / k)
    frame = random_factor(spark, n, k, 3001, seed=11, stream=0, scale=scale, floor=None, dtype=np.float64, kl=False)
    try:
        np.testing.assert_array_equal(frame.collect(), W)
        np.testing.assert_allclose(frame.gram, W.T @ W, rtol=1e-12)
    finally:
        frame.release()


def test_plan_does_not_grow(spark):
    """Every half-step starts from checkpointed blocks: the factors' plan after 12 iterations is as short as
    after 2 (so 500 iterations need no checkpoint directory)."""
    backend = BlockMatrix.from_array(spark, _V(), (2, 1))
    try:
        plans = []
        for iterations in (2, 12):
            result = factorize(backend, 2, algorithm="hals", max_iter=iterations, tol=0, placement="executors")
            plans.append(len(_plan(result.factors[0].frame)))
            for X in result.factors:
                X.release()
        assert plans[1] == plans[0]
    finally:
        backend.unpersist()


def test_replaced_factor_blocks_are_released(spark):
    """Classic sessions: each half-step's checkpoint is unpersisted when the next replaces it, so after a fit
    only the result's two factors are held, whatever the number of iterations."""
    if not hasattr(spark, "sparkContext") or type(spark).__module__.startswith("pyspark.sql.connect"):
        pytest.skip("Connect: the server releases checkpoints when their handles go (no storage to inspect)")
    storage = spark.sparkContext._jsc.sc().getRDDStorageInfo
    backend = BlockMatrix.from_array(spark, _V(), (2, 2))
    try:
        before = len(storage())
        result = factorize(backend, 2, algorithm="lee", init="random", max_iter=4, tol=0, placement="executors")
        assert len(storage()) == before + 2
        for X in result.factors:
            X.release()
        assert len(storage()) == before
    finally:
        backend.unpersist()


def _plan(frame):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        frame.explain(True)
    return "\n".join(line for line in out.getvalue().splitlines() if "#" not in line and "RDD" not in line)


# ---------------------------------------------------------------- the Param
def _coordinates(spark, V):
    rows, cols = np.nonzero(V)
    return spark.createDataFrame([(int(i), int(j), float(V[i, j])) for i, j in zip(rows, cols)],
                                 "row int, col int, value double")


def test_factor_placement_param_fits_and_model_keeps_frames(spark, tmp_path):
    V = _V()
    frame = _coordinates(spark, V)
    options = dict(k=3, algorithm="hals", init="random", maxIter=3, tol=0.0, seed=1, numRowBlocks=2,
                   numColBlocks=2)
    driver = NMF(factorPlacement="driver", **options).fit(frame)
    model = NMF(factorPlacement="executors", **options).fit(frame)
    assert model.placement == "executors" and model.rank == 3 and model.shape == V.shape
    _close(model.W, driver.W)
    _close(model.H, driver.H)
    rows = model.rowFactors.toArrow().sort_by("id")
    _close(np.array(rows.column("features").to_pylist()), driver.W)
    projected = [np.array(t.sort_by("col").column("coefficients").to_pylist())
                 for t in (model.transform(frame).toArrow(), driver.transform(frame).toArrow())]
    np.testing.assert_allclose(projected[0], projected[1], rtol=1e-8, atol=1e-12)  # by joins: W not collected
    positions = spark.createDataFrame([(0, 1), (13, 10), (99, 0)], "row int, col int")
    completed = [t.sort_by("row").column("prediction").to_numpy()
                 for t in (model.complete(positions).toArrow(), driver.complete(positions).toArrow())]
    np.testing.assert_allclose(completed[0], completed[1], rtol=1e-10)  # NaN for the unknown row id 99
    path = str(tmp_path / "model")
    model.save(path)
    loaded = NMFModel.load(path)
    assert loaded.placement == "executors" and loaded.shape == V.shape
    _close(loaded.W, driver.W)
    _close(loaded.H, driver.H)
    np.testing.assert_allclose(loaded.transform(V[:, :4]), driver.transform(V[:, :4]), rtol=1e-8, atol=1e-12)


def test_forced_driver_beyond_the_budget_is_a_value_error_before_the_fit(spark, monkeypatch):
    monkeypatch.setattr(placement_module, "driver_budget", lambda spark: (100.0, "spark.driver.maxResultSize"))
    frame = _coordinates(spark, _V())
    with pytest.raises(ValueError, match=r"factorPlacement='driver'.*spark.driver.maxResultSize.*'executors'"):
        NMF(k=2, factorPlacement="driver", maxIter=1).fit(frame)
    model = NMF(k=2, maxIter=1, tol=0.0).fit(frame)  # auto: beyond the budget -> executors
    assert model.placement == "executors"
    with pytest.raises(ValueError, match="NMFModel.W: the model's factors are in the executors"):
        model.W


@pytest.mark.parametrize("options,message", [
    (dict(checkpointDir="/tmp/x"), "leave checkpointDir empty"),
    (dict(backend="local"), "needs the Spark backend"),
])
def test_executors_placement_refusals(spark, options, message):
    with pytest.raises(ValueError, match=message):
        NMF(k=2, factorPlacement="executors", **options).fit(_V())


def test_numpy_input_on_the_local_backend_stays_on_the_driver():
    assert NMF(k=2, maxIter=2, tol=0.0).fit(_V()).placement == "driver"


def test_a_saved_model_beyond_the_budget_loads_into_the_executors(spark, tmp_path, monkeypatch):
    """A driver-placement model with string ids, loaded where it exceeds the driver's budget, stays in Spark."""
    V = _V()
    rows, cols = np.nonzero(V)
    frame = spark.createDataFrame([(f"r{i:02d}", f"c{j:02d}", float(V[i, j])) for i, j in zip(rows, cols)],
                                  "row string, col string, value double")
    model = NMF(k=2, algorithm="bpp", init="random", maxIter=3, tol=0.0, factorPlacement="driver").fit(frame)
    path = str(tmp_path / "driver-model")
    model.save(path)
    monkeypatch.setattr(placement_module, "driver_budget", lambda spark: (100.0, "spark.driver.maxResultSize"))
    loaded = NMFModel.load(path)
    assert loaded.placement == "executors" and isinstance(loaded.rowIds, IdIndex)  # the ids were not collected
    assert loaded.rowIds.collect().to_pylist() == model.rowIds.to_pylist()
    got = loaded.rowFactors.toArrow().sort_by("id")
    assert got.column("id").to_pylist() == model.rowIds.to_pylist()
    np.testing.assert_array_equal(np.array(got.column("features").to_pylist()), model.W)
    monkeypatch.undo()
    np.testing.assert_array_equal(loaded.H, model.H)


def test_multistart_keeps_its_factors_on_the_driver_and_says_so(spark, monkeypatch):
    from sparknmf import MultiStartNMF

    with pytest.raises(ValueError, match="MultiStartNMF: factorPlacement='executors' is not supported"):
        MultiStartNMF(k=2, nrun=2, factorPlacement="executors").fit(_V())
    frame = _coordinates(spark, _V())
    monkeypatch.setattr(placement_module, "driver_budget", lambda spark: (100.0, "spark.driver.maxResultSize"))
    with pytest.raises(ValueError, match=r"MultiStartNMF: W and H take .* MiB, more than .*spark.driver.maxResultSize"):
        MultiStartNMF(k=2, nrun=2, maxIter=2).fit(frame)
    monkeypatch.undo()
    assert MultiStartNMF(k=2, nrun=2, maxIter=2).fit(frame).nrun == 2  # within the budget: runs as usual
