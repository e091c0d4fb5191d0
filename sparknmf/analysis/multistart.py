"""Multi-start NMF, consensus matrix and the clustering summary (R's ``nmf(V, k, nrun=30)``).

:func:`multistart` factorises V (n×m) ``nrun`` times from different seeds,
keeps the fit with the lowest objective and the cluster assignment of every
run: the dominant factor of each sample (argmax of each column of H; of each
row of W with ``samples="rows"``).  Run r uses seed
``SeedSequence(seed).generate_state(nrun)[r]``, so the run seeds depend on
the one seed only (and the first r of them not on nrun).

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

Consensus
---------
The consensus matrix C (s×s) is the mean over runs of the connectivity
matrices (``C_ij`` = fraction of runs that put samples i and j in the same
cluster).  It lives on the driver, so it has a size limit: at most
``consensus_limit`` samples (default :data:`CONSENSUS_LIMIT` = 4000, i.e.
128 MB of float64).  With more samples, ``consensus_sample=True`` uses a
uniform sample without replacement of ``consensus_limit`` samples, drawn by
``numpy.random.default_rng([seed, 7]).choice(m, limit, replace=False)`` and
sorted (``Consensus.index`` lists them); without it, :func:`multistart`
raises before any run starts.

Brunet's stopping rule
----------------------
``stop=ConnectivityStop(checks=40, interval=10)`` stops a run when its
assignment (hence its connectivity matrix) has not changed for ``checks``
consecutive checks made every ``interval`` iterations (R NMF's
``stop.connectivity``); give ``tol=0`` to stop by this rule alone.

References
----------
J.-P. Brunet et al. (2004), PNAS 101(12), 4164-4169. https://doi.org/10.1073/pnas.0308531101
S. Monti et al. (2003), Machine Learning 52, 91-118 (consensus clustering).
https://doi.org/10.1023/A:1023949509487
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters

from sparknmf.analysis import metrics
from sparknmf.decomposition.estimator import NMF, NMFModel, _NMFParams
from sparknmf.decomposition.factorize import FitResult, factorize
from sparknmf.engine import codec, persistence
from sparknmf.engine.local import LocalMatrix, matrix_stats
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.session import describe_jobs, get_session, parallelism
from sparknmf.engine.validation import as_matrix
from sparknmf.errors import ConvergenceWarning
from sparknmf.kernels.seeding import INITS
from sparknmf.kernels.updates import UPDATE_RULES
from sparknmf.params import Interval, OneOf, check_params, with_accessors

__all__ = [
    "CONSENSUS_LIMIT", "TASK_LIMIT", "MODES", "Consensus", "ConnectivityStop", "MultiFit", "consensus_matrix",
    "multistart", "run_seeds", "check_rank_range", "MultiStartNMF", "MultiStartNMFModel",
]

logger = logging.getLogger("sparknmf")

CONSENSUS_LIMIT = 4000
TASK_LIMIT = 1 << 22  # stored values of V (n·m dense, nnz sparse): ~32 MB of float64 per task
MODES = ("auto", "local", "tasks", "distributed")
_SAMPLE_STREAM = 7
_DTYPES = {"float64": np.float64, "float32": np.float32}
_RUN_DDL = ("run int, objective double, n_iter int, stop_reason string, elapsed double, "
            "history array<double>, W binary, H binary, assignment array<int>")
_RUN_SCHEMA = pa.schema([
    ("run", pa.int32()), ("objective", pa.float64()), ("n_iter", pa.int32()), ("stop_reason", pa.string()),
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


def _run_options(algorithm, init, max_iter, tol, time_limit, eta, beta, dtype) -> dict:
    """The per-run keyword arguments of :func:`~sparknmf.decomposition.factorize.factorize`, checked up front."""
    if algorithm not in UPDATE_RULES:
        raise ValueError(f"algorithm must be one of {sorted(UPDATE_RULES)}, got {algorithm!r}")
    allowed = [i for i in INITS if i != "custom"]
    if init not in allowed:
        raise ValueError(f"init must be one of {allowed} for multi-start runs, got {init!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    return {"algorithm": algorithm, "init": init, "max_iter": max_iter, "tol": tol, "time_limit": time_limit,
            "eta": eta, "beta": beta, "dtype": _DTYPES[dtype]}


def _check_nrun(nrun) -> int:
    if isinstance(nrun, bool) or not isinstance(nrun, (int, np.integer)) or nrun < 1:
        raise ValueError(f"nrun must be an integer >= 1, got {nrun!r}")
    return int(nrun)


# ---------------------------------------------------------------- Brunet's stopping rule
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


# ---------------------------------------------------------------- consensus
@dataclass
class Consensus:
    """A consensus matrix and the samples it covers.

    Attributes
    ----------
    matrix : ndarray of shape (s, s)
        ``C_ij`` = fraction of runs putting samples ``index[i]`` and ``index[j]`` together.
    index : ndarray of int64 of shape (s,)
        Positions of the samples (all of them unless ``sampled``).
    sampled : bool
        True when a seeded sample of the samples is used (size limit).
    """

    matrix: np.ndarray
    index: np.ndarray
    sampled: bool = False


def _sample_index(size: int, limit: int, seed: int, allow: bool, what: str = "samples") -> tuple[np.ndarray, bool]:
    if size <= limit:
        return np.arange(size, dtype=np.int64), False
    if not allow:
        raise ValueError(
            f"consensus over the size limit: {size} {what} > consensus_limit={limit} "
            f"(an n×n matrix of {size * size * 8 / 2**20:.0f} MB on the driver); pass consensus_sample=True "
            f"to use a seeded sample of {limit} {what}, or raise consensus_limit"
        )
    rng = np.random.default_rng([int(seed), _SAMPLE_STREAM])
    return np.sort(rng.choice(size, limit, replace=False)).astype(np.int64), True


def consensus_matrix(assignments, *, limit: int = CONSENSUS_LIMIT, sample: bool = False, seed: int = 0) -> Consensus:
    """Mean connectivity of a set of runs.

    Parameters
    ----------
    assignments : array-like of int of shape (nrun, s_total)
        Cluster of each sample in each run.
    limit : int
        Largest number of samples for which the full matrix is built.
    sample : bool
        Over the limit: use ``limit`` samples drawn with the seed (module
        docstring) instead of raising.
    seed : int

    Returns
    -------
    Consensus
    """
    A = np.atleast_2d(np.asarray(assignments))
    if A.size == 0:
        raise ValueError("consensus_matrix needs at least one run with at least one sample")
    index, sampled = _sample_index(A.shape[1], int(limit), seed, sample)
    A = A[:, index]
    C = np.zeros((index.size, index.size))
    for run in A:
        C += run[:, None] == run[None, :]
    return Consensus(C / A.shape[0], index, sampled)


# ---------------------------------------------------------------- the runs
def _one_run(backend, k, seed, options, samples, stop):
    """One factorisation; returns (FitResult, assignment)."""
    check = stop.checker(samples) if stop is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted once for all runs by the caller
        fit = factorize(backend, k, seed=int(seed), stop_check=check, **options)
    return fit, metrics.assignments(fit.W, fit.H, samples)


def _run_record(run, fit, assignment) -> dict:
    return {
        "run": run, "objective": fit.objective, "n_iter": fit.n_iter, "stop_reason": fit.stop_reason,
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


def _stored_values(V) -> int:
    if isinstance(V, BlockMatrix):
        return V.stats["nnz"]
    return V.nnz if sp.issparse(V) else V.size


def _choose_mode(V, mode, spark):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    small = _stored_values(V) <= TASK_LIMIT
    if mode == "local" and isinstance(V, BlockMatrix):
        raise ValueError("mode='local' needs numpy or scipy input, got a distributed matrix (DataFrame input)")
    if mode != "auto":
        return mode
    if isinstance(V, BlockMatrix):
        return "tasks" if small else "distributed"
    if spark is None and _active_session() is None:
        return "local"
    return "tasks" if small else "distributed"


def _collect_blocks(matrix: BlockMatrix):
    """A BlockMatrix's V (n×m) on the driver: ndarray, or CSR if any block is sparse."""
    table = matrix.blocks.toArrow()
    p, q = matrix.grid
    grid = [[None] * q for _ in range(p)]
    for bi, bj, payload in zip(*(table.column(c).to_pylist() for c in ("bi", "bj", "block"))):
        grid[bi][bj] = codec.decode(payload)
    if any(sp.issparse(b) for row in grid for b in row):
        return sp.bmat([[sp.csr_matrix(b) for b in row] for row in grid], format="csr")
    return np.block(grid)


@dataclass
class MultiFit:
    """The outcome of :func:`multistart`: the best fit and every run's assignment.

    Attributes
    ----------
    best : FitResult
        The run with the lowest objective (the first one on ties).
    assignments : ndarray of int32 of shape (nrun, s)
        Cluster of each sample (s = m columns, or n rows) in each run.
    objectives, n_iters : ndarray of shape (nrun,)
    seeds : ndarray of int64 of shape (nrun,)
    stop_reasons : list of str
    k, samples, mode, seed :
        The settings used (mode is the one actually run).
    rss, sumsq : float
        ``‖V − W H‖²_F`` of the best fit and ``Σ v²``.
    consensus_limit, consensus_sample :
        The consensus size limit and whether sampling is allowed.
    elapsed : float
        Wall-clock seconds for all runs.
    """

    best: FitResult
    assignments: np.ndarray
    objectives: np.ndarray
    n_iters: np.ndarray
    seeds: np.ndarray
    stop_reasons: list
    k: int
    samples: str
    mode: str
    seed: int
    rss: float
    sumsq: float
    consensus_limit: int = CONSENSUS_LIMIT
    consensus_sample: bool = False
    elapsed: float = 0.0
    _consensus: Consensus | None = field(default=None, repr=False)

    @property
    def W(self) -> np.ndarray:
        """Basis of the best fit, shape (n, k)."""
        return self.best.W

    @property
    def H(self) -> np.ndarray:
        """Coefficients of the best fit, shape (k, m)."""
        return self.best.H

    @property
    def nrun(self) -> int:
        return int(self.assignments.shape[0])

    @property
    def evar(self) -> float:
        """Explained variance ``1 − RSS / Σ v²`` of the best fit."""
        return metrics.explained_variance(self.rss, self.sumsq)

    def consensus(self) -> Consensus:
        """The consensus matrix of all runs (computed once; see the size limit in the module docstring)."""
        if self._consensus is None:
            self._consensus = consensus_matrix(self.assignments, limit=self.consensus_limit,
                                               sample=self.consensus_sample, seed=self.seed)
        return self._consensus

    def predict(self):
        """Cluster and probability of each sample from the best fit (:func:`sparknmf.analysis.metrics.predict`)."""
        return metrics.predict(self.W, self.H, self.samples)

    def _sides(self):
        """(sample-side factor k×s, feature-side factor features×k)."""
        if self.samples == "columns":
            return self.H, self.W
        return self.W.T, self.H.T

    def summary(self, labels=None) -> dict:
        """Every measure of this clustering (R's ``summary(fit, class=labels)``).

        Parameters
        ----------
        labels : sequence of shape (s,), optional
            Known class of each sample; adds ``purity`` and ``entropy`` of the
            best fit's clusters.

        Returns
        -------
        dict with keys ``k, nrun, algorithm, mode, objective, rss, evar,
        sparseness_basis, sparseness_coef, silhouette_coef, silhouette_basis,
        silhouette_consensus, cophenetic, dispersion, n_iter, elapsed,
        consensus_samples, consensus_sampled`` (+ ``purity, entropy``).
        Silhouettes use the consensus's samples; the basis silhouette at most
        ``consensus_limit`` features (a seeded sample beyond).
        """
        best_clusters = self.assignments[int(np.argmin(self.objectives))]
        codes = None if labels is None else metrics.check_labels(labels, best_clusters.size)
        cons = self.consensus()
        coef, basis = self._sides()
        feature_index, _ = _sample_index(basis.shape[0], self.consensus_limit, self.seed + 1, True)
        out = {
            "k": self.k, "nrun": self.nrun, "algorithm": self.best.algorithm, "mode": self.mode,
            "objective": float(self.best.objective), "rss": float(self.rss), "evar": self.evar,
            "sparseness_basis": metrics.sparseness(basis), "sparseness_coef": metrics.sparseness(coef),
            "silhouette_coef": metrics.coefficient_silhouette(coef, cons.index),
            "silhouette_basis": metrics.basis_silhouette(basis, feature_index),
            "silhouette_consensus": metrics.consensus_silhouette(cons.matrix, self.k),
            "cophenetic": metrics.cophenetic_correlation(cons.matrix),
            "dispersion": metrics.dispersion(cons.matrix),
            "n_iter": int(self.best.n_iter), "elapsed": float(self.elapsed),
            "consensus_samples": int(cons.index.size), "consensus_sampled": bool(cons.sampled),
        }
        if codes is not None:
            out["purity"] = metrics.purity(best_clusters, codes)
            out["entropy"] = metrics.entropy(best_clusters, codes)
        return out


def multistart(V, k, nrun=30, *, algorithm="bpp", init="random", seed=0, max_iter=200, tol=1e-4, time_limit=None,
               eta=-1.0, beta=0.01, dtype="float64", samples="columns", mode="auto", stop=None, spark=None,
               grid=None, consensus_limit=CONSENSUS_LIMIT, consensus_sample=False) -> MultiFit:
    """Factorise V (n×m) ``nrun`` times from derived seeds; keep the best fit and every assignment.

    Parameters
    ----------
    V : ndarray or scipy sparse matrix of shape (n, m), or a BlockMatrix
    k : int
        Rank, ``2 <= k <= min(n, m)``.
    nrun : int
        Number of runs (>= 1).
    algorithm, init, max_iter, tol, time_limit, eta, beta, dtype :
        As :func:`sparknmf.decomposition.estimator`, for every run.
    seed : int
        The one seed the run seeds derive from (:func:`run_seeds`).
    samples : {"columns", "rows"}
        Which side of V holds the samples (columns, as in R, by default).
    mode : {"auto", "local", "tasks", "distributed"}
        Where the runs execute (module docstring).
    stop : ConnectivityStop, optional
        Brunet's stopping rule, in addition to ``tol`` / ``max_iter``.
    spark : SparkSession, optional
        Session for the Spark modes (default: the active one, or an embedded one).
    grid : (p, q), optional
        Block grid for ``mode="distributed"``.
    consensus_limit : int
        Most samples for the consensus matrix; consensus_sample : bool
        allows a seeded sample beyond it (module docstring).

    Returns
    -------
    MultiFit

    Examples
    --------
    >>> import numpy as np
    >>> from sparknmf.datasets import block_diagonal
    >>> from sparknmf.analysis.multistart import multistart
    >>> V, labels = block_diagonal((10, 10, 10), features=30, seed=1)
    >>> fit = multistart(V, 3, nrun=5, mode="local", seed=1)
    >>> s = fit.summary(labels)
    >>> fit.assignments.shape, s["purity"], s["dispersion"]
    ((5, 30), 1.0, 1.0)
    """
    nrun = _check_nrun(nrun)
    options = _run_options(algorithm, init, max_iter, tol, time_limit, eta, beta, dtype)
    if samples not in ("columns", "rows"):
        raise ValueError(f"samples must be 'columns' or 'rows', got {samples!r}")
    if stop is not None and not isinstance(stop, ConnectivityStop):
        raise ValueError(f"stop must be a ConnectivityStop or None, got {stop!r}")
    if isinstance(consensus_limit, bool) or not isinstance(consensus_limit, (int, np.integer)) or consensus_limit < 2:
        raise ValueError(f"consensus_limit must be an integer >= 2, got {consensus_limit!r}")
    if not isinstance(V, BlockMatrix):
        V = as_matrix(V, dtype=options["dtype"])
    k = check_rank_range(k, V.shape)
    _sample_index(V.shape[1] if samples == "columns" else V.shape[0], consensus_limit, seed, consensus_sample)
    mode = _choose_mode(V, mode, spark)
    seeds = run_seeds(seed, nrun)

    start = time.perf_counter()
    created = None
    if mode == "tasks":
        target = _collect_blocks(V) if isinstance(V, BlockMatrix) else V
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
    elapsed = time.perf_counter() - start
    capped = sum(fit.stop_reason == "max_iter" for fit, _ in runs)
    if capped and tol > 0:
        warnings.warn(f"{capped} of {nrun} runs stopped at max_iter={max_iter} before reaching tol={tol}",
                      ConvergenceWarning, stacklevel=2)
    return MultiFit(
        best=best, assignments=np.vstack([a for _, a in runs]), objectives=objectives,
        n_iters=np.array([fit.n_iter for fit, _ in runs]), seeds=seeds,
        stop_reasons=[fit.stop_reason for fit, _ in runs], k=k, samples=samples, mode=mode, seed=int(seed),
        rss=residual, sumsq=sumsq, consensus_limit=int(consensus_limit),
        consensus_sample=bool(consensus_sample), elapsed=elapsed,
    )


# ---------------------------------------------------------------- the Estimator


@with_accessors
class _MultiStartParams(_NMFParams):
    """Params of :class:`MultiStartNMF` beyond those of :class:`~sparknmf.NMF`."""

    nrun = Param(Params._dummy(), "nrun", "number of runs from derived seeds (>= 1)",
                 typeConverter=TypeConverters.toInt)
    runMode = Param(Params._dummy(), "runMode", f"where the runs execute: one of {list(MODES)}",
                    typeConverter=TypeConverters.toString)
    samples = Param(Params._dummy(), "samples", "which side of V holds the samples: 'columns' or 'rows'",
                    typeConverter=TypeConverters.toString)
    stopChecks = Param(Params._dummy(), "stopChecks",
                       "Brunet's rule: stop a run when its assignment has not changed for this many checks (0 = off)",
                       typeConverter=TypeConverters.toInt)
    checkInterval = Param(Params._dummy(), "checkInterval", "Brunet's rule: iterations between two checks",
                          typeConverter=TypeConverters.toInt)
    consensusLimit = Param(Params._dummy(), "consensusLimit", "most samples in the consensus matrix",
                           typeConverter=TypeConverters.toInt)
    consensusSample = Param(Params._dummy(), "consensusSample",
                            "over consensusLimit, use a seeded sample of samples instead of failing",
                            typeConverter=TypeConverters.toBoolean)

    _constraints = {
        **_NMFParams._constraints,
        "k": Interval(2, integer=True),
        "nrun": Interval(1, integer=True),
        "runMode": OneOf(MODES),
        "samples": OneOf(("columns", "rows")),
        "stopChecks": Interval(0, integer=True),
        "checkInterval": Interval(1, integer=True),
        "consensusLimit": Interval(2, integer=True),
        "consensusSample": OneOf((True, False)),
    }

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(nrun=30, runMode="auto", samples="columns", stopChecks=0, checkInterval=10,
                         consensusLimit=CONSENSUS_LIMIT, consensusSample=False)


class MultiStartNMF(NMF, _MultiStartParams):
    """NMF with ``nrun`` runs from derived seeds, kept for clustering (R's ``nmf(V, k, nrun)``).

    Every Param of :class:`~sparknmf.NMF` plus ``nrun``, ``runMode``
    (auto / local / tasks / distributed, see :func:`multistart`), ``samples``,
    ``stopChecks`` / ``checkInterval`` (Brunet's connectivity rule),
    ``consensusLimit`` and ``consensusSample``.  Fitting returns a
    :class:`MultiStartNMFModel`: the best run as an ``NMFModel`` plus every
    run's assignment, the consensus and :meth:`MultiStartNMFModel.summary`.

    Examples
    --------
    >>> from sparknmf.analysis.multistart import MultiStartNMF
    >>> from sparknmf.datasets import block_diagonal
    >>> V, labels = block_diagonal((8, 8), features=16, seed=2)
    >>> model = MultiStartNMF(k=2, nrun=4, runMode="local").fit(V)
    >>> model.assignments.shape, model.summary(labels)["purity"]
    ((4, 16), 1.0)
    """

    @keyword_only
    def __init__(self, *, nrun=30, runMode="auto", samples="columns", stopChecks=0, checkInterval=10,
                 consensusLimit=CONSENSUS_LIMIT, consensusSample=False, **nmfParams):
        kwargs = self._input_kwargs
        super().__init__()
        self._set(**kwargs)

    @keyword_only
    def setParams(self, *, nrun=30, runMode="auto", samples="columns", stopChecks=0, checkInterval=10,
                  consensusLimit=CONSENSUS_LIMIT, consensusSample=False, **nmfParams):
        """Set Params by keyword (any Param of NMF too)."""
        return self._set(**self._input_kwargs)

    def _fit(self, dataset):
        check_params(self)
        if self.getCheckpointDir():
            raise ValueError("MultiStartNMF: checkpointDir is not supported for multi-start runs; leave it ''")
        backend = self._backend(dataset)
        stop = ConnectivityStop(self.getStopChecks(), self.getCheckInterval()) if self.getStopChecks() else None
        try:
            runs = multistart(
                backend.V if isinstance(backend, LocalMatrix) else backend, self.getK(), self.getNrun(),
                algorithm=self.getAlgorithm(), init=self.getInit(), seed=self.getSeed(), max_iter=self.getMaxIter(),
                tol=self.getTol(), time_limit=self.getTimeLimit() or None, eta=self.getEta(), beta=self.getBeta(),
                dtype=self.getDtype(), samples=self.getSamples(), mode=self.getRunMode(), stop=stop,
                grid=self._grid(), consensus_limit=self.getConsensusLimit(),
                consensus_sample=self.getConsensusSample(),
            )
        finally:
            if isinstance(backend, BlockMatrix):
                backend.unpersist()
        model = MultiStartNMFModel(runs, getattr(backend, "row_ids", None), getattr(backend, "col_ids", None))
        self._copyValues(model)
        return model


_RUN_FIELDS = ("objectives", "n_iters", "seeds")
_SCALAR_FIELDS = ("k", "samples", "mode", "seed", "rss", "sumsq", "consensus_limit", "consensus_sample", "elapsed")


class MultiStartNMFModel(NMFModel):
    """The best of ``nrun`` runs (an :class:`~sparknmf.NMFModel`) plus every run's assignment.

    Attributes
    ----------
    runs : MultiFit
    assignments : ndarray of int32 of shape (nrun, s)
        Cluster of each sample in each run (s = m columns of V, or n rows).

    ``MultiStartNMFModel()`` with no arguments is an empty model, as needed
    by ``load``; saving writes the assignments as Parquet (``assignments/``)
    and the per-run figures in the metadata.
    """

    def __init__(self, runs: MultiFit | None = None, rowIds=None, colIds=None):
        super().__init__(runs.best if runs is not None else None, rowIds, colIds)
        self.runs = runs

    def _runs(self) -> MultiFit:
        self._require()
        return self.runs

    @property
    def assignments(self) -> np.ndarray:
        return self._runs().assignments

    @property
    def nrun(self) -> int:
        return self._runs().nrun

    @property
    def consensus(self) -> np.ndarray:
        """The consensus matrix (s×s, or the sampled samples', see ``runs.consensus().index``)."""
        return self._runs().consensus().matrix

    def summary(self, labels=None) -> dict:
        """Every clustering measure (:meth:`MultiFit.summary`)."""
        return self._runs().summary(labels)

    def predict(self):
        """``(clusters, probabilities)`` of the samples from the best run (:func:`sparknmf.analysis.metrics.predict`)."""
        return self._runs().predict()

    def _extra_metadata(self) -> dict:
        runs = self._runs()
        extra = {name: getattr(runs, name) for name in _SCALAR_FIELDS}
        extra.update({name: getattr(runs, name).tolist() for name in _RUN_FIELDS})
        return {"runs": {**extra, "stop_reasons": list(runs.stop_reasons)}}

    def _save_extra(self, spark, path, overwrite):
        A = self._runs().assignments
        persistence.write_rows(spark, f"{path}/assignments", A.T.astype(np.float64), overwrite=overwrite)

    def _load_extra(self, spark, path, metadata):
        try:
            fields = dict(metadata["runs"])
            nrun = len(fields["seeds"])
            size = self._result.H.shape[1] if fields["samples"] == "columns" else self._result.W.shape[0]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}/metadata lacks the runs of a MultiStartNMFModel") from None
        At, _ = persistence.read_rows(spark, f"{path}/assignments", size, nrun)
        arrays = {name: np.asarray(fields.pop(name)) for name in _RUN_FIELDS}
        self.runs = MultiFit(best=self._result, assignments=At.T.astype(np.int32), **arrays, **fields)
