"""The local backend: V on the driver as one block, the kernels run directly.

This is the backend for numpy / scipy input and the oracle that the Spark
backend (:class:`~sparknmf.engine.matrix.BlockMatrix`) is tested against: a Spark
fit on a 1×1 grid runs exactly these calls inside one task.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp

from sparknmf.kernels.updates import update_block
from sparknmf.kernels.weighted import WeightedBlock

__all__ = ["LocalMatrix", "matrix_stats"]


def _value_stats(vals: np.ndarray, nnz: int) -> dict:
    vals = vals.astype(np.float64, copy=False)
    return {
        "nnz": nnz,
        "sum": float(vals.sum()),
        "sumsq": float(np.dot(vals, vals)),
        "max": float(vals.max()) if vals.size else 0.0,
    }


def matrix_stats(V) -> dict:
    """nnz, sum, sum of squares and max of a validated ndarray, CSR matrix or WeightedBlock.

    For a WeightedBlock they are over the observed entries (weight > 0), and
    ``mean`` is their mean (the scale of random starting factors).
    """
    if isinstance(V, WeightedBlock):
        _, _, values, weights = V.entries()
        vals = np.asarray(values)[np.asarray(weights) > 0]
        return {**_value_stats(vals, int(vals.size)), "mean": float(vals.mean()) if vals.size else 0.0}
    vals = V.data if sp.issparse(V) else np.asarray(V).ravel()
    return _value_stats(vals, int(np.count_nonzero(vals)))


class LocalMatrix:
    """V (n×m) held as one ndarray or CSR block.

    Parameters
    ----------
    V : ndarray, csr_matrix or WeightedBlock of shape (n, m)
        Already validated (:func:`sparknmf.engine.validation.as_matrix`,
        :func:`sparknmf.engine.validation.as_weighted`).
    """

    def __init__(self, V):
        self.V = V
        self.weighted = isinstance(V, WeightedBlock)
        # Vᵀ in CSR once, so the H half-step reads rows too
        if self.weighted:
            self.Vt = V.T
        else:
            self.Vt = V.T.tocsr() if sp.issparse(V) else np.ascontiguousarray(V.T)
        self.shape = V.shape
        self.stats = matrix_stats(V)

    def _oriented(self, side):
        return self.V if side == "W" else self.Vt

    def half_step(self, side, rule, params, X, Y, gram_y, *, update=True, carry=None):
        """Update X (rows of W, or of Hᵀ) given Y; see :mod:`sparknmf.decomposition.factorize`.

        Returns ``(X_new, gram(X_new), data, None)``: the local backend has no
        cross product to carry over to the next half-step.
        """
        cross, data = carry if carry is not None else rule.statistic.cross(self._oriented(side), X, Y,
                                                                            data=side == "H")
        X_new, gram = update_block(rule, params, side, gram_y, cross, X, update=update)
        return X_new, gram, data, None

    def multiply(self, side, Y):
        """``V @ Y`` (side "W") or ``Vᵀ @ Y`` (side "H")."""
        return np.asarray(self._oriented(side) @ Y)

    @contextlib.contextmanager
    def describe(self, text):
        yield

    def serving(self, description):
        """Context of one fit (nothing to set up for a local matrix)."""
        return contextlib.nullcontext(self)
