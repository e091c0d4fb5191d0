"""Initial factors: random, NNDSVD and its variants, or user-supplied.

Factors are returned in row orientation: W (n×k) and Hᵀ (m×k).

Random draws are made per fixed chunk of ``CHUNK_ROWS`` rows, each chunk with
its own generator ``default_rng([seed, stream, chunk])`` (stream 0 for W,
1 for Hᵀ).  The factors therefore depend only on the seed and the shape,
never on how V is partitioned into blocks or on task scheduling.

References
----------
C. Boutsidis and E. Gallopoulos, "SVD based initialization: A head start for
nonnegative matrix factorization", Pattern Recognition 41(4), 1350-1362 (2008).
https://doi.org/10.1016/j.patcog.2007.09.010

N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure with
randomness", SIAM Review 53(2), 217-288 (2011). https://doi.org/10.1137/090771806
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from sparknmf.kernels.updates import one_blas_thread

__all__ = ["DEFAULT_INIT", "INITS", "chunked_draw", "draw_rows", "nndsvd_factors", "nndsvd_norms", "nndsvd_plan",
           "nndsvd_rows", "random_factors", "randomized_svd", "resolve_init"]

INITS = ("auto", "random", "nndsvd", "nndsvda", "nndsvdar", "custom")
DEFAULT_INIT = "auto"  # the default of NMF's init Param, nmf() and multistart(): resolve_init
CHUNK_ROWS = 4096
_W_STREAM, _H_STREAM, _SVD_STREAM, _FILL_STREAM = 0, 1, 2, 3


def check_seed(seed) -> int:
    """``seed`` as an int in [0, 2**63 - 1] (numpy's generators refuse negative seeds)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
    return int(seed)


def resolve_init(init: str, *, custom: bool = False, weighted: bool = False, multistart: bool = False) -> str:
    """The start that ``init`` names: ``"auto"`` is resolved, any other name returned as is.

    ``"auto"`` is ``"custom"`` when starting factors are given (``custom``),
    else ``"nndsvda"`` for one fit of ordinary V (a deterministic start near
    the answer: fewer iterations than a random one, the same for every seed
    but for the randomized SVD), whichever the factor placement, and
    ``"random"`` for multi-start runs (each run needs its own start) and for
    weighted V (its missing entries would count as zeros in the SVD).
    """
    if init != "auto":
        return init
    if custom:
        return "custom"
    return "random" if multistart or weighted else "nndsvda"


def chunked_draw(rows: int, k: int, seed: int, stream: int, kind: str = "normal") -> np.ndarray:
    """A (rows×k) draw that is the same whatever the partitioning of the rows.

    ``kind`` is ``"normal"`` (standard normal) or ``"uniform"`` ([0, 1)).
    """
    return draw_rows(0, rows, rows, k, seed, stream, kind)


def draw_rows(start: int, stop: int, rows: int, k: int, seed: int, stream: int, kind: str = "normal") -> np.ndarray:
    """Rows ``start:stop`` of :func:`chunked_draw` ``(rows, k, seed, stream, kind)``: a block's share of it.

    Only the chunks that hold those rows are drawn, each by its own generator
    ``default_rng([seed, stream, chunk])``, so a block drawn by an executor
    holds the driver's numbers bit for bit.
    """
    first, last = start // CHUNK_ROWS, -(-stop // CHUNK_ROWS)
    out = np.empty((max(0, (last - first) * CHUNK_ROWS), k))
    end = 0
    for chunk in range(first, last):
        rng = np.random.default_rng([seed, stream, chunk])
        size = (min(CHUNK_ROWS, rows - chunk * CHUNK_ROWS), k)
        out[end : end + size[0]] = rng.standard_normal(size) if kind == "normal" else rng.random(size)
        end += size[0]
    offset = first * CHUNK_ROWS
    return out[start - offset : stop - offset]


def random_factors(n: int, m: int, k: int, seed: int, mean: float):
    """W, Hᵀ with entries ``sqrt(mean(V)/k)·|N(0,1)|`` (scikit-learn's scaling).

    ``W Hᵀᵀ`` then has entries of the order of the mean of V.
    """
    scale = np.sqrt(max(mean, 0.0) / k) or 1.0
    W = np.abs(chunked_draw(n, k, seed, _W_STREAM)) * scale
    Ht = np.abs(chunked_draw(m, k, seed, _H_STREAM)) * scale
    return W, Ht


def randomized_svd(multiply, shape, k: int, seed: int, *, oversample: int = 10, power_iter: int = 2):
    """Top-k singular triplets of V from products with V and Vᵀ only.

    Parameters
    ----------
    multiply : callable
        ``multiply(side, Y)``: ``V @ Y`` for ``side == "W"`` (Y m×l, result
        n×l) and ``Vᵀ @ Y`` for ``side == "H"`` (Y n×l, result m×l).
    shape : (n, m)
    k : int
    oversample, power_iter : int
        Extra sampled directions and power iterations (Halko et al.).  Two
        power iterations are plenty for a starting point: each costs two
        passes over V, i.e. two Spark jobs.

    Returns
    -------
    U : ndarray of shape (n, k)
    S : ndarray of shape (k,)
    Vt : ndarray of shape (k, m)
    """
    n, m = shape
    ell = min(k + oversample, n, m)

    def product(side, Y):
        out = multiply(side, Y)
        if not np.isfinite(out).all():
            raise svd_overflow()
        return out

    Q = product("W", chunked_draw(m, ell, seed, _SVD_STREAM))
    for _ in range(power_iter):  # LU keeps the power iterations well scaled at a fraction of QR's cost
        Q = _lu_basis(Q)
        Q = _lu_basis(product("H", Q))
        Q = product("W", Q)
    with one_blas_thread(), np.errstate(over="ignore"):  # thin factorizations: memory-bound, one thread
        try:
            Q = _orthonormal(Q)
        except (ValueError, np.linalg.LinAlgError):  # QᵀQ overflowed
            raise svd_overflow() from None
    Bt = product("H", Q)  # (m×ell) = (Qᵀ V)ᵀ
    with one_blas_thread():
        Ub, S, Vbt = np.linalg.svd(Bt.T, full_matrices=False)
        return (Q @ Ub)[:, :k], S[:k], Vbt[:k]


def svd_overflow() -> FloatingPointError:
    """The error of an overflowed randomized SVD (V too large for float arithmetic), for either placement."""
    return FloatingPointError("NMF: the randomized SVD of an NNDSVD start overflowed (V's values are too large for "
                         "float arithmetic); rescale V (e.g. V / max(V)) or use init='random'")


def _lu_basis(A):
    """The permuted L factor of a tall A (n×l): a well-scaled basis of its columns."""
    with one_blas_thread():
        return scipy.linalg.lu(A, permute_l=True)[0]


def _orthonormal(A):
    """An orthonormal basis of the columns of a tall A (n×l): CholeskyQR2, QR if A is rank-deficient."""
    try:
        for _ in range(2):
            R = np.linalg.cholesky(A.T @ A).T
            A = scipy.linalg.solve_triangular(R, A.T, trans="T", lower=False).T
        return A
    except np.linalg.LinAlgError:
        return np.linalg.qr(A)[0]


def nndsvd_factors(U, S, Vt, variant: str, mean: float, seed: int):
    """NNDSVD of Boutsidis & Gallopoulos from a rank-k SVD.

    ``variant``: ``"nndsvd"`` keeps the zeros (best for sparse, ANLS),
    ``"nndsvda"`` fills them with mean(V), ``"nndsvdar"`` with small random
    values ``mean(V)/100 · U[0, 1)`` (both better for multiplicative rules).
    The same three steps run on blocks of U and Vᵀ in the executors
    (:mod:`sparknmf.engine.frame_svd`): column norms, summed over blocks; the
    plan; the rows.

    Returns W (n×k) and Hᵀ (m×k).
    """
    modes, coef_u, coef_v = nndsvd_plan(S, nndsvd_norms(U), nndsvd_norms(Vt.T))
    W = nndsvd_rows(U, modes, coef_u, variant, mean, seed, _FILL_STREAM, 0, U.shape[0])
    Ht = nndsvd_rows(Vt.T, modes, coef_v, variant, mean, seed, _FILL_STREAM + 1, 0, Vt.shape[1])
    return W, Ht


def nndsvd_norms(X) -> np.ndarray:
    """Squared norms of the positive and negative parts of X's columns (X rows×k): a (2, k) array.

    Sums over row blocks give the whole matrix's.
    """
    return np.stack([np.square(np.maximum(X, 0)).sum(axis=0), np.square(np.maximum(-X, 0)).sum(axis=0)])


def nndsvd_plan(S, norms_u, norms_v):
    """Per component j of the SVD: which part of u_j and v_j NNDSVD keeps, and their scales.

    Parameters
    ----------
    S : ndarray of shape (k,), the singular values
    norms_u, norms_v : ndarray of shape (2, k), :func:`nndsvd_norms` of U (n×k) and V (m×k)

    Returns
    -------
    modes : ndarray of shape (k,): 2 for |x| (the first component), 1 for the positive
        parts, -1 for the negative parts, 0 for none (a zero column)
    coef_u, coef_v : ndarray of shape (k,): the kept parts' scales, ``sqrt(S_j ‖u‖ ‖v‖) / ‖u‖`` and ``/ ‖v‖``
    """
    k = len(S)
    nu_p, nu_n = np.sqrt(norms_u)
    nv_p, nv_n = np.sqrt(norms_v)
    positive = nu_p * nv_p >= nu_n * nv_n
    nu, nv = np.where(positive, nu_p, nu_n), np.where(positive, nv_p, nv_n)
    modes = np.where(positive, 1, -1)
    modes[(nu == 0) | (nv == 0)] = 0
    modes[0] = 2
    coef_u, coef_v = np.zeros(k), np.zeros(k)
    kept = modes == 1
    kept |= modes == -1
    scale = np.sqrt(S * nu * nv)
    coef_u[kept], coef_v[kept] = scale[kept] / nu[kept], scale[kept] / nv[kept]
    coef_u[0] = coef_v[0] = np.sqrt(S[0])
    return modes, coef_u, coef_v


def nndsvd_rows(X, modes, coef, variant: str, mean: float, seed: int, stream: int, start: int, rows: int):
    """Rows ``start ... start + len(X) - 1`` of NNDSVD's factor from the same rows of U (or V), X (r×k).

    ``modes`` and ``coef`` are :func:`nndsvd_plan`'s; ``rows`` is the whole
    factor's row count and ``stream`` the fill's generator (``nndsvdar``).
    """
    out = np.zeros_like(X, dtype=np.float64)
    for mode, sign in ((2, None), (1, 1.0), (-1, -1.0)):
        cols = modes == mode
        part = np.abs(X[:, cols]) if sign is None else np.maximum(sign * X[:, cols], 0)
        out[:, cols] = part * coef[cols]
    out[out < np.finfo(float).eps] = 0.0
    if variant == "nndsvda":
        out[out == 0] = mean
    elif variant == "nndsvdar":
        fill = draw_rows(start, start + X.shape[0], rows, X.shape[1], seed, stream, "uniform") * mean / 100
        out = np.where(out == 0, fill, out)
    elif variant != "nndsvd":
        raise ValueError(f"unknown NNDSVD variant {variant!r}")
    return out
