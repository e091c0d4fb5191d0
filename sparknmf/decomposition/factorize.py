"""The one alternating loop, shared by every update rule and backend.

A *backend* holds V and runs half-steps; two exist:
:class:`~sparknmf.engine.local.LocalMatrix` (one block, numpy/scipy on the driver)
and :class:`~sparknmf.engine.matrix.BlockMatrix` (a p×q grid of blocks on Spark).
Both expose::

    shape                       (n, m)
    stats                       dict with nnz, sum, sumsq, max
    half_step(side, rule, params, X, Y, gram_y, update=True, carry=None)
                                -> (X_new, gram(X_new), data term at (X, Y), carry)
    multiply(side, Y)           V @ Y (side "W") or Vᵀ @ Y (side "H")
    describe(text)              context manager naming the Spark jobs

Each iteration first updates H given W, then W given H.  A backend may
return a *carry* -- the other factor's summed cross product and data term at
the new state, computed in the same pass over V -- which the loop hands to
the next half-step so that it needs no pass of its own (the Spark backend
does this for the row-partitioned layout: one Spark job per iteration).  The H half-step
also yields the objective of the incoming state from the pieces it computes
anyway (Grams, cross products, data term), so the objective history costs
no extra pass over V.  The loop stops at ``max_iter`` iterations, when the
relative decrease of the objective falls below ``tol``, or after
``time_limit`` seconds, and always returns a state whose objective is known.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from sparknmf.engine.checkpoint import LoopCheckpoint
from sparknmf.engine.factors import FactorFrame, factor_from_array, random_factor
from sparknmf.engine.frame_svd import nndsvd_frames
from sparknmf.errors import ConvergenceWarning, InvalidInputError, check_factors, check_objective
from sparknmf.kernels import seeding
from sparknmf.kernels.updates import (
    DEFAULT_ALGORITHM,
    UPDATE_RULES,
    WEIGHTED_RULES,
    RuleParams,
    hals_sweeps,
    resolve_algorithm,
)

__all__ = ["DTYPES", "FitResult", "check_placement_options", "check_weighted_options", "factorize", "initial_factors"]

DTYPES = {"float64": np.float64, "float32": np.float32}  # the dtypes a fit may run in, by name

logger = logging.getLogger("sparknmf")


@dataclass
class FitResult:
    """Outcome of one factorisation ``V (n×m) ≈ W (n×k) · H (k×m)``.

    Attributes
    ----------
    W : ndarray of shape (n, k), or None with the executors placement
    H : ndarray of shape (k, m), or None with the executors placement
    objective : float
        Loss of the returned factors (see :mod:`sparknmf.kernels.updates`).
    loss : float or None
        Its data term alone, without the penalty of ``snmf/*`` or weighted
        ``reg``: ½‖V − WH‖²_F (weighted: ½Σ w (v − wh)²) or the generalised
        KL divergence D(V‖WH) (``brunet``); None for a model saved without it.
    history : list of float
        Objective of the initial factors, then after each iteration.
    n_iter : int
        Iterations performed.
    converged : bool
        True when the relative decrease fell below ``tol``.
    stop_reason : {"tol", "max_iter", "time_limit", "stop_check"}
    elapsed : float
        Seconds spent in the loop.
    algorithm, seed, init : the settings that produced this fit.
    placement : {"driver", "executors"}
        Where the factors live (:mod:`sparknmf.engine.placement`).
    factors : (FactorFrame, FactorFrame) or None
        Executors placement: W (n×k) and Hᵀ (m×k) as row blocks in the
        executors (:class:`~sparknmf.engine.factors.FactorFrame`); W and H are None.
    """

    W: np.ndarray
    H: np.ndarray
    objective: float
    history: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    stop_reason: str = "max_iter"
    elapsed: float = 0.0
    algorithm: str = "bpp"
    seed: int = 0
    init: str = "random"
    placement: str = "driver"
    factors: tuple | None = None
    loss: float | None = None


def _resolve_params(backend, k: int, eta: float, beta: float, lam: float) -> RuleParams:
    eta = backend.stats["max"] if eta < 0 else float(eta)
    return RuleParams(eta=eta, beta=float(beta),
                      sweeps=hals_sweeps(backend.shape, backend.stats["nnz"], k), lam=float(lam))


def _rule(algorithm: str, weighted: bool):
    """The update rule for ``algorithm`` (``"auto"`` resolved); weighted data has its own registry."""
    algorithm = resolve_algorithm(algorithm, weighted=weighted)
    rules = WEIGHTED_RULES if weighted else UPDATE_RULES
    if algorithm in rules:
        return rules[algorithm]
    if weighted and algorithm in UPDATE_RULES:
        raise ValueError(f"algorithm {algorithm!r} does not take weights; with weights use one of "
                         f"{sorted(WEIGHTED_RULES)} ('bpp': exact weighted ANLS, 'lee': weighted multiplicative)")
    raise ValueError(f"algorithm must be one of {sorted(rules)}, got {algorithm!r}")


def check_weighted_options(algorithm: str, weighted: bool, reg: float, dtype) -> None:
    """Raise ValueError for options that do not fit (un)weighted data; call before any work."""
    _rule(algorithm, weighted)
    if not weighted and reg:
        raise ValueError(f"reg/regParam={reg} applies to weighted NMF only (weights, uncertainties or "
                         "missing='missing'); use snmf/r or snmf/l for regularized ordinary NMF")
    if weighted and np.dtype(dtype) != np.float64:
        raise ValueError(f"weighted NMF computes in float64; got dtype {np.dtype(dtype).name}")


def _check_custom(A, shape, whom):
    A = np.asarray(A, dtype=np.float64)
    if A.shape != shape:
        raise ValueError(f"{whom} must have shape {shape}, got {A.shape}")
    if not np.isfinite(A).all() or (A < 0).any():
        raise ValueError(f"{whom} must be finite and non-negative")
    return A


def initial_factors(backend, k: int, init: str, seed: int, W0=None, H0=None):
    """Starting W (n×k) and Hᵀ (m×k) for ``init`` (see :mod:`sparknmf.kernels.seeding`)."""
    n, m = backend.shape
    mean = backend.stats.get("mean", backend.stats["sum"] / (n * m))
    if init == "custom":
        if W0 is None or H0 is None:
            raise ValueError("init='custom' needs both W0 (n×k) and H0 (k×m)")
        return _check_custom(W0, (n, k), "W0"), _check_custom(H0, (k, m), "H0").T.copy()
    if W0 is not None or H0 is not None:
        warnings.warn(f"W0/H0 are ignored unless init='custom' (init={init!r})", UserWarning, stacklevel=3)
    if init == "random":
        return seeding.random_factors(n, m, k, seed, mean)
    if init in ("nndsvd", "nndsvda", "nndsvdar"):
        with backend.describe("sparknmf: randomized SVD for NNDSVD"):
            U, S, Vt = seeding.randomized_svd(backend.multiply, (n, m), k, seed)
        return seeding.nndsvd_factors(U, S, Vt, init, mean, seed)
    raise ValueError(f"init must be one of {seeding.INITS}, got {init!r}")


def check_placement_options(placement: str, backend, *, stop_check=None, checkpoint_dir=None) -> None:
    """Raise ValueError for what the executors placement does not do; call before any work.

    It needs the Spark backend (and runs Spark jobs, whatever its ``execution``:
    :func:`_jobs_for`); ``stop_check`` and loop checkpoints need the factors on
    the driver.
    ``backend`` None checks only what does not depend on the data.
    """
    if placement == "driver":
        return
    if placement != "executors":
        raise ValueError(f"factor placement must be 'driver' or 'executors', got {placement!r}")
    if backend is not None and getattr(backend, "blocks", None) is None:
        raise ValueError("factorPlacement='executors' needs the Spark backend (DataFrame input or backend='spark'); "
                         "numpy input on the local backend keeps its factors on the driver")
    if stop_check is not None:
        raise ValueError("stop_check reads W and H on the driver; it needs factorPlacement='driver'")
    if checkpoint_dir:
        raise ValueError("loop checkpoints (checkpointDir) save W and H from the driver; with "
                         "factorPlacement='executors' leave checkpointDir empty")


def initial_frames(backend, k: int, init: str, seed: int, rule, params, dtype, W0=None, H0=None):
    """Starting W (n×k) and Hᵀ (m×k) as :class:`FactorFrame` s, prepared as the loop prepares the driver's.

    ``random`` draws each block in the executors: the same numbers as :func:`initial_factors`.
    ``nndsvd*`` runs the randomized SVD and NNDSVD on blocks in the executors
    (:mod:`sparknmf.engine.frame_svd`): the driver's start up to rounding.
    ``custom`` splits the user's W0/H0 (on the driver anyway) into blocks.
    """
    n, m = backend.shape
    steps = backend.row_step, backend.col_step
    kl, floor = rule.statistic.name == "kl", params.eps if rule.positive else None
    if init == "custom":
        W, Ht = initial_factors(backend, k, init, seed, W0, H0)
        if floor is not None:
            W, Ht = np.maximum(W, floor), np.maximum(Ht, floor)
        W, Ht = W.astype(dtype), Ht.astype(dtype)
        return tuple(factor_from_array(backend.spark, X, step, rule.statistic.gram(X))
                     for X, step in ((W, steps[0]), (Ht, steps[1])))
    if W0 is not None or H0 is not None:
        warnings.warn(f"W0/H0 are ignored unless init='custom' (init={init!r})", UserWarning, stacklevel=3)
    mean = backend.stats.get("mean", backend.stats["sum"] / (n * m))
    if init in ("nndsvd", "nndsvda", "nndsvdar"):
        return nndsvd_frames(backend, k, init, seed, mean, floor=floor, dtype=dtype, kl=kl)
    scale = np.sqrt(max(mean, 0.0) / k) or 1.0  # seeding.random_factors' scale (tests/test_placement.py checks)
    return tuple(random_factor(backend.spark, rows, k, step, seed=seed, stream=stream, scale=scale, floor=floor,
                               dtype=dtype, kl=kl)
                 for rows, step, stream in ((n, steps[0], seeding._W_STREAM), (m, steps[1], seeding._H_STREAM)))


@contextlib.contextmanager
def _jobs_for(backend, placement):
    """With the executors placement, the backend runs Spark jobs (not resident tasks) for this fit.

    Resident tasks would receive every factor row from the driver's socket
    (the estimators warn when ``executionMode='resident'`` is set:
    :func:`~sparknmf.engine.placement.warn_resident_runs_jobs`).
    """
    if placement != "executors":
        yield
        return
    mode, backend.execution = backend.execution, "jobs"
    try:
        yield
    finally:
        backend.execution = mode


def _release(*factors):
    """Drop the executors' blocks of factor frames (driver arrays need nothing)."""
    for X in factors:
        if isinstance(X, FactorFrame):
            X.release()


def _relative_decrease(previous: float, current: float) -> float:
    return abs(previous - current) / max(abs(previous), np.finfo(float).tiny)


_REMEDY = "Try a smaller k, a stronger regularization (eta/beta for snmf), algorithm='bpp', or rescaling V."


def factorize(
    backend,
    k: int,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    init: str = seeding.DEFAULT_INIT,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-4,
    time_limit: float | None = None,
    eta: float = -1.0,
    beta: float = 0.01,
    reg: float = 0.0,
    W0=None,
    H0=None,
    dtype=np.float64,
    callback=None,
    stop_check=None,
    checkpoint_dir=None,
    checkpoint_interval: int = 10,
    resume: bool = False,
    placement: str = "driver",
) -> FitResult:
    """Factorise the backend's V (n×m) into W (n×k) · H (k×m) with one update rule.

    Parameters
    ----------
    backend : LocalMatrix or BlockMatrix
    k : int
        Rank.
    algorithm : str
        A key of :data:`sparknmf.kernels.updates.UPDATE_RULES`, or ``"auto"``
        (:func:`~sparknmf.kernels.updates.resolve_algorithm`).
    init, seed, W0, H0 :
        Starting point (:func:`initial_factors`; ``init="auto"``:
        :func:`~sparknmf.kernels.seeding.resolve_init`).
    max_iter, tol, time_limit :
        Stopping rule (module docstring).
    eta, beta : float
        SNMF parameters; ``eta < 0`` means ``max(V)`` as in R's NMF.
    reg : float
        Weighted data only: L2 weight λ on both factors.
    dtype : float32 or float64
        Precision of the factors and of the kernels.
    callback : callable, optional
        ``callback(iteration, elapsed, objective)`` after each objective.
    stop_check : callable, optional
        ``stop_check(iteration, W, H) -> bool`` with the current W (n×k) and
        H (k×m) after each objective; True stops the loop (stop reason
        ``"stop_check"``, e.g. Brunet's connectivity rule).
    placement : {"driver", "executors"}
        Where W and H live between half-steps (:mod:`sparknmf.engine.placement`):
        numpy arrays on the driver, or :class:`~sparknmf.engine.factors.FactorFrame` s
        in the executors (Spark backend, Spark jobs; see :func:`check_placement_options`).

    Returns
    -------
    FitResult
    """
    seed = seeding.check_seed(seed)
    weighted = getattr(backend, "weighted", False)
    algorithm = resolve_algorithm(algorithm, weighted=weighted)  # "auto" (the default) -> a rule
    init = seeding.resolve_init(init, custom=W0 is not None or H0 is not None, weighted=weighted)
    check_weighted_options(algorithm, weighted, reg, dtype)
    rule = _rule(algorithm, weighted)
    check_placement_options(placement, backend, stop_check=stop_check, checkpoint_dir=checkpoint_dir)
    params = _resolve_params(backend, k, eta, beta, reg)
    if algorithm.startswith("snmf") and abs(params.eta) >= math.sqrt(sys.float_info.max / (4 * k)):
        raise InvalidInputError(f"eta = {params.eta!r} (max(V) when eta < 0) overflows eta**2 in the {algorithm} "
                                "penalty; rescale V (e.g. V / max(V)) or pass a smaller eta")
    stat = rule.statistic
    v_stat = backend.stats["sumsq"] if stat.name == "frobenius" else backend.stats["sum"]
    checkpoint = None
    if checkpoint_dir:
        fingerprint = {"shape": list(backend.shape), "k": k, "algorithm": algorithm, "init": init, "seed": seed,
                       "eta": params.eta, "beta": params.beta, "reg": params.lam, "dtype": np.dtype(dtype).name,
                       **{key: backend.stats[key] for key in ("nnz", "sum", "sumsq")}}
        checkpoint = LoopCheckpoint(checkpoint_dir, checkpoint_interval, fingerprint)
    state = checkpoint.load() if checkpoint is not None and resume else None
    with _jobs_for(backend, placement), backend.serving(f"sparknmf: NMF k={k} {algorithm}, resident block tasks"):
        if state is not None:  # the loop's whole state, so that it continues bit for bit
            iteration, history, arrays = state
            W, Ht, gram_w, gram_h = (arrays[name] for name in ("W", "Ht", "gram_w", "gram_h"))
            carry = (arrays["carry"], float(arrays["carry_data"])) if "carry" in arrays else None
            logger.info("resuming from %s at iteration %d", checkpoint.path, iteration)
        elif placement == "executors":
            iteration, history, carry = 0, [], None
            with backend.describe("sparknmf: initial factors in the executors"):
                W, Ht = initial_frames(backend, k, init, seed, rule, params, dtype, W0, H0)
            gram_w, gram_h = W.gram, Ht.gram
        else:
            iteration, history, carry = 0, [], None
            W, Ht = initial_factors(backend, k, init, seed, W0, H0)
            if rule.positive:
                W, Ht = np.maximum(W, params.eps), np.maximum(Ht, params.eps)
            W, Ht = W.astype(dtype), Ht.astype(dtype)
            gram_w, gram_h = stat.gram(W), stat.gram(Ht)

        start = time.perf_counter()
        W, Ht, iteration, stop_reason, loss = _loop(
            backend, rule, params, stat, v_stat, W, Ht, gram_w, gram_h, carry, iteration, history, start,
            max_iter=max_iter, tol=tol, time_limit=time_limit, callback=callback, stop_check=stop_check,
            checkpoint=checkpoint)

    if placement == "executors":
        factors, W, Ht = (W, Ht), None, None
    else:
        factors = None
        check_factors("NMF", iteration, _REMEDY, {"W": W, "H": Ht})
    if stop_reason == "max_iter" and tol > 0:
        warnings.warn(
            f"NMF stopped at maxIter={max_iter} before the relative decrease reached tol={tol}; "
            "increase maxIter or tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return FitResult(
        W=None if W is None else np.asarray(W),
        H=None if Ht is None else np.ascontiguousarray(np.asarray(Ht).T),
        objective=history[-1],
        loss=loss,
        history=history,
        n_iter=iteration,
        converged=stop_reason == "tol",
        stop_reason=stop_reason,
        elapsed=time.perf_counter() - start,
        algorithm=algorithm,
        seed=seed,
        init=init,
        placement=placement,
        factors=factors,
    )


def _loop(backend, rule, params, stat, v_stat, W, Ht, gram_w, gram_h, carry, iteration, history, start, *,
          max_iter, tol, time_limit, callback, stop_check, checkpoint):
    """The alternating iterations from a prepared state: ``(W, Ht, iteration, stop_reason, loss)``.

    W and Ht are arrays or factor frames; a replaced frame is released, and so
    are the current ones when an error ends the loop.
    """
    Ht_new = None
    try:
        while True:
            update = iteration < max_iter
            with backend.describe(f"sparknmf: iter {iteration + 1}, update H"):
                Ht_new, gram_h_new, data, carry_w = backend.half_step(
                    "H", rule, params, Ht, W, gram_w, update=update, carry=carry
                )
            loss = stat.objective(data, v_stat, gram_h, gram_w)
            objective = loss + rule.penalty(gram_w, gram_h, params)
            check_objective("NMF", iteration, objective, history, _REMEDY)
            history.append(objective)
            elapsed = time.perf_counter() - start
            logger.info("iteration %d objective %.10g elapsed %.3fs", iteration, objective, elapsed)
            if callback is not None:
                callback(iteration, elapsed, objective)
            if iteration >= 1 and _relative_decrease(history[-2], objective) < tol:
                return W, Ht, iteration, "tol", loss
            if stop_check is not None and stop_check(iteration, W, Ht.T):
                return W, Ht, iteration, "stop_check", loss
            if not update:
                return W, Ht, iteration, "max_iter", loss
            if time_limit is not None and elapsed >= time_limit:
                return W, Ht, iteration, "time_limit", loss
            _release(Ht)
            Ht, gram_h, Ht_new = Ht_new, gram_h_new, None
            check_factors("NMF", iteration + 1, _REMEDY, {"H (its Gram)": gram_h})
            with backend.describe(f"sparknmf: iter {iteration + 1}, update W"):
                W_new, gram_w, _, carry = backend.half_step("W", rule, params, W, Ht, gram_h, carry=carry_w)
            _release(W)
            W = W_new
            check_factors("NMF", iteration + 1, _REMEDY, {"W (its Gram)": gram_w})
            iteration += 1
            if checkpoint is not None and checkpoint.due(iteration):
                carried = {} if carry is None else {"carry": carry[0], "carry_data": np.float64(carry[1])}
                checkpoint.save(iteration, history, W=W, Ht=Ht, gram_w=gram_w, gram_h=gram_h, **carried)
    except BaseException:
        _release(W, Ht)
        raise
    finally:
        if Ht_new is not Ht:
            _release(Ht_new)
