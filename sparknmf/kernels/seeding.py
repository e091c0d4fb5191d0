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

__all__ = ["DEFAULT_INIT", "INITS", "chunked_draw", "random_factors", "nndsvd_factors", "randomized_svd",
           "resolve_init"]

INITS = ("auto", "random", "nndsvd", "nndsvda", "nndsvdar", "custom")
DEFAULT_INIT = "auto"  # the default of NMF's init Param, nmf() and multistart(): resolve_init
CHUNK_ROWS = 4096
_W_STREAM, _H_STREAM, _SVD_STREAM, _FILL_STREAM = 0, 1, 2, 3


def check_seed(seed) -> int:
    """``seed`` as an int in [0, 2**63 - 1] (numpy's generators refuse negative seeds)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
    return int(seed)


def resolve_init(init: str, *, custom: bool = False, weighted: bool = False, multistart: bool = False,
                 driver_factors: bool = True) -> str:
    """The start that ``init`` names: ``"auto"`` is resolved, any other name returned as is.

    ``"auto"`` is ``"custom"`` when starting factors are given (``custom``),
    else ``"nndsvda"`` for one fit of ordinary V (a deterministic start near
    the answer: fewer iterations than a random one, the same for every seed
    but for the randomized SVD), and ``"random"`` for multi-start runs (each
    run needs its own start), for weighted V (its missing entries would count
    as zeros in the SVD) and when the factors stay on the executors
    (``driver_factors=False``: the SVD is gathered on the driver).
    """
    if init != "auto":
        return init
    if custom:
        return "custom"
    return "random" if multistart or weighted or not driver_factors else "nndsvda"


def chunked_draw(rows: int, k: int, seed: int, stream: int, kind: str = "normal") -> np.ndarray:
    """A (rows×k) draw that is the same whatever the partitioning of the rows.

    ``kind`` is ``"normal"`` (standard normal) or ``"uniform"`` ([0, 1)).
    """
    out = np.empty((rows, k))
    for chunk, start in enumerate(range(0, rows, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, stream, chunk])
        size = (min(CHUNK_ROWS, rows - start), k)
        out[start : start + size[0]] = rng.standard_normal(size) if kind == "normal" else rng.random(size)
    return out


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
            raise _overflow()
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
            raise _overflow() from None
    Bt = product("H", Q)  # (m×ell) = (Qᵀ V)ᵀ
    with one_blas_thread():
        Ub, S, Vbt = np.linalg.svd(Bt.T, full_matrices=False)
        return (Q @ Ub)[:, :k], S[:k], Vbt[:k]


def _overflow() -> FloatingPointError:
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

    Returns W (n×k) and Hᵀ (m×k).
    """
    n, k = U.shape
    m = Vt.shape[1]
    W = np.zeros((n, k))
    Ht = np.zeros((m, k))
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    Ht[:, 0] = np.sqrt(S[0]) * np.abs(Vt[0])
    with one_blas_thread():  # 4(k - 1) vector norms: a threaded BLAS only spins on them (1.5 s under load)
        for j in range(1, k):
            x, y = U[:, j], Vt[j]
            xp, yp = np.maximum(x, 0), np.maximum(y, 0)
            xn, yn = np.maximum(-x, 0), np.maximum(-y, 0)
            norms_p = np.linalg.norm(xp), np.linalg.norm(yp)
            norms_n = np.linalg.norm(xn), np.linalg.norm(yn)
            if norms_p[0] * norms_p[1] >= norms_n[0] * norms_n[1]:
                u, v, (nu, nv) = xp, yp, norms_p
            else:
                u, v, (nu, nv) = xn, yn, norms_n
            if nu == 0 or nv == 0:
                continue
            scale = np.sqrt(S[j] * nu * nv)
            W[:, j] = scale * u / nu
            Ht[:, j] = scale * v / nv
    tiny = np.finfo(float).eps
    W[W < tiny] = 0.0
    Ht[Ht < tiny] = 0.0
    if variant == "nndsvda":
        W[W == 0] = mean
        Ht[Ht == 0] = mean
    elif variant == "nndsvdar":
        fill_w = chunked_draw(n, k, seed, _FILL_STREAM, "uniform") * mean / 100
        fill_h = chunked_draw(m, k, seed, _FILL_STREAM + 1, "uniform") * mean / 100
        W = np.where(W == 0, fill_w, W)
        Ht = np.where(Ht == 0, fill_h, Ht)
    elif variant != "nndsvd":
        raise ValueError(f"unknown NNDSVD variant {variant!r}")
    return W, Ht
