"""Weighted NMF: blocks with per-entry weights, and their loss pieces.

Paatero's positive matrix factorization weighs each entry by its uncertainty
s_ij: ``½ Σ_ij w_ij (v_ij − (WH)_ij)²`` with ``w_ij = 1/s_ij²``; a missing
entry has weight 0.  A :class:`WeightedBlock` holds the entries that count
(the *observed* ones) with their values and weights, either dense (every
entry observed, weights may be 0) or sparse (CSR whose structure is the
observed set; explicit zeros are observed zeros).  It keeps both
orientations, so that the H half-step reads rows too.

Two statistics feed the two weighted rules of
:data:`sparknmf.kernels.updates.WEIGHTED_RULES`:

* ``WEIGHTED_LS`` -- per-row normal equations ``G_i = Σ_j w_ij y_j y_jᵀ``,
  ``b_i = Σ_j w_ij v_ij y_j`` (the masked least-squares kernel
  :func:`sparknmf.kernels.rowsolve.row_equations` shared with masked ALS),
  packed as one (n_b × (k² + k)) array so that pieces of the same rows add up;
* ``WEIGHTED_MU`` -- the two products of the weighted multiplicative update
  ``(W ⊙ V) Y`` and ``(W ⊙ XYᵀ) Y`` side by side (n_b × 2k).

Both also return the block's weighted loss ``½ Σ w (v − xᵀy)²`` at the
incoming (X, Y), so the loop reports exactly the weighted objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sparknmf.kernels.objective import Statistic
from sparknmf.kernels.rowsolve import dense_row_equations, row_equations

__all__ = ["WeightedBlock", "WEIGHTED_LS", "WEIGHTED_MU", "pack_equations", "unpack_equations"]


def _csr_pair(rows, cols, values, weights, shape):
    """Two CSR matrices with one structure (entry order by row, then column); explicit zeros kept."""
    order = np.lexsort((cols, rows))
    indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=shape[0]))))
    indices = cols[order].astype(np.int32)
    make = lambda data: sp.csr_matrix((data[order], indices, indptr), shape=shape)  # noqa: E731
    return make(np.asarray(values, dtype=np.float64)), make(np.asarray(weights, dtype=np.float64))


@dataclass(frozen=True)
class WeightedBlock:
    """Observed entries of a block of V (n_b×m_b) with their weights, in both orientations.

    Attributes
    ----------
    values, weights : ndarray or csr_matrix of shape (n_b, m_b)
        Dense: every entry observed.  CSR: both share one structure, the
        observed entries (row-major).
    values_t, weights_t : the same for the transposed block (m_b×n_b).
    """

    values: object
    weights: object
    values_t: object
    weights_t: object

    @classmethod
    def dense(cls, values, weights):
        values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
        if values.shape != weights.shape:
            raise ValueError(f"weights have shape {weights.shape}, values {values.shape}")
        return cls(values, weights, values.T, weights.T)

    @classmethod
    def from_coordinates(cls, rows, cols, values, weights, shape):
        """Observed entries given as coordinates (no duplicates) with their values and weights."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        v, w = _csr_pair(rows, cols, values, weights, shape)
        vt, wt = _csr_pair(cols, rows, values, weights, (shape[1], shape[0]))
        return cls(v, w, vt, wt)

    @classmethod
    def observed(cls, rows, cols, values, weights, shape, dense_fill: float = 0.25):
        """Observed entries as coordinates, stored in the cheaper layout.

        At least ``dense_fill`` of the block observed: dense, unobserved
        entries with weight 0 (the Grams are then one matrix product, ~4×
        faster per entry than gathering rows, so dense wins from ~¼ full and
        takes about as much memory there); else CSR.
        """
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if rows.size < dense_fill * shape[0] * shape[1]:
            return cls.from_coordinates(rows, cols, values, weights, shape)
        dense_values, dense_weights = np.zeros(shape), np.zeros(shape)
        dense_values[rows, cols], dense_weights[rows, cols] = values, weights
        return cls.dense(dense_values, dense_weights)

    @property
    def shape(self):
        return self.values.shape

    @property
    def sparse(self) -> bool:
        return sp.issparse(self.values)

    @property
    def T(self) -> "WeightedBlock":
        return WeightedBlock(self.values_t, self.weights_t, self.values, self.weights)

    def __matmul__(self, Y):
        """``V @ Y`` with unobserved entries as zeros (used by the randomized SVD of NNDSVD)."""
        return np.asarray(self.values @ Y)

    def block(self, rows: slice, cols: slice) -> "WeightedBlock":
        """The sub-block ``[rows, cols]``."""
        if not self.sparse:
            return WeightedBlock.dense(self.values[rows, cols], self.weights[rows, cols])
        coo_v = self.values[rows, cols].tocoo()
        w = self.weights[rows, cols].tocoo()
        return WeightedBlock.from_coordinates(coo_v.row, coo_v.col, coo_v.data, w.data, coo_v.shape)

    def entries(self):
        """(row index, column index, value, weight) of the observed entries (dense: all)."""
        if self.sparse:
            coo = self.values.tocoo()
            return coo.row, coo.col, coo.data, self.weights.data
        rows, cols = np.indices(self.shape)
        return rows.ravel(), cols.ravel(), self.values.ravel(), self.weights.ravel()


def pack_equations(eq) -> np.ndarray:
    """NormalEquations (grams b×k×k, rhs b×k) as one (b × (k² + k)) array."""
    b = eq.rhs.shape[0]
    return np.hstack([eq.grams.reshape(b, -1), eq.rhs])


def unpack_equations(packed: np.ndarray):
    """Inverse of :func:`pack_equations`: ``(grams b×k×k, rhs b×k)``."""
    b, c = packed.shape
    k = int((np.sqrt(1 + 4 * c) - 1) / 2)
    return packed[:, : k * k].reshape(b, k, k), packed[:, k * k :]


def _ls_cross(V: WeightedBlock, X, Y, *, data=True):
    """Packed per-row normal equations for the rows of X, and ``½ Σ w (v − xᵀy)²`` at X (NaN unless ``data``)."""
    if V.sparse:
        eq = row_equations(V.values.indptr, V.values.indices, Y, V.values.data, weights=V.weights.data)
    else:
        eq = dense_row_equations(Y, V.values, V.weights)
    loss = 0.5 * float(eq.loss(np.asarray(X, dtype=eq.grams.dtype)).sum()) if data else np.nan
    return pack_equations(eq), loss


def _approx_on_support(V: WeightedBlock, X, Y):
    """``X Yᵀ`` at the observed entries: a matrix shaped like V.values."""
    if not V.sparse:
        return X @ Y.T
    rows = np.repeat(np.arange(V.shape[0]), np.diff(V.values.indptr))
    approx = np.einsum("ij,ij->i", X[rows], Y[V.values.indices])
    return sp.csr_matrix((approx, V.values.indices, V.values.indptr), shape=V.shape)


def _mu_cross(V: WeightedBlock, X, Y, *, data=True):
    """``[(W ⊙ V) Y | (W ⊙ XYᵀ) Y]`` (n_b × 2k) and ``½ Σ w (v − xᵀy)²`` at X (NaN unless ``data``)."""
    approx = _approx_on_support(V, X, Y)
    if V.sparse:
        wv = V.weights.multiply(V.values).tocsr()
        wa = V.weights.multiply(approx).tocsr()
        residual, weights = V.values.data - approx.data, V.weights.data
    else:
        wv, wa = V.weights * V.values, V.weights * approx
        residual, weights = V.values - approx, V.weights
    loss = 0.5 * float(np.vdot(weights * residual, residual)) if data else np.nan
    return np.hstack([np.asarray(wv @ Y), np.asarray(wa @ Y)]), loss


def _frobenius_gram(Y):
    return Y.T @ Y


def _weighted_objective(data, v_stat, gram_x, gram_y):
    return data


WEIGHTED_LS = Statistic("weighted", _frobenius_gram, _ls_cross, _weighted_objective)
WEIGHTED_MU = Statistic("weighted", _frobenius_gram, _mu_cross, _weighted_objective)
