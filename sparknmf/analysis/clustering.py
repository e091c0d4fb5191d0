"""R's ``nmf(V, k, nrun=30)``: one factorisation, or many from derived seeds kept for clustering.

:func:`nmf` factorises numpy / scipy input V (n×m) ≈ W (n×k) · H (k×m)
locally with the loop of :mod:`sparknmf.decomposition`; with ``nrun`` it
calls :func:`multistart`, which runs ``nrun`` factorisations
(:mod:`sparknmf.analysis.runs`: seeds, where the runs execute, Brunet's
stopping rule), keeps the fit with the lowest objective and the cluster
assignment of every run, and returns a :class:`MultiFit`: the best fit, the
assignments, the consensus matrix (:mod:`sparknmf.analysis.consensus`) and
every clustering measure (:meth:`MultiFit.summary`).

References
----------
J.-P. Brunet et al. (2004), PNAS 101(12), 4164-4169. https://doi.org/10.1073/pnas.0308531101
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from sparknmf.analysis import metrics
from sparknmf.analysis.consensus import CONSENSUS_LIMIT, Consensus, consensus_matrix, sample_index
from sparknmf.analysis.runs import (
    ConnectivityStop,
    check_nrun,
    check_rank_range,
    choose_mode,
    run_all,
    run_options,
    run_seeds,
)
from sparknmf.decomposition.factorize import DTYPES, FitResult, check_weighted_options, factorize
from sparknmf.engine.local import LocalMatrix
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.validation import as_matrix, as_weighted, check_rank
from sparknmf.errors import ConvergenceWarning
from sparknmf.kernels.seeding import DEFAULT_INIT, check_seed, resolve_init
from sparknmf.kernels.updates import DEFAULT_ALGORITHM, resolve_algorithm
from sparknmf.progress import check_verbose, progress

__all__ = ["MultiFit", "multistart", "nmf"]


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
        feature_index, _ = sample_index(basis.shape[0], self.consensus_limit, self.seed + 1, True)
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


def multistart(V, k, nrun=30, *, algorithm=DEFAULT_ALGORITHM, init=DEFAULT_INIT, seed=0, max_iter=200, tol=1e-4,
               time_limit=None, eta=-1.0, beta=0.01, dtype="float64", samples="columns", mode="auto", stop=None,
               spark=None, grid=None, consensus_limit=CONSENSUS_LIMIT, consensus_sample=False) -> MultiFit:
    """Factorise V (n×m) ``nrun`` times from derived seeds; keep the best fit and every assignment.

    Parameters
    ----------
    V : ndarray or scipy sparse matrix of shape (n, m), or a BlockMatrix
    k : int
        Rank, ``2 <= k <= min(n, m)``.
    nrun : int
        Number of runs (>= 1).
    algorithm, init, max_iter, tol, time_limit, eta, beta, dtype :
        As :func:`sparknmf.nmf`, for every run; ``"auto"`` (the defaults) is
        ``bpp`` from ``random`` starts (:func:`~sparknmf.kernels.updates.resolve_algorithm`,
        :func:`~sparknmf.kernels.seeding.resolve_init`).
    seed : int
        The one seed the run seeds derive from (:func:`~sparknmf.analysis.runs.run_seeds`).
    samples : {"columns", "rows"}
        Which side of V holds the samples (columns, as in R, by default).
    mode : {"auto", "local", "tasks", "distributed"}
        Where the runs execute (:mod:`sparknmf.analysis.runs`).
    stop : ConnectivityStop, optional
        Brunet's stopping rule, in addition to ``tol`` / ``max_iter``.
    spark : SparkSession, optional
        Session for the Spark modes (default: the active one, or an embedded one).
    grid : (p, q), optional
        Block grid for ``mode="distributed"``.
    consensus_limit : int
        Most samples for the consensus matrix; consensus_sample : bool
        allows a seeded sample beyond it (:mod:`sparknmf.analysis.consensus`).

    Returns
    -------
    MultiFit

    Examples
    --------
    >>> import numpy as np
    >>> from sparknmf.datasets import block_diagonal
    >>> from sparknmf.analysis.clustering import multistart
    >>> V, labels = block_diagonal((10, 10, 10), features=30, seed=1)
    >>> fit = multistart(V, 3, nrun=5, mode="local", seed=1)
    >>> s = fit.summary(labels)
    >>> fit.assignments.shape, s["purity"], s["dispersion"]
    ((5, 30), 1.0, 1.0)
    """
    nrun = check_nrun(nrun)
    seed = check_seed(seed)
    algorithm = resolve_algorithm(algorithm, multistart=True)
    init = resolve_init(init, multistart=True)
    options = run_options(algorithm, init, max_iter, tol, time_limit, eta, beta, dtype)
    if samples not in ("columns", "rows"):
        raise ValueError(f"samples must be 'columns' or 'rows', got {samples!r}")
    if stop is not None and not isinstance(stop, ConnectivityStop):
        raise ValueError(f"stop must be a ConnectivityStop or None, got {stop!r}")
    if isinstance(consensus_limit, bool) or not isinstance(consensus_limit, (int, np.integer)) or consensus_limit < 2:
        raise ValueError(f"consensus_limit must be an integer >= 2, got {consensus_limit!r}")
    if not isinstance(V, BlockMatrix):
        V = as_matrix(V, dtype=options["dtype"])
    k = check_rank_range(k, V.shape)
    sample_index(V.shape[1] if samples == "columns" else V.shape[0], consensus_limit, seed, consensus_sample)
    mode = choose_mode(V, mode, spark)

    start = time.perf_counter()
    runs, best, residual, sumsq = run_all(V, k, run_seeds(seed, nrun), options, samples, stop, mode, spark, grid)
    objectives = np.array([fit.objective for fit, _ in runs])
    elapsed = time.perf_counter() - start
    capped = sum(fit.stop_reason == "max_iter" for fit, _ in runs)
    if capped and tol > 0:
        warnings.warn(f"{capped} of {nrun} runs stopped at max_iter={max_iter} before reaching tol={tol}",
                      ConvergenceWarning, stacklevel=2)
    return MultiFit(
        best=best, assignments=np.vstack([a for _, a in runs]), objectives=objectives,
        n_iters=np.array([fit.n_iter for fit, _ in runs]), seeds=run_seeds(seed, nrun),
        stop_reasons=[fit.stop_reason for fit, _ in runs], k=k, samples=samples, mode=mode, seed=int(seed),
        rss=residual, sumsq=sumsq, consensus_limit=int(consensus_limit),
        consensus_sample=bool(consensus_sample), elapsed=elapsed,
    )


def nmf(V, k, *, algorithm=DEFAULT_ALGORITHM, init=DEFAULT_INIT, seed=0, max_iter=200, tol=1e-4, time_limit=None,
        eta=-1.0, beta=0.01, W0=None, H0=None, dtype="float64", duplicates="error", callback=None, checkpoint_dir=None,
        checkpoint_interval=10, resume=False, nrun=None, weights=None, uncertainty=None, missing="zero", reg=0.0,
        verbose=0):
    """Factorise a numpy array or scipy sparse matrix V (n×m) ≈ W (n×k) · H (k×m) locally.

    The same kernels and loop as :class:`NMF`, on one block, without Spark.
    The defaults ``algorithm="auto"`` and ``init="auto"`` (shared with
    :class:`NMF`'s Params) are ``hals`` from an ``nndsvda`` start for ordinary
    V, the fastest to scikit-learn's objective on sparse and dense data
    (README, "Defaults"); ``bpp`` from ``random`` starts for weighted V and
    for ``nrun`` runs; ``init="custom"`` when W0 and H0 are given.  R's names
    stay available: ``algorithm="brunet"`` (KL), ``"lee"``, ``"snmf/r"``, ...
    With ``nrun`` (R's ``nmf(V, k, nrun=30)``): ``nrun`` runs from seeds
    derived from ``seed`` by :func:`multistart` (as Spark
    tasks when a session is active), returning a
    :class:`MultiFit` (best fit, assignments, consensus,
    ``summary(labels)``).

    Weighted NMF (Paatero's PMF): ``weights`` (w ≥ 0) or ``uncertainty``
    (s > 0, w = 1/s²) of V's shape, and/or ``missing="missing"`` (entries
    absent from sparse V, or NaN in dense V, are unknown), minimise
    ½ Σ w_ij (v_ij − (WH)_ij)² + ½ reg (‖W‖² + ‖H‖²) with ``algorithm``
    ``"bpp"`` (exact weighted ANLS) or ``"lee"`` (weighted multiplicative);
    see :func:`sparknmf.engine.validation.as_weighted`.

    ``verbose`` (scikit-learn's name): 1 prints each iteration's objective
    and elapsed seconds while the fit runs (each run's result with
    ``nrun``), 0 (default) nothing; see :mod:`sparknmf.progress`.

    Returns
    -------
    FitResult
        ``W`` (n×k), ``H`` (k×m), ``objective``, ``history``, ``n_iter``, ...
        (a ``MultiFit`` when ``nrun`` is given).

    Examples
    --------
    >>> import numpy as np, sparknmf
    >>> V = np.random.default_rng(0).random((30, 3)) @ np.random.default_rng(1).random((3, 40))
    >>> fit = sparknmf.nmf(V, 3, init="nndsvda", tol=1e-10, max_iter=500)
    >>> fit.W.shape, fit.H.shape, bool(fit.objective < 1e-6 * 0.5 * (V ** 2).sum())
    ((30, 3), (3, 40), True)
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    check_verbose(verbose, "nmf")
    weighted = weights is not None or uncertainty is not None or missing == "missing"
    check_weighted_options(algorithm, weighted, reg, DTYPES[dtype])
    if nrun is not None:
        if weighted:
            raise ValueError("nmf(..., nrun=...) does not take weights or missing='missing'")
        if W0 is not None or H0 is not None or callback is not None or checkpoint_dir is not None or resume:
            raise ValueError("nmf(..., nrun=...) runs from random starts: W0, H0, callback, checkpoint_dir and "
                             "resume are not supported")
        with progress(verbose, "nmf"):
            return multistart(as_matrix(V, duplicates=duplicates), k, nrun, algorithm=algorithm, init=init,
                              seed=seed, max_iter=max_iter, tol=tol, time_limit=time_limit, eta=eta, beta=beta,
                              dtype=dtype)
    data = as_weighted(V, weights, uncertainty, missing=missing)
    V = data if data is not None else as_matrix(V, dtype=DTYPES[dtype], duplicates=duplicates)
    k = check_rank(k, V.shape)
    with progress(verbose, "nmf"):
        return factorize(LocalMatrix(V), k, algorithm=algorithm, init=init, seed=seed, max_iter=max_iter, tol=tol,
                         time_limit=time_limit, eta=eta, beta=beta, reg=reg, W0=W0, H0=H0, dtype=DTYPES[dtype],
                         callback=callback, checkpoint_dir=checkpoint_dir, checkpoint_interval=checkpoint_interval,
                         resume=resume)
