"""The NNDSVD start with the factors in the executors: a randomized SVD of V and NNDSVD on factor blocks.

The driver placement computes the start with
:func:`sparknmf.kernels.seeding.randomized_svd` and
:func:`~sparknmf.kernels.seeding.nndsvd_factors` on n×l and m×l arrays.  Here
those tall matrices are :class:`~sparknmf.engine.factors.FactorFrame` s and
only l×l pieces reach the driver:

- the same sample Ω (m×l, l = k + 10, drawn per block: the driver's numbers),
  the same products with V and Vᵀ (:meth:`BlockMatrix.multiply`) and the same
  two power iterations, so the same subspace;
- bases made with TSQR instead of the driver's LU and CholeskyQR: each block
  returns the R of its QR (at most l×l), the driver stacks them and takes the
  R of that stack, and the executors multiply by R⁻¹ (Demmel, Grigori, Hoemmen
  & Langou 2012).  A basis changes neither the subspace nor the singular
  triplets the Rayleigh-Ritz step takes from it;
- that step, ``Bᵀ = VᵀQ`` (m×l) = Q_B R, SVD of the small R = U_r S V_rᵀ: then
  ``U = Q V_r`` and the right singular vectors ``Bᵀ V_r S⁻¹``;
- NNDSVD (Boutsidis & Gallopoulos 2008) from column norms summed over
  blocks (:func:`~sparknmf.kernels.seeding.nndsvd_plan`), then row blocks
  (:func:`~sparknmf.kernels.seeding.nndsvd_rows`).

So the start equals the driver's up to rounding (tests/test_frame_nndsvd.py),
for the driver's six products with V and a few jobs over the n×l and m×l
blocks.

References
----------
J. Demmel, L. Grigori, M. Hoemmen and J. Langou, "Communication-optimal parallel
and sequential QR and LU factorizations", SIAM J. Sci. Comput. 34(1), A206-A239
(2012). https://doi.org/10.1137/080731992
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.linalg

from sparknmf.engine import codec
from sparknmf.engine.calls import Call, block_function
from sparknmf.engine.factors import MADE_SCHEMA, FactorFrame, finish_rows, materialise, random_factor
from sparknmf.engine.frames import ddl
from sparknmf.kernels import seeding

__all__ = ["nndsvd_frames", "randomized_svd_frames"]

_SMALL_SCHEMA = pa.schema([("key", pa.int32()), ("value", pa.binary())])


def randomized_svd_frames(matrix, k: int, seed: int, *, oversample: int = 10, power_iter: int = 2):
    """Top-k singular triplets of V (n×m, a :class:`~sparknmf.engine.matrix.BlockMatrix`) in the executors.

    The algorithm of :func:`sparknmf.kernels.seeding.randomized_svd` with TSQR
    bases (module docstring).

    Returns
    -------
    U : FactorFrame (n×k), the left singular vectors
    S : ndarray of shape (k,)
    V : FactorFrame (m×k), the right singular vectors (Vtᵀ)
    """
    n, m = matrix.shape
    ell = min(k + oversample, n, m)
    sample = random_factor(matrix.spark, m, ell, matrix.col_step, seed=seed, stream=seeding._SVD_STREAM, scale=1.0,
                           floor=None, dtype=np.float64, kl=False, signed=True)
    Q = _product(matrix, "W", sample)
    for _ in range(power_iter):
        Q = _product(matrix, "H", _basis(Q))
        Q = _product(matrix, "W", _basis(Q))
    Q = _basis(_basis(Q))  # orthonormal to rounding: a second pass over an already orthonormal-ish basis
    Bt = matrix.multiply("H", Q)  # (m×ell) = (Qᵀ V)ᵀ
    if not np.isfinite(Bt.gram).all():
        Q.release()
    _check_finite(Bt)
    Ur, S, Vrt = np.linalg.svd(_tsqr_r(Bt))  # Bᵀ = Q_B R = (Q_B U_r) S V_rᵀ, so B = V_r S (Q_B U_r)ᵀ
    Ub, S = Vrt.T[:, :k], S[:k]
    inverse = np.divide(1.0, S, out=np.zeros_like(S), where=S > S[0] * np.finfo(float).eps * max(n, m))
    U, V = Q.times(Ub), Bt.times(Ub * inverse)
    Q.release()
    Bt.release()
    return U, S, V


def nndsvd_frames(matrix, k: int, variant: str, seed: int, mean: float, *, floor, dtype, kl: bool):
    """NNDSVD's W (n×k) and Hᵀ (m×k) as FactorFrames, prepared as the loop prepares the driver's start.

    ``variant`` is ``"nndsvd"``, ``"nndsvda"`` or ``"nndsvdar"``
    (:func:`~sparknmf.kernels.seeding.nndsvd_factors`); ``floor`` (positive
    rules) and ``dtype`` as :func:`~sparknmf.engine.factors.finish_rows`, and
    each block's Gram as the loop's statistic (``kl``: column sums).
    """
    U, S, V = randomized_svd_frames(matrix, k, seed)
    modes, coef_u, coef_v = seeding.nndsvd_plan(S, _norms(U), _norms(V))
    made = []
    for X, coef, stream in ((U, coef_u, seeding._FILL_STREAM), (V, coef_v, seeding._FILL_STREAM + 1)):
        body = Call(_nndsvd_run, dict(modes=modes, coef=coef, variant=variant, mean=float(mean), seed=seed,
                                      stream=stream, step=X.step, rows=X.rows, floor=floor,
                                      dtype=np.dtype(dtype).name, kl=kl))
        made.append(materialise(X.frame.mapInArrow(body, ddl(MADE_SCHEMA)), X.rows, k, X.step, kl)[0])
        X.release()
    return tuple(made)


def _product(matrix, side, X: FactorFrame) -> FactorFrame:
    """``V @ X`` or ``Vᵀ @ X`` in the executors, checked finite; X is released."""
    out = matrix.multiply(side, X)
    X.release()
    _check_finite(out)
    return out


def _check_finite(X: FactorFrame) -> None:
    """A non-finite block makes its Gram non-finite: the driver's overflow error (nothing else to check)."""
    if not np.isfinite(X.gram).all():
        X.release()
        raise seeding.svd_overflow()


def _basis(X: FactorFrame) -> FactorFrame:
    """An orthonormal basis ``X R⁻¹`` of X's columns (TSQR's R); X is released."""
    R = _tsqr_r(X)
    diagonal = np.abs(np.diag(R))
    if not np.isfinite(R).all() or diagonal.max() == 0:
        X.release()
        raise seeding.svd_overflow()
    # a column dependent on the others (V of low rank) keeps a unit scale rather than an infinite one
    R[np.diag_indices_from(R)] = np.where(diagonal > diagonal.max() * np.finfo(float).eps, np.diag(R), 1.0)
    out = X.times(scipy.linalg.solve_triangular(R, np.eye(R.shape[0])))
    X.release()
    return out


def _tsqr_r(X: FactorFrame) -> np.ndarray:
    """The R factor (l×l) of X's QR: each block's R, stacked in key order, then R of the stack."""
    stacked = np.vstack(_collect_small(X, Call(_r_run, {})))
    return np.linalg.qr(stacked, mode="r")


def _norms(X: FactorFrame) -> np.ndarray:
    """:func:`~sparknmf.kernels.seeding.nndsvd_norms` of X, summed over its blocks in key order."""
    return np.sum(_collect_small(X, Call(_norms_run, {})), axis=0)


def _collect_small(X: FactorFrame, body) -> list:
    """The small per-block arrays ``body`` makes from X's blocks, in key order."""
    table = X.frame.mapInArrow(body, ddl(_SMALL_SCHEMA)).toArrow().sort_by("key")
    return [codec.decode(value) for value in table.column("value").to_pylist()]


def _small_rows(batches, kernel):
    for batch in batches:
        keys, values = [], []
        for key, payload in zip(batch.column("key").to_pylist(), batch.column("x")):
            keys.append(key)
            values.append(codec.encode(kernel(np.asarray(codec.decode(payload.as_buffer()), np.float64))))
        yield pa.RecordBatch.from_pydict({"key": pa.array(keys, pa.int32()), "value": values}, schema=_SMALL_SCHEMA)


@block_function
def _r_run(batches):
    yield from _small_rows(batches, lambda X: np.linalg.qr(X, mode="r"))


@block_function
def _norms_run(batches):
    yield from _small_rows(batches, seeding.nndsvd_norms)


@block_function
def _nndsvd_run(batches, *, modes, coef, variant, mean, seed, stream, step, rows, floor, dtype, kl):
    for batch in batches:
        out = {"key": [], "x": [], "gram": [], "data": []}
        for key, payload in zip(batch.column("key").to_pylist(), batch.column("x")):
            X = codec.decode(payload.as_buffer())
            X = finish_rows(seeding.nndsvd_rows(X, modes, coef, variant, mean, seed, stream, key * step, rows),
                            floor, dtype)
            out["key"].append(key)
            out["x"].append(codec.encode(X))
            out["gram"].append(codec.encode(np.atleast_2d(X.sum(axis=0) if kl else X.T @ X)))
            out["data"].append(0.0)
        yield pa.RecordBatch.from_pydict(out, schema=MADE_SCHEMA)
