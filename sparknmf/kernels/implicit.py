"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008): the row solves of one block (numpy only, no Spark).

Events r_ui (plays, clicks, purchases; one per observed pair) give a
preference and a confidence::

    p_ui = 1 if r_ui > 0 else 0           c_ui = w_ui · (1 + α·f(|r_ui|))

with ``f(r) = r`` (``confidence="linear"``) or ``f(r) = log(1 + r/ε)``
(``"log"``) and ``w_ui`` the optional event weights (default 1).  Every
unobserved pair has p = 0 and c = 1.  A negative event is a negative
preference signal (MLlib's rule): p = 0 with confidence 1 + α|r|; a zero
event counts as observed with p = 0 and c = 1, i.e. like an unobserved pair.

The loss runs over **all** n×m pairs::

    Σ_(u,i) c_ui (p_ui − x_uᵀy_i)² + λ Σ_u s_u‖x_u‖² + λ Σ_i s_i‖y_i‖²

with s = 1 (plain ridge) or the row's number of positive events (``scaled``,
ALS-WR as MLlib weights its implicit ridge).  Given Y (m×k), user u's
normal equations are (Hu et al., eq. 4)::

    (YᵀY + Σ_{i∈Ω_u} (c_ui − 1) y_i y_iᵀ + λ s_u I) x_u = Σ_{i∈Ω_u} c_ui p_ui y_i

``YᵀY`` (k×k, the ``gram`` argument) is shared by every row and computed
once per half-step by the caller; the rest runs over the row's observed
events only, so a half-step costs O(nnz·k² + n·k³) whatever the number of
pairs.  The observed part is built by the same bucketed gather as the
masked kernels (:func:`~sparknmf.kernels.rowsolve.row_equations`, weights
c − 1) and every row is solved at once by batched Cholesky or batched NNLS
(:func:`~sparknmf.kernels.rowsolve.solve`).  Written once for users; items
are the same call on the transposed events (an item block).

References
----------
Y. Hu, Y. Koren and C. Volinsky (2008), "Collaborative filtering for implicit feedback datasets",
ICDM '08, 263-272. https://doi.org/10.1109/ICDM.2008.22
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sparknmf.kernels.rowsolve import NormalEquations, row_equations, solve

__all__ = ["CONFIDENCES", "confidence", "implicit_equations", "implicit_half_step", "implicit_half_step_cg"]


def _linear(magnitude, *, alpha, epsilon):
    return 1.0 + alpha * magnitude


def _log(magnitude, *, alpha, epsilon):
    return 1.0 + alpha * np.log1p(magnitude / epsilon)


CONFIDENCES = {"linear": _linear, "log": _log}


def confidence(ratings, *, alpha: float, kind: str = "linear", epsilon: float = 1.0, weights=None):
    """``(c, p)`` of every event: confidence ``w·(1 + α f(|r|))`` and preference ``r > 0`` (0.0 or 1.0).

    Parameters
    ----------
    ratings : ndarray of shape (nnz,)
        Event values r_ui (finite; negative = negative signal).
    alpha : float
        α ≥ 0.
    kind : str
        A key of :data:`CONFIDENCES`.
    epsilon : float
        ε > 0 of ``"log"``.
    weights : ndarray of shape (nnz,), optional
        Event weights w_ui ≥ 0 (default 1).
    """
    if kind not in CONFIDENCES:
        raise ValueError(f"confidence must be one of {list(CONFIDENCES)}, got {kind!r}")
    r = np.asarray(ratings, dtype=np.float64)
    c = CONFIDENCES[kind](np.abs(r), alpha=alpha, epsilon=epsilon)
    if weights is not None:
        c = c * weights
    return c, (r > 0).astype(np.float64)


def implicit_equations(indptr, cols, Y, gram, c, p, weights=None) -> NormalEquations:
    """All-pairs normal equations of every row of a CSR-shaped block of events (regularisation excluded).

    Parameters
    ----------
    indptr : ndarray of shape (b + 1,)
    cols : ndarray of shape (nnz,)
        Each event's row in Y.
    Y : ndarray of shape (m, k)
        The other side's factors.
    gram : ndarray of shape (k, k)
        ``YᵀY`` over **all** m rows of the other side.
    c, p : ndarray of shape (nnz,)
        Confidence and preference of each event (:func:`confidence`).
    weights : ndarray of shape (nnz,), optional
        Event weights: a row's ``weight`` counts its positive events times their weights.

    Returns
    -------
    NormalEquations
        ``grams`` (b×k×k) ``= YᵀY + Σ_i (c − 1) y_i y_iᵀ``, ``rhs`` (b×k) ``= Σ_i c p y_i``,
        ``weight`` (b,) = the row's positive events (weighted), ``tt`` (b,) ``= Σ_i c p²``, so that
        :meth:`~sparknmf.kernels.rowsolve.NormalEquations.loss` is ``Σ_(all i) c (p − xᵀy_i)²``.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    b = indptr.size - 1
    Y = np.asarray(Y, dtype=np.float64)
    m = Y.shape[0]
    eq = row_equations(indptr, cols, Y, np.zeros(c.shape[0]), weights=c - 1.0)
    eq.grams += gram[None, :, :]
    cp = sp.csr_matrix((c * p, cols, indptr), shape=(b, m))
    eq.rhs = np.asarray(cp @ Y).reshape(b, Y.shape[1])
    counted = p if weights is None else p * weights
    eq.weight = np.asarray(sp.csr_matrix((counted, cols, indptr), shape=(b, m)).sum(axis=1)).ravel()
    eq.tt = np.asarray(cp.sum(axis=1)).ravel()  # Σ c p² = Σ c p (p is 0 or 1)
    return eq


def implicit_half_step(indptr, cols, ratings, Y, gram, *, reg: float, alpha: float, confidence_kind: str = "linear",
                       epsilon: float = 1.0, weights=None, scaled: bool = False, nonnegative: bool = False,
                       init=None, rows_per_chunk: int = 4096):
    """New rows of one side for one block of events: exact all-pairs weighted ridge solves.

    For each row u: ``min_x Σ_(all i) c_ui (p_ui − xᵀy_i)² + λ s_u ‖x‖²`` (``x ≥ 0`` when
    ``nonnegative``), by batched Cholesky (or batched NNLS) of the equations of :func:`implicit_equations`,
    in chunks of ``rows_per_chunk`` rows.

    Parameters
    ----------
    indptr, cols, ratings : CSR-shaped events of the block (rows this side, cols indices into Y)
    Y : ndarray of shape (m, k)
    gram : ndarray of shape (k, k)
        ``YᵀY`` over all rows of Y (the caller's, computed once per half-step).
    reg : float
        λ.
    alpha, confidence_kind, epsilon, weights :
        As in :func:`confidence`.
    scaled : bool
        λ times the row's number of positive events (MLlib's implicit ALS-WR).
    nonnegative : bool
    init : ndarray of shape (b, k), optional
        Warm start of the NNLS solver.

    Returns
    -------
    X : ndarray of shape (b, k)
    loss : float
        ``Σ_u Σ_(all i) c (p − x_uᵀy_i)²`` over the block's rows at X.
    penalty : float
        ``Σ_u λ s_u ‖x_u‖²``.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    b, k = indptr.size - 1, Y.shape[1]
    c, p = confidence(ratings, alpha=alpha, kind=confidence_kind, epsilon=epsilon, weights=weights)
    X = np.zeros((b, k))
    loss = penalty = 0.0
    for start in range(0, b, rows_per_chunk):
        stop = min(b, start + rows_per_chunk)
        lo, hi = indptr[start], indptr[stop]
        part = slice(lo, hi)
        eq = implicit_equations(indptr[start : stop + 1] - lo, cols[part], Y, gram, c[part], p[part],
                                None if weights is None else weights[part])
        lam = reg * (eq.weight if scaled else np.ones(stop - start))
        X[start:stop] = solve(eq.grams, eq.rhs, lam, nonnegative=nonnegative,
                              init=None if init is None else init[start:stop])
        loss += float(eq.loss(X[start:stop]).sum())
        penalty += float(np.dot(lam, np.einsum("bk,bk->b", X[start:stop], X[start:stop])))
    return X, loss, penalty



_CG_BUDGET = 1 << 21  # gathered factor values per chunk of rows in the conjugate-gradient products (16 MB)


def _chunks(indptr, k):
    """Row ranges whose events gather at most about ``_CG_BUDGET`` factor values (at least one row each)."""
    b = indptr.size - 1
    start = 0
    while start < b:
        stop = int(np.searchsorted(indptr, indptr[start] + max(_CG_BUDGET // max(k, 1), 1), side="right")) - 1
        stop = min(max(stop, start + 1), b)
        yield start, stop
        start = stop


def implicit_half_step_cg(indptr, cols, ratings, Y, gram, *, steps: int, reg: float, alpha: float,
                          confidence_kind: str = "linear", epsilon: float = 1.0, weights=None, scaled: bool = False,
                          init=None):
    """:func:`implicit_half_step` by ``steps`` conjugate-gradient steps per row from ``init`` (as ``implicit``).

    Every row's system ``A_u x = b_u`` (:func:`implicit_equations`) is never formed: each step applies
    ``A_u p = YᵀY p + Σ_i (c − 1)(y_iᵀp) y_i + λ s_u p`` to all rows at once (one gather of the rows'
    factors and one sparse product per chunk of rows), O(nnz·k) per step instead of O(nnz·k²) for the
    Grams.  CG from the previous rows decreases every row's quadratic at each step, so the objective
    still never increases; with ``steps >= k`` it reaches the exact solve (up to rounding).

    Returns ``(X, loss, penalty)`` as :func:`implicit_half_step` (the loss at the returned rows, exactly).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    Y = np.asarray(Y, dtype=np.float64)
    b, k = indptr.size - 1, Y.shape[1]
    m = Y.shape[0]
    c, p = confidence(ratings, alpha=alpha, kind=confidence_kind, epsilon=epsilon, weights=weights)
    excess = c - 1.0
    cp = sp.csr_matrix((c * p, cols, indptr), shape=(b, m))
    rhs = np.asarray(cp @ Y).reshape(b, k)
    counted = p if weights is None else p * weights
    lam = reg * (np.asarray(sp.csr_matrix((counted, cols, indptr), shape=(b, m)).sum(axis=1)).ravel()
                 if scaled else np.ones(b))
    chunks = list(_chunks(indptr, k))

    def data_operator(V):  # (YᵀY + Σ (c − 1) y yᵀ) v for every row
        out = V @ gram
        for start, stop in chunks:
            lo, hi = indptr[start], indptr[stop]
            local = indptr[start : stop + 1] - lo
            rows = np.repeat(np.arange(stop - start), np.diff(local))
            t = np.einsum("ek,ek->e", Y[cols[lo:hi]], V[start:stop][rows]) * excess[lo:hi]
            out[start:stop] += np.asarray(sp.csr_matrix((t, cols[lo:hi], local), shape=(stop - start, m)) @ Y)
        return out

    X = np.zeros((b, k)) if init is None else np.array(init, dtype=np.float64)
    r = rhs - data_operator(X) - lam[:, None] * X
    d = r.copy()
    rr = np.einsum("bk,bk->b", r, r)
    for _ in range(steps):
        active = rr > 1e-20
        if not active.any():
            break
        Ad = data_operator(d) + lam[:, None] * d
        dAd = np.einsum("bk,bk->b", d, Ad)
        step = np.where(active & (dAd > 0), rr / np.where(dAd > 0, dAd, 1.0), 0.0)
        X += step[:, None] * d
        r -= step[:, None] * Ad
        rr_new = np.einsum("bk,bk->b", r, r)
        d = r + np.where(active, rr_new / np.where(active, rr, 1.0), 0.0)[:, None] * d
        rr = rr_new
    tt = np.asarray(cp.sum(axis=1)).ravel()
    loss = tt - 2.0 * np.einsum("bk,bk->b", X, rhs) + np.einsum("bk,bk->b", X, data_operator(X))
    penalty = lam * np.einsum("bk,bk->b", X, X)
    return X, float(loss.sum()), float(penalty.sum())
