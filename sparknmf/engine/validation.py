"""Checks on user data, run before any factorisation work.

Every check raises :class:`~sparknmf.errors.InvalidInputError` with a message
that names the input, the problem, how many entries have it and one example
position, e.g. ``"NMF (input V) has 3 negative entries, e.g. -0.5 at (2, 7)"``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sparknmf.errors import InvalidInputError

__all__ = [
    "as_matrix", "as_weighted", "check_float32_max", "check_rank", "check_entries", "to_weights", "weight_checks",
]

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


def _check_duplicates(coo, whom, hint=""):
    """Raise InvalidInputError naming the repeated coordinates of a COO matrix, if any."""
    if not coo.nnz:
        return
    key = coo.row.astype(np.int64) * coo.shape[1] + coo.col
    uniq, counts = np.unique(key, return_counts=True)
    if (counts > 1).any():
        first = uniq[counts > 1][0]
        raise InvalidInputError(f"{whom} has {int((counts > 1).sum())} duplicate coordinates, e.g. "
                                f"({first // coo.shape[1]}, {first % coo.shape[1]}){hint}")


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
        if duplicates == "error":
            _check_duplicates(coo, whom, "; pass duplicates='sum' to add them")
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
    check_float32_range(out, whom, dtype, V)
    return out


def check_float32_range(out, whom: str, dtype, source) -> None:
    """float32 overflows to inf above its maximum: refuse, naming the largest value and the float32 maximum."""
    if np.dtype(dtype) != np.float32:
        return
    data = out.data if sp.issparse(out) else out
    if data.size and not np.isfinite(data).all():
        biggest = float(source.max()) if sp.issparse(source) else float(np.max(np.asarray(source, dtype=np.float64)))
        check_float32_max(biggest, whom, dtype)


def check_float32_max(largest: float, whom: str, dtype) -> None:
    """Refuse float32 storage for data whose ``largest`` value is above float32's maximum (it would become inf)."""
    if np.dtype(dtype) == np.float32 and largest > float(np.finfo(np.float32).max):
        raise InvalidInputError(f"{whom} has values above float32's maximum {float(np.finfo(np.float32).max):g} "
                                f"(largest {largest:g}); use dtype='float64' or rescale V")


def check_rank(k, shape, whom: str = "k") -> int:
    """``1 <= k <= min(n, m)``; returns k as int."""
    n, m = shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{whom} must be an integer, got {k!r}")
    if not 1 <= k <= min(n, m):
        raise ValueError(f"{whom}={k} is out of range: it must be between 1 and min(n, m) = {min(n, m)} "
                         f"for V of shape {shape}")
    return int(k)


MISSING_POLICIES = ("zero", "missing")
_PLURAL = {"weight": "weights", "uncertainty": "uncertainties"}


def weight_checks(raw: np.ndarray, kind: str):
    """``(problem, mask)`` pairs for raw weights or uncertainties (float64; null = NaN).

    Weights must be finite and ≥ 0; uncertainties > 0 (``inf`` is allowed:
    the entry does not count).
    """
    if kind == "weight":
        return [("NaN or infinite weight", ~np.isfinite(raw)), ("negative weight", raw < 0)]
    return [("NaN uncertainty", np.isnan(raw)), ("zero or negative uncertainty", raw <= 0)]


def to_weights(raw: np.ndarray, kind: str) -> np.ndarray:
    """Weights ``w = 1/s²`` from uncertainties (``s = inf`` gives 0), or the weights themselves."""
    if kind == "weight":
        return raw
    with np.errstate(over="ignore"):
        return 1.0 / np.square(raw)


def _raise_first(checks, rows, cols, raw, whom):
    for problem, mask in checks:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise InvalidInputError(
                f"{whom} has {int(mask.sum())} entries with a {problem}, e.g. {raw[i]} at ({rows[i]}, {cols[i]})"
            )


def _dense_weights(weights, kind, shape, whom):
    if sp.issparse(weights):
        raise InvalidInputError(
            f"{whom}: with missing='zero' every entry of V counts, so give the {_PLURAL[kind]} as a dense array "
            f"of shape {shape} (or use missing='missing' with sparse {_PLURAL[kind]} on V's entries)"
        )
    arr = np.asarray(weights)
    if arr.shape != shape:
        raise InvalidInputError(f"{whom}: {_PLURAL[kind]} have shape {arr.shape}, V has shape {shape}")
    _check_dtype(arr.dtype, whom)
    return arr.astype(np.float64)


def as_weighted(V, weights=None, uncertainty=None, *, missing: str = "zero", whom: str = "NMF (input V)"):
    """Validate V with per-entry weights and return it as a WeightedBlock, or None for plain NMF.

    Parameters
    ----------
    V : array-like (n, m) or scipy sparse matrix
    weights : array-like (n, m) or sparse, optional
        ``w_ij ≥ 0`` (0: the entry does not count).
    uncertainty : array-like (n, m) or sparse, optional
        ``s_ij > 0``, giving ``w_ij = 1/s_ij²`` (``inf``: weight 0).  At most
        one of ``weights`` and ``uncertainty``.
    missing : {"zero", "missing"}
        What an entry absent from sparse V (or NaN in dense V) is.
        ``"zero"``: an observed zero (ordinary NMF, NaN is an error; weights
        must then be dense, one per entry).  ``"missing"``: unknown, weight 0;
        sparse V's stored entries, explicit zeros included, are the observed
        ones, and weights may only be given for them (dense or with V's
        sparsity structure).

    Returns
    -------
    WeightedBlock of shape (n, m) in float64, or None when there are no weights and
    ``missing="zero"`` (use :func:`as_matrix`).
    """
    from sparknmf.kernels.weighted import WeightedBlock

    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    if weights is not None and uncertainty is not None:
        raise ValueError("give weights or uncertainty, not both")
    kind = "weight" if uncertainty is None else "uncertainty"
    raw = weights if uncertainty is None else uncertainty
    if raw is None and missing == "zero":
        return None
    if missing == "zero":
        values = as_matrix(V, whom)
        values = values.toarray() if sp.issparse(values) else values
        raw = _dense_weights(raw, kind, values.shape, whom) if raw is not None else np.ones(values.shape)
        rows, cols = np.indices(values.shape)
        _raise_first(weight_checks(raw.ravel(), kind), rows.ravel(), cols.ravel(), raw.ravel(), whom)
        return _checked_support(WeightedBlock.dense(values, to_weights(raw, kind)), whom)
    if sp.issparse(V):
        _check_dtype(V.dtype, whom)
        coo = V.tocoo()
        _check_duplicates(coo, whom)
        rows, cols, vals = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float64)
        shape = coo.shape
    else:
        arr = np.asarray(V)
        if arr.ndim != 2:
            raise InvalidInputError(f"{whom} must be 2-D, got shape {arr.shape}")
        _check_dtype(arr.dtype, whom)
        arr = arr.astype(np.float64)
        rows, cols = np.nonzero(~np.isnan(arr))
        vals, shape = arr[rows, cols], arr.shape
    if 0 in shape:
        raise InvalidInputError(f"{whom} is empty (shape {shape})")
    check_entries(rows, cols, vals, whom)
    if raw is None:
        w = np.ones(vals.size)
    else:
        if sp.issparse(raw):
            if raw.shape != shape:
                raise InvalidInputError(f"{whom}: {_PLURAL[kind]} have shape {raw.shape}, V has shape {shape}")
            raw = raw.tocsr()
            raw.sum_duplicates()
        else:
            raw = _dense_weights(raw, kind, shape, whom)
        observed = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=shape)
        given = sp.csr_matrix(raw) if not sp.issparse(raw) else raw.copy()
        # NaN, and inf uncertainty (weight 0), at an entry mean "not given"
        given.data[np.isnan(given.data) | (np.isinf(given.data) if kind == "uncertainty" else False)] = 0
        given.eliminate_zeros()
        stray = given - given.multiply(observed)
        stray.eliminate_zeros()
        if stray.nnz:
            r, c = stray.nonzero()
            raise InvalidInputError(
                f"{whom}: {_PLURAL[kind]} given for {stray.nnz} entries not in V, e.g. at ({r[0]}, {c[0]}); "
                f"with missing='missing' an absent entry has no {kind} (give 0 weight or inf uncertainty)"
            )
        w = np.asarray(raw[rows, cols]).ravel().astype(np.float64)
        _raise_first(weight_checks(w, kind), rows, cols, w, whom)
        w = to_weights(w, kind)
    if sp.issparse(V):
        block = WeightedBlock.observed(rows, cols, vals, w, shape)
    else:
        block = WeightedBlock.dense(np.nan_to_num(arr, nan=0.0), _scatter(rows, cols, w, shape))
    return _checked_support(block, whom)


def _scatter(rows, cols, values, shape):
    out = np.zeros(shape)
    out[rows, cols] = values
    return out


def _checked_support(block, whom):
    """Refuse V with no weighted entry; warn about rows/columns without one (their factors are 0)."""
    import warnings

    rows, cols, _, w = block.entries()
    counted = np.asarray(w) > 0
    if not counted.any():
        raise InvalidInputError(f"{whom} has no entry with a positive weight")
    empty_rows = block.shape[0] - np.unique(rows[counted]).size
    empty_cols = block.shape[1] - np.unique(cols[counted]).size
    if empty_rows or empty_cols:
        warnings.warn(f"{whom}: {empty_rows} rows and {empty_cols} columns have no observed entry; their rows of "
                      "W / columns of H are 0 and so are their completions", UserWarning, stacklevel=3)
    return block
