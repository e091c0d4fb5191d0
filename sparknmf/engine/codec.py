"""Blocks as bytes: dense ndarrays and CSR matrices, without pickle.

A block travels between the driver and Python workers as one ``binary``
column value.  The layout is a fixed little-endian header followed by the
raw arrays::

    magic  b"SNB1"                         4 bytes
    kind   0 = dense (C order), 1 = CSR     uint8
    dtype  b"f" float32, b"d" float64       1 byte
    pad                                     2 bytes
    rows, cols, nnz                         3 × int64
    dense: rows*cols values
    CSR:   data (nnz values), indices (nnz int32), indptr (rows+1 int64)

Decoding is zero-copy (``np.frombuffer``); the result is read-only.

A :class:`~sparknmf.kernels.weighted.WeightedBlock` is a short header
(``b"SNW1"``, dense 0 / sparse 1, the number of parts and their lengths as
int64) followed by its parts, each encoded as above: values and weights
(dense), or values, weights and their transposes (CSR).
"""

from __future__ import annotations

import struct

import numpy as np
import scipy.sparse as sp

__all__ = ["encode", "decode"]

_MAGIC = b"SNB1"
_WEIGHTED = b"SNW1"
_HEADER = struct.Struct("<4sBcxxqqq")
_DTYPES = {b"f": np.dtype("<f4"), b"d": np.dtype("<f8")}
_CODES = {v: k for k, v in _DTYPES.items()}


def _dtype_code(dtype) -> bytes:
    dtype = np.dtype(dtype).newbyteorder("<")
    try:
        return _CODES[dtype]
    except KeyError:
        raise ValueError(f"blocks must be float32 or float64, got {dtype}") from None


def _encode_weighted(block) -> bytes:
    if block.sparse:
        parts = [encode(p) for p in (block.values, block.weights, block.values_t, block.weights_t)]
    else:
        parts = [encode(block.values), encode(block.weights)]
    header = _WEIGHTED + struct.pack(f"<Bq{len(parts)}q", int(block.sparse), len(parts), *map(len, parts))
    return header + b"".join(parts)


def _decode_weighted(view):
    from sparknmf.kernels.weighted import WeightedBlock

    sparse, count = struct.unpack_from("<Bq", view, 4)
    if count not in (2, 4):
        raise ValueError("malformed weighted block payload")
    lengths = struct.unpack_from(f"<{count}q", view, 13)
    offset, parts = 13 + 8 * count, []
    for length in lengths:
        parts.append(decode(view[offset : offset + length]))
        offset += length
    if offset != len(view):
        raise ValueError("weighted block payload has the wrong length")
    if sparse:
        return WeightedBlock(*parts)
    return WeightedBlock(parts[0], parts[1], parts[0].T, parts[1].T)


def encode(block) -> bytes:
    """Serialise a 2-D ndarray, a scipy sparse matrix (stored as CSR) or a WeightedBlock."""
    if hasattr(block, "weights_t"):
        return _encode_weighted(block)
    if sp.issparse(block):
        csr = sp.csr_matrix(block)
        csr.sum_duplicates()
        code = _dtype_code(csr.dtype)
        dtype = _DTYPES[code]
        rows, cols = csr.shape
        header = _HEADER.pack(_MAGIC, 1, code, rows, cols, csr.nnz)
        return b"".join(
            (
                header,
                csr.data.astype(dtype, copy=False).tobytes(),
                csr.indices.astype("<i4", copy=False).tobytes(),
                csr.indptr.astype("<i8", copy=False).tobytes(),
            )
        )
    arr = np.asarray(block)
    if arr.ndim != 2:
        raise ValueError(f"blocks must be 2-D, got shape {arr.shape}")
    code = _dtype_code(arr.dtype)
    rows, cols = arr.shape
    header = _HEADER.pack(_MAGIC, 0, code, rows, cols, rows * cols)
    return header + np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()


def decode(payload: bytes):
    """Inverse of :func:`encode`: an ndarray (dense), a ``csr_matrix`` or a WeightedBlock."""
    view = memoryview(payload)
    if bytes(view[:4]) == _WEIGHTED:
        return _decode_weighted(view)
    if len(view) < _HEADER.size:
        raise ValueError("block payload is truncated (no header)")
    magic, kind, code, rows, cols, nnz = _HEADER.unpack_from(view)
    if magic != _MAGIC or code not in _DTYPES or kind not in (0, 1):
        raise ValueError("not a sparknmf block payload")
    dtype = _DTYPES[code]
    offset = _HEADER.size
    if kind == 0:
        expected = offset + rows * cols * dtype.itemsize
        if len(view) != expected:
            raise ValueError(f"dense block payload has {len(view)} bytes, expected {expected}")
        return np.frombuffer(view, dtype=dtype, count=rows * cols, offset=offset).reshape(rows, cols)
    sizes = (nnz * dtype.itemsize, nnz * 4, (rows + 1) * 8)
    if len(view) != offset + sum(sizes):
        raise ValueError("CSR block payload has the wrong length")
    data = np.frombuffer(view, dtype=dtype, count=nnz, offset=offset)
    indices = np.frombuffer(view, dtype="<i4", count=nnz, offset=offset + sizes[0])
    indptr = np.frombuffer(view, dtype="<i8", count=rows + 1, offset=offset + sizes[0] + sizes[1])
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols))
