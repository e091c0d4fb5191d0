"""Checks on user data, run before any factorisation work.

Every check raises :class:`~sparknmf.errors.InvalidInputError` with a message
that names the input, the problem, how many entries have it and one example
position, e.g. ``"NMF (input V) has 3 negative entries, e.g. -0.5 at (2, 7)"``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import InvalidInputError

__all__ = ["as_matrix", "check_rank", "check_entries"]

DUPLICATE_POLICIES = ("error", "sum")


def check_entries(rows, cols, vals, whom: str) -> None:
    """Reject NaN/inf and negative values; ``rows``/``cols`` give positions for the message."""
    bad = ~np.isfinite(vals)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"{whom} has {int(bad.sum())} NaN or infinite entries, "
            f"e.g. {vals[i]} at ({rows[i]}, {cols[i]})"
        )
    neg = vals < 0
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise InvalidInputError(
            f"{whom} has {int(neg.sum())} negative entries, e.g. {vals[i]} at ({rows[i]}, {cols[i]}); "
            "NMF needs a non-negative matrix"
        )


def _check_dtype(dtype, whom):
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)) or np.issubdtype(
        dtype, np.complexfloating
    ):
        raise InvalidInputError(f"{whom} must hold real numbers, got dtype {dtype}")


def as_matrix(V, whom: str = "NMF (input V)", *, dtype=np.float64, duplicates: str = "error"):
    """Validate a numpy array or scipy sparse matrix and return it as ndarray or CSR.

    Parameters
    ----------
    V : array-like of shape (n, m) or scipy sparse matrix
    whom : str
        Name used in error messages.
    dtype : numpy dtype
        float64 (default) or float32.
    duplicates : {"error", "sum"}
        Policy for repeated coordinates in COO input.

    Returns
    -------
    ndarray of shape (n, m) or csr_matrix of shape (n, m)
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if sp.issparse(V):
        _check_dtype(V.dtype, whom)
        coo = V.tocoo()
        if coo.nnz and duplicates == "error":
            key = coo.row.astype(np.int64) * coo.shape[1] + coo.col
            uniq, counts = np.unique(key, return_counts=True)
            if (counts > 1).any():
                first = uniq[counts > 1][0]
                raise InvalidInputError(
                    f"{whom} has {int((counts > 1).sum())} duplicate coordinates, e.g. "
                    f"({first // coo.shape[1]}, {first % coo.shape[1]}); pass duplicates='sum' to add them"
                )
        check_entries(coo.row, coo.col, np.asarray(coo.data, dtype=np.float64), whom)
        out = sp.csr_matrix(coo, dtype=dtype)
        out.sum_duplicates()
        out.eliminate_zeros()
    else:
        arr = np.asarray(V)
        if arr.ndim != 2:
            raise InvalidInputError(f"{whom} must be 2-D, got shape {arr.shape}")
        _check_dtype(arr.dtype, whom)
        flat = arr.astype(np.float64, copy=False)
        if not np.isfinite(flat).all() or (flat < 0).any():
            rows, cols = np.nonzero(~np.isfinite(flat) | (flat < 0))
            check_entries(rows, cols, flat[rows, cols], whom)
        out = np.ascontiguousarray(arr, dtype=dtype)
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise InvalidInputError(f"{whom} is empty (shape {out.shape})")
    return out


def check_rank(k, shape, whom: str = "k") -> int:
    """``1 <= k <= min(n, m)``; returns k as int."""
    n, m = shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{whom} must be an integer, got {k!r}")
    if not 1 <= k <= min(n, m):
        raise ValueError(f"{whom}={k} is out of range: it must be between 1 and min(n, m) = {min(n, m)} for V of shape {shape}")
    return int(k)
