"""Resident block tasks (sparknmf.engine.resident): one barrier job serves every half-step of a fit.

The oracle is the same fit with a Spark job per half-step: the tasks run the same kernels on the same blocks and the
driver sums their pieces in the same order, so the factors and the history must be identical, bit for bit.
Task failures under resident tasks are in tests/reliability/test_task_failure.py.
"""

import json
import socket
import time

import numpy as np
import pytest
import scipy.sparse as sp

from sparknmf import NMF
from sparknmf.decomposition.factorize import factorize
from sparknmf.engine import resident
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.validation import as_matrix, as_weighted

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


def _matrix(seed=0, shape=(30, 22), density=0.6):
    rng = np.random.default_rng(seed)
    return rng.random(shape) * (rng.random(shape) < density)


def _fit(block, execution, **options):
    block.execution = execution
    return factorize(block, 3, max_iter=5, tol=0, seed=3, **options)


def _identical(a, b):
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.H, b.H)
    assert a.history == b.history


@pytest.mark.parametrize("grid", [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1)])
@pytest.mark.parametrize("algorithm, init", [("hals", "nndsvda"), ("bpp", "random"), ("brunet", "random")])
def test_resident_tasks_give_the_fit_of_one_job_per_half_step(spark, grid, algorithm, init):
    """Every grid (more blocks than task slots: a task serves a run of blocks), NNDSVD's products, KL and LS rules."""
    block = BlockMatrix.from_array(spark, as_matrix(sp.csr_matrix(_matrix())), grid)
    try:
        assert block.partitions == min(grid[0] * grid[1], 2)
        _identical(_fit(block, "jobs", algorithm=algorithm, init=init),
                   _fit(block, "resident", algorithm=algorithm, init=init))
    finally:
        block.unpersist()


def test_resident_tasks_fit_weighted_nmf_like_jobs(spark):
    V = _matrix(1)
    weights = np.random.default_rng(2).random(V.shape) * (np.random.default_rng(3).random(V.shape) < 0.8)
    block = BlockMatrix.from_array(spark, as_weighted(V, weights, None, missing="zero"), (2, 1))
    try:
        _identical(_fit(block, "jobs", algorithm="bpp", reg=0.1), _fit(block, "resident", algorithm="bpp", reg=0.1))
    finally:
        block.unpersist()


def _jobs_during(spark, fit):
    """Number of Spark jobs started while ``fit()`` runs (none others run in this session meanwhile)."""
    tracker = spark.sparkContext.statusTracker()
    group = f"resident-test-{time.monotonic_ns()}"
    spark.sparkContext.setJobGroup(group, group)
    try:
        fit()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return len(tracker.getJobIdsForGroup(group))


def test_a_resident_fit_runs_its_iterations_in_one_barrier_job(spark):
    block = BlockMatrix.from_array(spark, as_matrix(_matrix(4)), (2, 1))
    try:
        resident_jobs = _jobs_during(spark, lambda: _fit(block, "resident", algorithm="hals", init="nndsvd"))
        per_step_jobs = _jobs_during(spark, lambda: _fit(block, "jobs", algorithm="hals", init="nndsvd"))
    finally:
        block.unpersist()
    # the barrier map stage, plus the count after its shuffle that adaptive execution runs as a second job;
    # both inherit the caller's job group
    assert 1 <= resident_jobs <= 2
    assert per_step_jobs >= 6  # a job per iteration and per product of the randomized SVD


def test_auto_mode_is_resident_in_a_classic_session_only(spark):
    from sparknmf.engine.session import is_connect

    assert resident.use_resident("auto", spark, 1 << 20, 2) is not is_connect(spark)
    assert not resident.use_resident("auto", spark, 1 << 20, 64)  # more partitions than task slots
    assert resident.use_resident("resident", spark, 1 << 40, 64) and not resident.use_resident("jobs", spark, 1, 1)
    with pytest.raises(ValueError, match="execution mode must be one of"):
        resident.use_resident("fast", spark, 1, 1)


def test_a_stranger_is_refused_and_the_fit_goes_on(spark):
    """A connection without the fit's token is closed; the tasks keep serving."""
    block = BlockMatrix.from_array(spark, as_matrix(_matrix(5)), (2, 1))
    strangers = []

    def intrude(iteration, elapsed, objective):
        if iteration == 2:  # between half-steps: the driver reads the hello during the next one
            port = block._resident.address[1]
            stranger = socket.create_connection(("127.0.0.1", port), timeout=10)
            payload = json.dumps({"token": "0" * 32, "task": 10**9, "partition": 0, "tasks": 2}).encode()
            stranger.sendall(len(payload).to_bytes(8, "big") + payload)
            strangers.append(stranger)

    try:
        reference = _fit(block, "jobs", algorithm="hals")
        _identical(reference, _fit(block, "resident", algorithm="hals", callback=intrude))
    finally:
        block.unpersist()
    with strangers[0] as stranger:
        assert stranger.recv(1) == b""  # closed by the driver, never sent a request


def test_tasks_that_cannot_reach_the_driver_fall_back_to_jobs(spark, monkeypatch):
    """Executors that cannot connect back (a firewall, a remote Connect client): the fit runs a job per half-step."""
    serve = resident._serve
    monkeypatch.setattr(resident, "_serve", lambda address, *rest: serve(("127.0.0.1", 9), *rest))  # nothing listens
    block = BlockMatrix.from_array(spark, as_matrix(_matrix(6)), (2, 1))
    try:
        reference = _fit(block, "jobs", algorithm="hals")
        with pytest.warns(RuntimeWarning, match="resident tasks could not start.*one Spark job per half-step"):
            _identical(reference, _fit(block, "resident", algorithm="hals"))
    finally:
        block.unpersist()


def test_execution_mode_param_is_checked_before_any_job(spark):
    with pytest.raises(ValueError, match="executionMode"):
        NMF(k=2, executionMode="fast", backend="spark").fit(_matrix())
    models, jobs = {}, {}
    for mode in ("jobs", "resident"):
        estimator = NMF(k=2, maxIter=6, tol=0, backend="spark", numRowBlocks=2, executionMode=mode)
        assert estimator.getExecutionMode() == mode
        jobs[mode] = _jobs_during(spark, lambda: models.setdefault(mode, estimator.fit(_matrix())))
    _identical(models["jobs"].result, models["resident"].result)
    assert jobs["jobs"] >= jobs["resident"] + 5  # a job per iteration against one for the fit


# ------------------------------------------------------------------------------------------ MaskedALS
def _ratings(spark, seed=0, n=40, m=30, density=0.3):
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    mask = rng.random((n, m)) < density
    mask[np.arange(n), rng.integers(0, m, n)] = True
    mask[rng.integers(0, n, m), np.arange(m)] = True
    u, i = np.nonzero(mask)
    return spark.createDataFrame(pa.table({
        "user": pa.array([f"u{x:02d}" for x in u]), "item": pa.array(i, pa.int64()),
        "rating": pa.array(np.round(rng.uniform(1, 5, u.size))),
        "ts": pa.array(rng.integers(880_000_000, 890_000_000, u.size), pa.int64()),
        "w": pa.array(rng.uniform(0.5, 2.0, u.size))}))


@pytest.mark.parametrize("options", [
    dict(implicitFeedback=True, implicitRegParam=2.0),  # conjugate-gradient passes reuse the blocks' Grams
    dict(timestampCol="ts", timeBins=3, userDrift=True, weightCol="w", regularization="weighted"),
    dict(nonnegative=True, biases=False),
])
def test_resident_masked_als_equals_one_job_per_half_step(spark, options):
    """Both copies of the ratings in one barrier job; 3×2 blocks on 2 slots: each task serves both sides.

    The local backend, whose threads build and fit the same 3×2 blocks on the driver, gives the same bits too.
    """
    from sparknmf import MaskedALS

    estimator = MaskedALS(**{"rank": 3, "regParam": 0.1, "biasRegParam": 0.1, "implicitFeedback": False, "maxIter": 4,
                             "tol": 0.0, "backend": "spark", "numUserBlocks": 3, "numItemBlocks": 2, **options})
    blocks = estimator.ingest(_ratings(spark))
    try:
        assert blocks.partitions == 2
        models, jobs = {}, {}
        for mode in ("jobs", "resident"):
            jobs[mode] = _jobs_during(spark, lambda: models.setdefault(
                mode, estimator.copy({estimator.executionMode: mode}).fitBlocks(blocks)))
    finally:
        blocks.unpersist()
    models["local"] = estimator.copy({estimator.backend: "local"}).fit(_ratings(spark))
    for mode in ("resident", "local"):
        for side in ("userParams", "itemParams"):
            np.testing.assert_array_equal(getattr(models["jobs"], side), getattr(models[mode], side))
        assert models["jobs"].history == models[mode].history
    assert 1 <= jobs["resident"] <= 2 and jobs["jobs"] >= 8  # one job for the fit, one per half-step


@pytest.mark.parametrize("grid, partitions", [((5, 3), 2), ((1, 3), 2), ((1, 1), 1)])
def test_rating_blocks_are_placed_by_key_in_as_many_partitions_as_slots(spark, grid, partitions):
    """Block ``key`` of either side sits in partition ``key % partitions``, with one shuffle (no range sampling);
    as many partitions as the side with more blocks has, at most one per slot, so none is empty."""
    from pyspark.sql import functions as F

    from sparknmf import MaskedALS

    estimator = MaskedALS(rank=2, maxIter=2, tol=0.0, implicitFeedback=False, backend="spark",
                          numUserBlocks=grid[0], numItemBlocks=grid[1])
    blocks = estimator.ingest(_ratings(spark, 1))
    try:
        placed = blocks.store.select("side", "key", F.spark_partition_id().alias("part")).collect()
        if grid == (1, 3):  # one task holds no user block: it answers the user half-steps with nothing
            fits = [estimator.copy({estimator.executionMode: mode}).fitBlocks(blocks) for mode in ("jobs", "resident")]
            np.testing.assert_array_equal(fits[0].userParams, fits[1].userParams)
            assert fits[0].history == fits[1].history
    finally:
        blocks.unpersist()
    assert blocks.partitions == partitions
    assert sorted((r.side, r.key) for r in placed) == ([(0, k) for k in range(grid[0])]
                                                       + [(1, k) for k in range(grid[1])])
    assert all(r.part == r.key % partitions for r in placed)


def test_resident_tasks_receive_only_the_factor_rows_their_blocks_refer_to(spark):
    """Two communities (users 0-19 rate items 0-14, users 20-39 items 15-29): each block needs half the other side.

    Routing (MLlib's out-blocks) ships those rows only; the fit is the same, bit for bit, as with every row shipped
    (a broadcast) and as with a job per half-step."""
    import pyarrow as pa

    from sparknmf import MaskedALS

    rng = np.random.default_rng(7)
    users, items = np.nonzero(rng.random((40, 30)) < 0.5)
    keep = (users < 20) == (items < 15)
    frame = spark.createDataFrame(pa.table({"user": pa.array(users[keep], pa.int64()),
                                            "item": pa.array(items[keep], pa.int64()),
                                            "rating": pa.array(rng.uniform(1, 5, keep.sum()))}))
    estimator = MaskedALS(rank=3, regParam=0.1, maxIter=3, tol=0.0, backend="spark", numUserBlocks=2,
                          numItemBlocks=2, implicitFeedback=True, implicitRegParam=2.0)
    blocks = estimator.ingest(frame)
    models, shipped = {}, {}
    try:
        assert [list(blocks.needs[("user", key)]) for key in (0, 1)] == [list(range(15)), list(range(15, 30))]
        for name, mode, route in (("jobs", "jobs", True), ("routed", "resident", True), ("whole", "resident", False)):
            blocks.route_factors, blocks.shipped_bytes = route, 0
            models[name] = estimator.copy({estimator.executionMode: mode}).fitBlocks(blocks)
            shipped[name] = blocks.shipped_bytes
    finally:
        blocks.unpersist()
    for name in ("routed", "whole"):
        for side in ("userParams", "itemParams", "implicitVectors"):
            np.testing.assert_array_equal(getattr(models["jobs"], side), getattr(models[name], side))
        assert models["jobs"].history == models[name].history
    assert shipped["jobs"] == 0 and 0 < shipped["routed"] < shipped["whole"]
