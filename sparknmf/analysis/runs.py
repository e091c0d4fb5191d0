"""Where and how the runs of a multi-start fit execute: run seeds, run modes, Brunet's stopping rule.

Run r uses seed ``SeedSequence(seed).generate_state(nrun)[r]``
(:func:`run_seeds`), so the run seeds depend on the one seed only (and the
first r of them not on nrun).  Each run is one full factorisation by
:func:`~sparknmf.decomposition.factorize.factorize`; its assignment is the
dominant factor of each sample (argmax of each column of H; of each row of W
with ``samples="rows"``).

Where the runs execute (``mode``)
---------------------------------
``"local"``
    One after another in this process, with no Spark at all.
``"tasks"``
    One Spark job: ``spark.range(nrun)`` + ``mapInArrow``; each task runs
    full local factorisations with V travelling in the function's closure and
    returns W, H, objective and assignment as Arrow rows.  For matrices up to
    :data:`TASK_LIMIT` stored values (every task holds a copy of V).
``"distributed"``
    V as a :class:`~sparknmf.engine.matrix.BlockMatrix` (built once, cached) and the
    runs as distributed factorisations in sequence.
``"auto"`` (default)
    numpy / scipy input: ``"tasks"`` when a Spark session is active (or
    ``spark`` is given) and V has at most :data:`TASK_LIMIT` stored values,
    ``"distributed"`` when it is larger, ``"local"`` without a session.  A
    BlockMatrix (DataFrame input): ``"tasks"`` (its blocks collected to the
    driver) up to :data:`TASK_LIMIT`, else ``"distributed"``.

The same seed gives the same runs in every mode.

Brunet's stopping rule
----------------------
``stop=ConnectivityStop(checks=40, interval=10)`` stops a run when its
assignment (hence its connectivity matrix) has not changed for ``checks``
consecutive checks made every ``interval`` iterations (R NMF's
``stop.connectivity``); give ``tol=0`` to stop by this rule alone.

References
----------
J.-P. Brunet et al. (2004), PNAS 101(12), 4164-4169. https://doi.org/10.1073/pnas.0308531101
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sparknmf.analysis import metrics
from sparknmf.decomposition.factorize import DTYPES, FitResult, factorize
from sparknmf.engine import codec
from sparknmf.engine.local import LocalMatrix, matrix_stats
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.session import describe_jobs, get_session, parallelism
from sparknmf.errors import ConvergenceWarning
from sparknmf.kernels.seeding import INITS
from sparknmf.kernels.updates import UPDATE_RULES

__all__ = ["MODES", "TASK_LIMIT", "ConnectivityStop", "check_nrun", "check_rank_range", "choose_mode", "collect_blocks",
           "run_all", "run_options", "run_seeds", "stored_values"]

logger = logging.getLogger("sparknmf")

TASK_LIMIT = 1 << 22  # stored values of V (n·m dense, nnz sparse): ~32 MB of float64 per task
MODES = ("auto", "local", "tasks", "distributed")
_RUN_DDL = ("run int, objective double, loss double, n_iter int, stop_reason string, elapsed double, "
            "history array<double>, W binary, H binary, assignment array<int>")
_RUN_SCHEMA = pa.schema([
    ("run", pa.int32()), ("objective", pa.float64()), ("loss", pa.float64()), ("n_iter", pa.int32()),
    ("stop_reason", pa.string()),
    ("elapsed", pa.float64()), ("history", pa.list_(pa.float64())), ("W", pa.binary()), ("H", pa.binary()),
    ("assignment", pa.list_(pa.int32())),
])


def run_seeds(seed: int, nrun: int) -> np.ndarray:
    """The seeds of the ``nrun`` runs: ``SeedSequence(seed).generate_state(nrun)`` as int64."""
    return np.random.SeedSequence(int(seed)).generate_state(int(nrun)).astype(np.int64)


def check_rank_range(k, shape, whom: str = "k") -> int:
    """A clustering rank: an integer in ``[2, min(n, m)]``."""
    n, m = shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{whom} must be an integer, got {k!r}")
    if not 2 <= k <= min(n, m):
        raise ValueError(
            f"{whom}={k} is out of range: clustering needs 2 <= k <= min(n, m) = {min(n, m)} for V of shape {shape}"
        )
    return int(k)


def run_options(algorithm, init, max_iter, tol, time_limit, eta, beta, dtype) -> dict:
    """The per-run keyword arguments of :func:`~sparknmf.decomposition.factorize.factorize`, checked up front."""
    if algorithm not in UPDATE_RULES:
        raise ValueError(f"algorithm must be one of {sorted(UPDATE_RULES)}, got {algorithm!r}")
    allowed = [i for i in INITS if i != "custom"]
    if init not in allowed:
        raise ValueError(f"init must be one of {allowed} for multi-start runs, got {init!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return {"algorithm": algorithm, "init": init, "max_iter": max_iter, "tol": tol, "time_limit": time_limit,
            "eta": eta, "beta": beta, "dtype": DTYPES[dtype]}


def check_nrun(nrun) -> int:
    """The number of runs: an integer >= 1."""
    if isinstance(nrun, bool) or not isinstance(nrun, (int, np.integer)) or nrun < 1:
        raise ValueError(f"nrun must be an integer >= 1, got {nrun!r}")
    return int(nrun)


@dataclass(frozen=True)
class ConnectivityStop:
    """Brunet's rule: stop when the assignment has not changed for ``checks`` checks.

    A check is made every ``interval`` iterations; R NMF's defaults are
    ``stopconv=40`` checks every ``check.interval=10`` iterations.
    """

    checks: int = 40
    interval: int = 10

    def __post_init__(self):
        for name in ("checks", "interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ConnectivityStop: {name} must be an integer >= 1, got {value!r}")

    def checker(self, samples: str):
        """A fresh ``stop_check(iteration, W, H) -> bool`` for one run."""
        state = {"previous": None, "unchanged": 0}

        def stop_check(iteration, W, H):
            if iteration % self.interval:
                return False
            partition = _canonical(metrics.assignments(W, H, samples))
            if state["previous"] is not None and np.array_equal(partition, state["previous"]):
                state["unchanged"] += 1
            else:
                state["previous"], state["unchanged"] = partition, 0
            return state["unchanged"] >= self.checks

        return stop_check


def _canonical(clusters) -> np.ndarray:
    """Relabel clusters by first occurrence, so equal partitions give equal arrays."""
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


def _one_run(backend, k, seed, options, samples, stop):
    """One factorisation; returns (FitResult, assignment)."""
    check = stop.checker(samples) if stop is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted once for all runs by the caller
        fit = factorize(backend, k, seed=int(seed), stop_check=check, **options)
    return fit, metrics.assignments(fit.W, fit.H, samples)


def _run_record(run, fit, assignment) -> dict:
    return {
        "run": run, "objective": fit.objective, "loss": fit.loss, "n_iter": fit.n_iter, "stop_reason": fit.stop_reason,
        "elapsed": fit.elapsed, "history": fit.history, "W": codec.encode(fit.W), "H": codec.encode(fit.H),
        "assignment": assignment.tolist(),
    }


def _runs_task(payload, k, seeds, options, samples, stop):
    """mapInArrow body: each run id in the batch is one full local factorisation."""

    def run(batches):
        backend = None
        for batch in batches:
            if backend is None:
                backend = LocalMatrix(codec.decode(payload))
            rows = []
            for r in batch.column(0).to_pylist():
                fit, assignment = _one_run(backend, k, seeds[r], options, samples, stop)
                rows.append(_run_record(r, fit, assignment))
            yield pa.RecordBatch.from_pylist(rows, schema=_RUN_SCHEMA)

    return run


def _records_to_runs(table, seeds, options):
    """(FitResult, assignment) per run, in run order, from the collected task table."""
    out = []
    for row in sorted(table.to_pylist(), key=lambda r: r["run"]):
        fit = FitResult(
            W=np.array(codec.decode(row["W"])), H=np.array(codec.decode(row["H"])), objective=row["objective"],
            loss=row["loss"],
            history=row["history"], n_iter=row["n_iter"], converged=row["stop_reason"] == "tol",
            stop_reason=row["stop_reason"], elapsed=row["elapsed"], algorithm=options["algorithm"],
            seed=int(seeds[row["run"]]), init=options["init"],
        )
        out.append((fit, np.asarray(row["assignment"], dtype=np.int32)))
    return out


def _run_in_tasks(spark, V, k, seeds, options, samples, stop):
    nrun = len(seeds)
    partitions = min(nrun, 4 * parallelism(spark))
    task = _runs_task(codec.encode(V), k, seeds, options, samples, stop)
    with describe_jobs(spark, f"sparknmf: multi-start, {nrun} runs of k={k} as tasks"):
        table = spark.range(nrun, numPartitions=partitions).mapInArrow(task, _RUN_DDL).toArrow()
    return _records_to_runs(table, seeds, options)


def _run_in_sequence(backend, k, seeds, options, samples, stop):
    runs = []
    for r, seed in enumerate(seeds):
        with backend.describe(f"sparknmf: multi-start run {r + 1}/{len(seeds)}"):
            runs.append(_one_run(backend, k, seed, options, samples, stop))
        logger.info("multi-start run %d/%d objective %.10g", r + 1, len(seeds), runs[-1][0].objective)
    return runs


def _active_session():
    from pyspark.sql import SparkSession

    try:
        return SparkSession.getActiveSession()
    except Exception:  # e.g. no JVM and no Connect session
        return None


def stored_values(V) -> int:
    """Values V stores: n·m dense, nnz sparse or on Spark (what :data:`TASK_LIMIT` bounds)."""
    if isinstance(V, BlockMatrix):
        return V.stats["nnz"]
    return V.nnz if sp.issparse(V) else V.size


def choose_mode(V, mode, spark):
    """The mode the runs execute in: ``mode``, or the choice of ``"auto"`` (module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    small = stored_values(V) <= TASK_LIMIT
    if mode == "local" and isinstance(V, BlockMatrix):
        raise ValueError("mode='local' needs numpy or scipy input, got a distributed matrix (DataFrame input)")
    if mode != "auto":
        return mode
    if isinstance(V, BlockMatrix):
        return "tasks" if small else "distributed"
    if spark is None and _active_session() is None:
        return "local"
    return "tasks" if small else "distributed"


def collect_blocks(matrix: BlockMatrix):
    """A BlockMatrix's V (n×m) on the driver: ndarray, or CSR if any block is sparse."""
    table = matrix.blocks.toArrow()
    p, q = matrix.grid
    grid = [[None] * q for _ in range(p)]
    for bi, bj, payload in zip(*(table.column(c).to_pylist() for c in ("bi", "bj", "block"))):
        grid[bi][bj] = codec.decode(payload)
    if any(sp.issparse(b) for row in grid for b in row):
        return sp.bmat([[sp.csr_matrix(b) for b in row] for row in grid], format="csr")
    return np.block(grid)


def run_all(V, k, seeds, options, samples, stop, mode, spark=None, grid=None):
    """Run one factorisation per seed in ``mode`` (module docstring), V (n×m) a matrix or a BlockMatrix.

    Returns
    -------
    runs : list of (FitResult, ndarray of int32 of shape (s,))
        Each run's fit and assignment, in run order.
    best : FitResult
        The run with the lowest objective (the first one on ties).
    rss, sumsq : float
        ``‖V − W H‖²_F`` of the best run and ``Σ v²``.
    """
    created = None
    if mode == "tasks":
        target = collect_blocks(V) if isinstance(V, BlockMatrix) else V
        runs = _run_in_tasks(spark or get_session(), target, k, seeds, options, samples, stop)
    else:
        if mode == "distributed" and not isinstance(V, BlockMatrix):
            V = created = BlockMatrix.from_array(spark or get_session(), V, grid)
        backend = V if isinstance(V, BlockMatrix) else LocalMatrix(V)
        target = V
    try:
        if mode != "tasks":
            runs = _run_in_sequence(backend, k, seeds, options, samples, stop)
        objectives = np.array([fit.objective for fit, _ in runs])
        best = runs[int(np.argmin(objectives))][0]
        residual = metrics.rss(target, best.W, best.H)
    finally:
        if created is not None:
            created.unpersist()
    sumsq = target.stats["sumsq"] if isinstance(target, BlockMatrix) else matrix_stats(target)["sumsq"]
    return runs, best, residual, sumsq
