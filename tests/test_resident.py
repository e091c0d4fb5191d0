"""Resident block tasks (sparknmf.resident): one barrier job serves every half-step of a fit.

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

from sparknmf import NMF, resident
from sparknmf.factorize import factorize
from sparknmf.matrix import BlockMatrix
from sparknmf.validation import as_matrix, as_weighted

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
    from sparknmf.session import is_connect

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
            port = block._resident._server.getsockname()[1]
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
    monkeypatch.setattr(resident, "_serve", lambda address, token: serve(("127.0.0.1", 9), token))  # nothing listens
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
