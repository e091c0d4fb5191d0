"""Batched non-negative least squares by block principal pivoting.

Two solvers share one pivoting rule (Kim & Park 2011, Algorithm 2 with the
backup rule that guarantees termination):

* :func:`nnls_bpp` -- many right-hand sides sharing one Gram matrix.
  Solves ``min_X ||A X - B||_F^2  s.t.  X >= 0`` given only
  ``gram = AᵀA`` (k×k) and ``cross = AᵀB`` (k×r).  Columns that share a
  passive set with many others are solved together with one Cholesky
  factorisation; the rest, batched by the size p of their passive set,
  as p×p sub-systems.  A warm start (the previous ANLS iterate) leaves
  most columns feasible after the first solve.
* :func:`nnls_batched` -- many small systems, each with its own Gram:
  ``min_x_i  x_iᵀ G_i x_i - 2 b_iᵀ x_i  s.t.  x_i >= 0`` for a stack of
  ``grams`` (b×k×k) and ``rhs`` (b×k).  Used by masked / weighted least
  squares, where every row of a factor sees its own weighted Gram.  The
  systems are solved batched by the size of their passive set.

References
----------
J. Kim and H. Park, "Fast nonnegative matrix factorization: an active-set-like
method and comparisons", SIAM J. Sci. Comput. 33(6), 3261-3281 (2011).
https://doi.org/10.1137/110821172

M. H. Van Benthem and M. R. Keenan, "Fast algorithm for the solution of
large-scale non-negativity-constrained least squares problems",
J. Chemometrics 18, 441-450 (2004). https://doi.org/10.1002/cem.889
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["nnls_bpp", "nnls_batched"]

_BACKUP_PATIENCE = 3  # Kim & Park's p̄: full exchanges allowed without progress
_GROUP_MIN = 64  # columns sharing a passive set solved with one shared factorisation (else batched)
_REL_TOL = 1e-12  # entries below this (relative to the column scale) count as zero


class _Pivoting:
    """State of the block principal pivoting exchange rule for r problems.

    ``best`` is the smallest number of infeasible variables seen so far per
    problem (Kim & Park's ninf) and ``patience`` the number of full exchanges
    still allowed without improving it (their p).  When patience runs out the
    backup rule exchanges only the infeasible variable of largest index,
    which guarantees termination.
    """

    def __init__(self, k: int, r: int):
        self.best = np.full(r, k + 1)
        self.patience = np.full(r, _BACKUP_PATIENCE)

    def exchange(self, passive: np.ndarray, infeasible: np.ndarray, cols: np.ndarray) -> None:
        """Flip variables of ``passive`` (k×r, in place) for the problems ``cols``.

        ``infeasible`` (k×len(cols)) marks the infeasible variables of those
        problems; every listed problem has at least one.
        """
        count = infeasible.sum(axis=0)
        best, patience = self.best[cols], self.patience[cols]
        full = count < best
        patient = ~full & (patience >= 1)
        best[full] = count[full]
        patience[full] = _BACKUP_PATIENCE
        patience[patient] -= 1
        self.best[cols], self.patience[cols] = best, patience
        many = full | patient
        sub = passive[:, cols]
        sub[:, many] ^= infeasible[:, many]
        backup = np.flatnonzero(~many)
        if backup.size:
            last = sub.shape[0] - 1 - np.argmax(infeasible[::-1, backup], axis=0)
            sub[last, backup] ^= True
        passive[:, cols] = sub


def _chop(a: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Zero the entries of ``a`` (k×r) that are tiny relative to ``scale`` (r,)."""
    a[np.abs(a) <= _REL_TOL * scale] = 0.0
    return a


def _spd_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``gram @ x = rhs`` for a symmetric positive semi-definite gram."""
    try:
        factor = scipy.linalg.cho_factor(gram, check_finite=False)
        return scipy.linalg.cho_solve(factor, rhs, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        # rank-deficient sub-problem: minimum-norm least-squares solution
        return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def _passive_keys(sub: np.ndarray) -> np.ndarray:
    """One key per column of ``sub`` (k×r bool): a float holding the bits for k <= 52, else packed bytes."""
    k = sub.shape[0]
    if k <= 52:  # distinct sums of distinct powers of two, exact in float64
        return np.ldexp(1.0, np.arange(k)) @ sub
    keys = np.ascontiguousarray(np.packbits(sub, axis=0).T)
    return keys.view(np.dtype((np.void, keys.shape[1]))).ravel()


def _solve_grouped(gram, cross, passive, cols):
    """Unconstrained solution on the passive set for the columns ``cols``.

    Columns with the same passive set share one factorisation (Van Benthem &
    Keenan's combinatorial grouping) when the group has at least
    ``_GROUP_MIN`` columns; there one Cholesky factor serves many right-hand
    sides.  The other columns (on sparse data nearly all: most passive sets
    are distinct) are solved by :func:`_solve_compact`, batched by the size
    of their passive set.  Returns an array of shape (k, len(cols)) that is
    zero outside the passive set.
    """
    k = gram.shape[0]
    sub = passive[:, cols]
    out = np.zeros((k, cols.size), dtype=cross.dtype)
    if cols.size == 0:
        return out
    rest = np.arange(cols.size)
    if cols.size >= _GROUP_MIN:
        _, inverse, counts = np.unique(_passive_keys(sub), return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        large = counts[inverse] >= _GROUP_MIN
        if large.any():
            grouped = np.flatnonzero(large)
            grouped = grouped[np.argsort(inverse[grouped], kind="stable")]
            for members in np.split(grouped, np.flatnonzero(np.diff(inverse[grouped])) + 1):
                idx = np.flatnonzero(sub[:, members[0]])
                if idx.size:
                    rhs = cross[np.ix_(idx, cols[members])]
                    out[np.ix_(idx, members)] = _spd_solve(gram[np.ix_(idx, idx)], rhs)
            rest = np.flatnonzero(~large)
    if rest.size:
        out[:, rest] = _solve_compact(gram, cross[:, cols[rest]].T, sub[:, rest].T).T
    return out


_SINGULAR_COND = 1e12  # Grams worse conditioned than this get a relative ridge of 1 / _SINGULAR_COND


def _strictly_convex(gram: np.ndarray) -> np.ndarray:
    """``gram`` plus a ridge of 1e-12 of its largest diagonal entry when it is (numerically) singular.

    Block principal pivoting assumes a non-singular Gram and can cycle on a
    rank-deficient one (e.g. fewer rows than columns in A); the ridge makes
    the problem strictly convex and moves the KKT residual by about 1e-12·|x|.
    A zero Gram is left alone (its solution is 0).
    """
    top = float(np.abs(np.diag(gram)).max(initial=0.0))
    if top == 0.0 or np.linalg.cond(gram) <= _SINGULAR_COND:
        return gram
    return gram + (top / _SINGULAR_COND) * np.eye(gram.shape[0], dtype=gram.dtype)


def nnls_bpp(
    gram: np.ndarray,
    cross: np.ndarray,
    *,
    init: np.ndarray | None = None,
    max_iter: int | None = None,
) -> np.ndarray:
    """Solve ``min_X ||A X - B||_F^2  s.t.  X >= 0`` from ``AᵀA`` and ``AᵀB``.

    Parameters
    ----------
    gram : ndarray of shape (k, k)
        ``AᵀA``, symmetric positive semi-definite.
    cross : ndarray of shape (k, r)
        ``AᵀB``, one column per right-hand side.
    init : ndarray of shape (k, r), optional
        Warm start: the previous solution.  Its positive entries form the
        initial passive sets.
    max_iter : int, optional
        Cap on pivoting rounds (default ``5 k``, as Kim & Park).  The backup
        rule terminates well before it in exact arithmetic.

    Returns
    -------
    X : ndarray of shape (k, r)
        The non-negative least-squares solution.  When the Gram is singular
        the solution minimises the objective but need not be unique.
    """
    gram = np.asarray(gram)
    cross = np.asarray(cross)
    k, r = cross.shape
    if gram.shape != (k, k):
        raise ValueError(f"gram must have shape ({k}, {k}), got {gram.shape}")
    max_iter = 5 * k if max_iter is None else max_iter
    gram = _strictly_convex(gram)
    scale = np.abs(cross).max(axis=0) + np.finfo(cross.dtype).tiny
    every = np.arange(r)

    if init is None:
        passive = np.zeros((k, r), dtype=bool)
        X = np.zeros_like(cross)
    else:
        passive = np.asarray(init) > 0
        X = _solve_grouped(gram, cross, passive, every)
    Y = _chop(gram @ X - cross, scale)
    xscale = np.abs(X).max(axis=0) + scale / (np.abs(np.diag(gram)).max() + 1.0)
    X = _chop(X, xscale)
    infeasible = (passive & (X < 0)) | (~passive & (Y < 0))
    pivot = _Pivoting(k, r)
    rounds = 0
    cols = np.flatnonzero(infeasible.any(axis=0))
    while cols.size and rounds < max_iter:
        rounds += 1
        pivot.exchange(passive, infeasible[:, cols], cols)
        Xc = _solve_grouped(gram, cross, passive, cols)
        Yc = gram @ Xc - cross[:, cols]
        Xc = _chop(Xc, xscale[cols])
        Yc = _chop(Yc, scale[cols])
        X[:, cols], Y[:, cols] = Xc, Yc
        bad = (passive[:, cols] & (Xc < 0)) | (~passive[:, cols] & (Yc < 0))
        infeasible[:, cols] = bad
        cols = cols[bad.any(axis=0)]
    np.maximum(X, 0.0, out=X)
    return X


def _solve_compact(grams: np.ndarray, rhs: np.ndarray, passive: np.ndarray) -> np.ndarray:
    """Solve every system restricted to its passive set, zero elsewhere.

    ``grams`` is one Gram (k×k) shared by all systems or one per system
    (b×k×k); ``rhs`` and ``passive`` are b×k.  Systems are batched by the
    size p of their passive set, and each batch solves only the p×p
    sub-systems it gathers (a p×p solve costs about (p/k)³ of the k×k one;
    on sparse data p is often k/3).
    """
    b, k = rhs.shape
    sizes = passive.sum(axis=1)
    order = np.argsort(sizes, kind="stable")
    bounds = np.searchsorted(sizes[order], np.arange(k + 2))
    passive_sorted, rhs_sorted = passive[order], rhs[order]
    members = np.nonzero(passive_sorted)[1]  # row by row (sorted by size): the passive indices, ascending
    offsets = np.concatenate(([0], np.cumsum(sizes[order])))
    out = np.zeros_like(rhs_sorted)
    shared = grams.ndim == 2
    flat = grams.reshape(-1) if shared else None
    for p in range(1, k + 1):
        lo, hi = bounds[p], bounds[p + 1]
        if lo == hi:
            continue
        idx = members[offsets[lo] : offsets[hi]].reshape(hi - lo, p)
        if shared:
            sub = flat[(idx * k)[:, :, None] + idx[:, None, :]]
        else:
            sub = grams[order[lo:hi, None, None], idx[:, :, None], idx[:, None, :]]
        sub_rhs = np.take_along_axis(rhs_sorted[lo:hi], idx, axis=1)
        try:
            x = np.linalg.solve(sub, sub_rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a singular sub-system: its minimum-norm least-squares solution
            x = np.einsum("bij,bj->bi", np.linalg.pinv(sub, hermitian=True), sub_rhs)
        np.put_along_axis(out[lo:hi], idx, x, axis=1)
    result = np.empty_like(out)
    result[order] = out
    return result


def nnls_batched(
    grams: np.ndarray,
    rhs: np.ndarray,
    *,
    init: np.ndarray | None = None,
    max_iter: int | None = None,
) -> np.ndarray:
    """Solve b independent problems ``min_x xᵀGx - 2bᵀx  s.t.  x >= 0``.

    Each problem has its own Gram; all are pivoted together with the same
    exchange rule as :func:`nnls_bpp`.

    Parameters
    ----------
    grams : ndarray of shape (b, k, k)
        One symmetric positive semi-definite Gram per problem.
    rhs : ndarray of shape (b, k)
        One right-hand side per problem.
    init : ndarray of shape (b, k), optional
        Warm start; its positive entries give the initial passive sets.
    max_iter : int, optional
        Cap on pivoting rounds (default ``5 k``).

    Returns
    -------
    X : ndarray of shape (b, k)
    """
    grams = np.asarray(grams)
    rhs = np.asarray(rhs)
    b, k = rhs.shape
    if grams.shape != (b, k, k):
        raise ValueError(f"grams must have shape ({b}, {k}, {k}), got {grams.shape}")
    max_iter = 5 * k if max_iter is None else max_iter
    scale = np.abs(rhs).max(axis=1) + np.finfo(rhs.dtype).tiny
    diag_scale = np.abs(np.diagonal(grams, axis1=1, axis2=2)).max(axis=1) + 1.0
    passive = np.zeros((b, k), dtype=bool) if init is None else np.asarray(init) > 0
    X = _solve_compact(grams, rhs, passive) if init is not None else np.zeros_like(rhs)
    Y = np.einsum("bij,bj->bi", grams, X) - rhs
    # work in the (k, b) orientation shared with nnls_bpp
    Xt, Yt, Pt = X.T.copy(), Y.T.copy(), passive.T.copy()
    xscale = np.abs(Xt).max(axis=0) + scale / diag_scale
    _chop(Xt, xscale)
    _chop(Yt, scale)
    infeasible = (Pt & (Xt < 0)) | (~Pt & (Yt < 0))
    pivot = _Pivoting(k, b)
    rounds = 0
    cols = np.flatnonzero(infeasible.any(axis=0))
    while cols.size and rounds < max_iter:
        rounds += 1
        pivot.exchange(Pt, infeasible[:, cols], cols)
        Xc = _solve_compact(grams[cols], rhs[cols], Pt[:, cols].T)
        Yc = np.einsum("bij,bj->bi", grams[cols], Xc) - rhs[cols]
        Xc, Yc = _chop(Xc.T, xscale[cols]), _chop(Yc.T, scale[cols])
        Xt[:, cols], Yt[:, cols] = Xc, Yc
        bad = (Pt[:, cols] & (Xc < 0)) | (~Pt[:, cols] & (Yc < 0))
        infeasible[:, cols] = bad
        cols = cols[bad.any(axis=0)]
    np.maximum(Xt, 0.0, out=Xt)
    return Xt.T.copy()
