"""NNDSVD starts with the factors in the executors (sparknmf.engine.frame_svd, issue 16).

The executors run the driver's randomized SVD (same sample, same products,
same power iterations) with TSQR bases, and NNDSVD on factor blocks: the
start must be the driver placement's up to rounding, the SVD exact when V's
rank is within the sample, and no n×k or m×k array may reach the driver.
"""

import numpy as np
import pytest

from sparknmf.decomposition.factorize import factorize
from sparknmf.engine.factors import FactorFrame
from sparknmf.engine.frame_svd import nndsvd_frames, randomized_svd_frames
from sparknmf.engine.matrix import BlockMatrix

pytestmark = pytest.mark.spark


def _V(seed=0, n=40, m=30, rank=6):
    rng = np.random.default_rng(seed)
    V = rng.random((n, rank)) @ rng.random((rank, m)) + 0.05 * rng.random((n, m))
    V[rng.random((n, m)) < 0.2] = 0.0
    return V


def _close(a, b, rtol):
    scale = max(np.abs(b).max(), 1e-300)
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def _fits(spark, V, grid, **kwargs):
    """(driver W, H, executors W, H) of one fit on one grid of V."""
    backend = BlockMatrix.from_array(spark, V, grid)
    backend.execution = "jobs"
    try:
        driver = factorize(backend, 4, placement="driver", **kwargs)
        executors = factorize(backend, 4, placement="executors", **kwargs)
        W, Ht = (X.collect() for X in executors.factors)
        for X in executors.factors:
            X.release()
        return driver.W, driver.H, W, Ht.T
    finally:
        backend.unpersist()


@pytest.mark.parametrize("variant,grid", [("nndsvd", (3, 1)), ("nndsvda", (2, 2)), ("nndsvdar", (1, 3))])
def test_start_equals_the_driver_start(spark, variant, grid):
    """A rank-6 V plus noise, k = 4, a sample of 14 of 30 columns: the randomized SVD is not exact here."""
    W_d, H_d, W_e, H_e = _fits(spark, _V(), grid, init=variant, max_iter=0, tol=0, seed=2)
    _close(W_e, W_d, 1e-8)
    _close(H_e, H_d, 1e-8)
    assert (W_e >= 0).all() and (H_e >= 0).all()


def test_default_init_is_nndsvda_in_both_placements_and_the_fits_agree(spark):
    W_d, H_d, W_e, H_e = _fits(spark, _V(1), (2, 2), algorithm="hals", max_iter=3, tol=0)
    _close(W_e, W_d, 1e-7)
    _close(H_e, H_d, 1e-7)


def test_svd_is_exact_within_the_sample_and_nothing_tall_is_collected(spark, monkeypatch):
    """V of rank 5 < l = 3 + 10: the range finder captures it, so the triplets are numpy's (up to sign)."""
    rng = np.random.default_rng(3)
    V = rng.random((40, 5)) @ rng.random((5, 30))
    backend = BlockMatrix.from_array(spark, V, (2, 3))
    backend.execution = "jobs"

    def refuse(self):
        raise AssertionError("a factor frame was collected to the driver")

    try:
        with monkeypatch.context() as patch:
            patch.setattr(FactorFrame, "collect", refuse)
            U, S, Vf = randomized_svd_frames(backend, 3, seed=0)
            W, Ht = nndsvd_frames(backend, 3, "nndsvd", 0, float(V.mean()), floor=None, dtype=np.float64, kl=False)
        U_x, S_x, Vt_x = np.linalg.svd(V, full_matrices=False)
        assert S == pytest.approx(S_x[:3], rel=1e-10)
        for got, exact in ((U.collect(), U_x[:, :3]), (Vf.collect(), Vt_x[:3].T)):
            signs = np.sign(np.sum(got * exact, axis=0))
            _close(got * signs, exact, 1e-9)
        assert (W.collect() >= 0).all() and (Ht.collect() >= 0).all()
        for X in (U, Vf, W, Ht):
            X.release()
    finally:
        backend.unpersist()


def test_overflow_is_the_drivers_error(spark):
    backend = BlockMatrix.from_array(spark, _V() * 1e306, (2, 1))
    backend.execution = "jobs"
    try:
        with pytest.raises(FloatingPointError, match="randomized SVD of an NNDSVD start overflowed"):
            factorize(backend, 4, placement="executors", init="nndsvd", max_iter=1)
    finally:
        backend.unpersist()
