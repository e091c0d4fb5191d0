"""Per-row normal equations for masked / weighted least squares, and their solvers.

Masked ALS, weighted NMF and matrix completion all reduce to one row problem.
For every row ``i`` of a block, with its observed entries ``j ∈ Ω_i``::

    min_x  Σ_{j∈Ω_i} w_ij (t_ij − a_ijᵀ x)²  +  xᵀ diag(λ_i) x          (x ≥ 0 optionally)

where ``a_ij = [h_j, e_ij]`` is the *design row* of entry (i, j): the other
factor's row ``h_j`` (gathered from Y, m×k) followed by optional per-entry
extra columns ``e_ij`` (a constant 1 for a bias, a time-bin indicator, a
drift term...).  Its normal equations are ``(G_i + diag(λ_i)) x = b_i`` with

    G_i = Σ_j w_ij a_ij a_ijᵀ   (d×d)        b_i = Σ_j w_ij t_ij a_ij   (d)

Building the Grams
------------------
Scattering one k×k outer product per entry (or a sparse × packed-outer-product
product) is memory-bound and slow at rank 50.  Instead rows are bucketed by
their entry count, padded up a fixed ladder (≤ 25 % padding, padded entries
have weight 0), their design rows *gathered* into a dense stack
(rows × count × d) and the Grams formed by one batched matrix product
``AᵀA`` per chunk of a bucket: BLAS-bound, one Python iteration per chunk,
never per row or entry.  A chunk gathers at most 2 MB of design values, so
that the stack is still in the core's cache when the product reads it (with
32 MB chunks, the rank-50 ALS loop on 8M ratings ran 8 % slower).  The ladder
depends only on a row's own count, so a row's Gram is the same whatever block
it is computed in.

Solving
-------
:data:`SOLVERS` maps ``nonnegative`` to a batched solver with the one
signature ``solve(grams, rhs, lam, *, free=None, init=None)``:

* ``False`` -- :func:`solve_cholesky`: ``(G + diag λ) x = b`` for all rows at
  once (batched LU / Cholesky via ``np.linalg.solve``).
* ``True`` -- :func:`solve_nnls`: exact non-negative least squares by batched
  block principal pivoting (:func:`~sparknmf.kernels.nnls.nnls_batched`);
  variables flagged ``free`` (biases) stay unconstrained, by splitting each
  into a difference of two non-negative parts (exact: with λ > 0 one of the
  two parts is zero at the optimum).

:class:`NormalEquations` is the mergeable accumulator (``zeros``, ``add``,
``merge``): partial Grams of the same rows from different blocks of entries
add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparknmf.kernels.nnls import nnls_batched

__all__ = [
    "NormalEquations", "SOLVERS", "padded_counts", "row_equations", "solve", "solve_cholesky", "solve_nnls",
    "solve_rows",
]

_SMALL = 8  # counts up to this are padded to themselves
_BUDGET = 1 << 18  # design values gathered at once (2 MB in float64: the stack stays in a core's L2 cache)


def padded_counts(counts: np.ndarray) -> np.ndarray:
    """The padded length of each row's entries: the next rung of a fixed ladder.

    Counts up to 8 are kept; a count in (2^p, 2^(p+1)] is rounded up to a
    multiple of 2^(p−2), so padding adds at most 25 %.
    """
    counts = np.asarray(counts, dtype=np.int64)
    big = counts > _SMALL
    p = np.zeros_like(counts)
    p[big] = np.floor(np.log2(counts[big] - 1)).astype(np.int64)
    step = np.where(big, 1 << np.maximum(p - 2, 0), 1)
    return -(-counts // step) * step


@dataclass
class NormalEquations:
    """Per-row normal equations of a block: ``grams`` (b×d×d), ``rhs`` (b×d), ``weight`` (b,).

    ``weight`` is each row's total entry weight (its count when unweighted),
    used by the count-scaled (ALS-WR) regularization, and ``tt`` (b,) its
    ``Σ_j w t²``, from which :meth:`loss` gives the data loss of any solution.  A zero, an ``add`` and a
    ``merge`` make partial equations of the same rows summable.
    """

    grams: np.ndarray
    rhs: np.ndarray
    weight: np.ndarray
    tt: np.ndarray

    @classmethod
    def zeros(cls, rows: int, d: int, dtype=np.float64) -> "NormalEquations":
        return cls(np.zeros((rows, d, d), dtype), np.zeros((rows, d), dtype), np.zeros(rows, dtype),
                   np.zeros(rows, np.float64))

    def loss(self, X: np.ndarray) -> np.ndarray:
        """Each row's data loss ``Σ_j w (t − aᵀx)² = Σ w t² − 2 xᵀb + xᵀGx`` at X (b×d)."""
        return self.tt - 2.0 * np.einsum("bi,bi->b", X, self.rhs) + np.einsum("bi,bij,bj->b", X, self.grams, X)

    def add(self, indptr, cols, Y, target, *, extra=None, weights=None) -> "NormalEquations":
        """Add the entries of a CSR-shaped block (see :func:`row_equations`); returns self."""
        return self.merge(row_equations(indptr, cols, Y, target, extra=extra, weights=weights))

    def merge(self, other: "NormalEquations") -> "NormalEquations":
        """Add another accumulator of the same rows in place; returns self."""
        self.grams += other.grams
        self.rhs += other.rhs
        self.weight += other.weight
        self.tt += other.tt
        return self


def _gather(indptr, pad, rows_idx, cols, Y, extra, target, weights):
    """Dense padded stacks for the rows ``rows_idx`` (all with padded length ``pad``)."""
    starts = indptr[rows_idx]
    counts = indptr[rows_idx + 1] - starts
    offsets = np.arange(pad)
    valid = offsets[None, :] < counts[:, None]
    pos = np.where(valid, starts[:, None] + offsets[None, :], 0)
    sentinel = Y.shape[0] - 1  # Y ends with an appended zero row
    # np.take along axis 0 copies whole rows, about 3x faster than fancy indexing here
    A = np.take(Y, np.where(valid, cols[pos], sentinel), axis=0) if Y.shape[1] else np.zeros(pos.shape + (0,), Y.dtype)
    if extra is not None:
        E = np.take(extra, pos, axis=0) * valid[..., None]
        A = np.concatenate([A, E], axis=2)
    # padded design rows are zero, so the weights and targets there do not matter
    w = None if weights is None else weights[pos]
    return A, w, target[pos]


def _row_sums(values, indptr):
    """Σ of ``values`` over each row's entries (0 for empty rows)."""
    sums = np.add.reduceat(np.append(values, 0.0), indptr[:-1]) if indptr.size > 1 else np.zeros(0)
    return sums * (np.diff(indptr) > 0)


def row_equations(indptr, cols, Y, target, *, extra=None, weights=None) -> NormalEquations:
    """Normal equations of every row of a CSR-shaped block of entries.

    Parameters
    ----------
    indptr : ndarray of shape (b + 1,)
        Row pointers: the entries of row r are ``indptr[r]:indptr[r+1]``.
    cols : ndarray of shape (nnz,)
        Index of each entry's row in ``Y``.
    Y : ndarray of shape (m, k)
        The other factor (k may be 0 when only extra columns are solved for).
    target : ndarray of shape (nnz,)
        Each entry's target ``t_ij`` (rating minus known offsets).
    extra : ndarray of shape (nnz, e), optional
        Per-entry extra design columns (a column of ones for a bias).
    weights : ndarray of shape (nnz,), optional
        Non-negative entry weights ``w_ij`` (default 1).

    Returns
    -------
    NormalEquations
        ``grams`` (b×d×d) ``= Σ_j w a aᵀ``, ``rhs`` (b×d) ``= Σ_j w t a``,
        ``weight`` (b,) ``= Σ_j w``, ``tt`` (b,) ``= Σ_j w t²``, with ``d = k + e``.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    b = indptr.size - 1
    Y = np.asarray(Y)
    dtype = Y.dtype if Y.dtype in (np.float32, np.float64) else np.float64
    e = 0 if extra is None else extra.shape[1]
    d = Y.shape[1] + e
    out = NormalEquations.zeros(b, d, dtype)
    counts = np.diff(indptr)
    wt = target if weights is None else weights * target
    out.weight[:] = counts if weights is None else _row_sums(weights, indptr)
    out.tt[:] = _row_sums(wt * target, indptr)
    Yz = np.vstack([Y, np.zeros((1, Y.shape[1]), dtype)])
    pads = padded_counts(counts)
    order = np.argsort(pads, kind="stable")
    sorted_pads = pads[order]
    edges = np.flatnonzero(np.diff(sorted_pads)) + 1
    for group in np.split(order, edges):
        pad = int(pads[group[0]])
        if pad == 0:
            continue
        per_chunk = max(1, _BUDGET // (pad * max(d, 1)))
        for start in range(0, group.size, per_chunk):
            rows_idx = group[start : start + per_chunk]
            A, w, t = _gather(indptr, pad, rows_idx, cols, Yz, extra, target, weights)
            Aw = A if w is None else A * w[..., None]
            out.grams[rows_idx] = np.matmul(Aw.transpose(0, 2, 1), A)
            out.rhs[rows_idx] = np.matmul(Aw.transpose(0, 2, 1), t[..., None])[..., 0]
    return out


def dense_row_equations(Y, target, weights) -> NormalEquations:
    """:func:`row_equations` for a block where every row has an entry in every column of Y.

    ``target``, ``weights`` : ndarrays of shape (b, m); Y (m×k).  The Grams
    ``G_r = Σ_j w_rj y_j y_jᵀ`` of all rows are one matrix product
    ``weights @ [y_j ⊗ y_j]_j`` (b×m times m×k²), BLAS-bound, instead of a
    gather per row.
    """
    Y = np.asarray(Y, dtype=np.float64)
    m, k = Y.shape
    outer = (Y[:, :, None] * Y[:, None, :]).reshape(m, k * k)
    wt = weights * target
    grams = (weights @ outer).reshape(-1, k, k)
    return NormalEquations(grams, wt @ Y, weights.sum(axis=1), np.einsum("ij,ij->i", wt, target))


def _as_lam(lam, b, d):
    """λ as a (b, d) array: a scalar, a per-row (b,) or per-variable (d,) vector, or (b, d)."""
    lam = np.asarray(lam, dtype=np.float64)
    if lam.ndim == 0:
        return np.full((b, d), float(lam))
    if lam.shape == (b, d):
        return lam
    if lam.shape == (b,):
        return np.repeat(lam[:, None], d, axis=1)
    if lam.shape == (d,):
        return np.broadcast_to(lam, (b, d))
    raise ValueError(f"lam must be a scalar or have shape ({b},), ({d},) or ({b}, {d}), got {lam.shape}")


def _with_ridge(grams, lam):
    """``G + diag λ``; a variable with a zero diagonal (no data, no ridge) gets 1, so its solution is 0."""
    b, d, _ = grams.shape
    out = grams.copy()
    idx = np.arange(d)
    diag = out[:, idx, idx] + _as_lam(lam, b, d)
    out[:, idx, idx] = np.where(diag == 0.0, 1.0, diag)
    return out


def solve_cholesky(grams, rhs, lam, *, free=None, init=None) -> np.ndarray:
    """Unconstrained: ``min_x xᵀ(G + diag λ)x − 2bᵀx`` for every row, i.e. ``(G + diag λ) x = b``.

    Parameters
    ----------
    grams : ndarray of shape (b, d, d)
    rhs : ndarray of shape (b, d)
    lam : float or ndarray of shape (b,), (d,) or (b, d)
        Ridge weights added to the diagonals.
    free, init : ignored (every variable is free; no warm start needed).

    Returns
    -------
    X : ndarray of shape (b, d)
        A variable with no data and no ridge (zero diagonal) is 0; if another
        system is singular, every row gets the minimum-norm solution.
    """
    G = _with_ridge(np.asarray(grams), lam)
    rhs = np.asarray(rhs)
    if rhs.shape[0] == 0:
        return np.zeros_like(rhs)
    try:
        return np.linalg.solve(G, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.einsum("bij,bj->bi", np.linalg.pinv(G, hermitian=True), rhs)


def solve_nnls(grams, rhs, lam, *, free=None, init=None) -> np.ndarray:
    """Non-negative: ``min_x xᵀ(G + diag λ)x − 2bᵀx  s.t.  x_v ≥ 0`` for every variable v not ``free``.

    Exact NNLS by batched block principal pivoting.  A free variable x_v is
    written ``x_v⁺ − x_v⁻`` with both parts non-negative and the same ridge
    weight on each; the doubled problem has the same optimum as long as
    ``λ_v > 0`` (then ``min(x_v⁺, x_v⁻) = 0``).

    Parameters
    ----------
    grams : ndarray of shape (b, d, d)
    rhs : ndarray of shape (b, d)
    lam : float or ndarray of shape (b,), (d,) or (b, d)
    free : ndarray of bool of shape (d,), optional
        Unconstrained variables (e.g. biases).
    init : ndarray of shape (b, d), optional
        Warm start (the previous solution).

    Returns
    -------
    X : ndarray of shape (b, d), ``X[:, ~free] ≥ 0``
    """
    grams, rhs = np.asarray(grams), np.asarray(rhs)
    b, d = rhs.shape
    lam = _as_lam(lam, b, d)
    free_idx = np.flatnonzero(np.zeros(d, bool) if free is None else np.asarray(free, bool))
    if free_idx.size:
        # x = S z with S = [I, -e_free]: G' = SᵀGS, b' = Sᵀb, λ' = [λ, λ_free]
        S = np.hstack([np.eye(d), -np.eye(d)[:, free_idx]])
        grams = S.T @ grams @ S
        rhs = rhs @ S
        lam = np.hstack([lam, lam[:, free_idx]])
        if init is not None:
            init = np.hstack([np.maximum(init, 0), np.maximum(-np.asarray(init)[:, free_idx], 0)])
    z = nnls_batched(_with_ridge(grams, lam), rhs, init=init)
    x = z[:, :d].copy()
    x[:, free_idx] -= z[:, d:]
    return x


SOLVERS = {False: solve_cholesky, True: solve_nnls}


def solve(grams, rhs, lam, *, nonnegative: bool = False, free=None, init=None) -> np.ndarray:
    """Solve every row's regularized normal equations; see :data:`SOLVERS`.

    ``min_x xᵀ(G + diag λ)x − 2bᵀx`` (subject to ``x ≥ 0`` on the non-free
    variables when ``nonnegative``), for a stack of ``grams`` (b×d×d) and
    ``rhs`` (b×d); returns X (b×d).
    """
    return SOLVERS[bool(nonnegative)](grams, rhs, lam, free=free, init=init)


def solve_rows(indptr, cols, Y, target, reg, *, extra=None, weights=None, scale_by_weight=False,
               nonnegative=False, free=None, init=None, rows_per_chunk=4096):
    """Solve every row's masked / weighted ridge problem of a CSR-shaped block.

    For each row i: ``min_x Σ_j w_ij (t_ij − a_ijᵀ x)² + Σ_v λ_iv x_v²`` with
    ``λ_iv = reg_v · (Σ_j w_ij if scale_by_weight else 1)`` (ALS-WR when scaled),
    and ``x_v ≥ 0`` for the non-``free`` variables when ``nonnegative``.  Rows
    are processed in chunks of ``rows_per_chunk`` so that the Grams in memory
    stay small (rows_per_chunk × d × d).

    Parameters
    ----------
    indptr, cols, Y, target, extra, weights :
        As in :func:`row_equations`; d = k + e.
    reg : ndarray of shape (d,)
        Ridge weight per variable (e.g. λ for factors, λ_b for biases).
    init : ndarray of shape (b, d), optional
        Warm start for the non-negative solver.

    Returns
    -------
    X : ndarray of shape (b, d)
    loss : ndarray of shape (b,)
        Each row's data loss at X.
    penalty : ndarray of shape (b,)
        Each row's ridge term ``Σ_v λ_iv x_v²`` at X.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    b = indptr.size - 1
    d = np.asarray(Y).shape[1] + (0 if extra is None else extra.shape[1])
    reg = np.asarray(reg, dtype=np.float64)
    X = np.zeros((b, d))
    loss, penalty = np.zeros(b), np.zeros(b)
    for start in range(0, b, rows_per_chunk):
        stop = min(b, start + rows_per_chunk)
        lo, hi = indptr[start], indptr[stop]
        part = slice(lo, hi)
        eq = row_equations(indptr[start : stop + 1] - lo, cols[part], Y, target[part],
                           extra=None if extra is None else extra[part],
                           weights=None if weights is None else weights[part])
        lam = reg[None, :] * (eq.weight[:, None] if scale_by_weight else np.ones((stop - start, 1)))
        X[start:stop] = solve(eq.grams, eq.rhs, lam, nonnegative=nonnegative, free=free,
                              init=None if init is None else init[start:stop])
        loss[start:stop] = eq.loss(X[start:stop])
        penalty[start:stop] = np.einsum("bv,bv->b", lam, X[start:stop] ** 2)
    return X, loss, penalty
