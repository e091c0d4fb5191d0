"""Block principal pivoting against scipy.optimize.nnls and the KKT conditions."""

import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

from sparknmf.kernels.nnls import nnls_batched, nnls_bpp


def _kkt_violation(gram, cross, X):
    """max over: negativity of X, negativity of the gradient, complementarity (relative)."""
    grad = gram @ X - cross
    scale = max(1.0, np.abs(cross).max(), np.abs(gram).max() * max(1.0, np.abs(X).max()))
    return max((-X).max(initial=0), (-grad).max(initial=0), np.abs(X * grad).max(initial=0) / scale) / scale


def _problem(rng, m, k, r, degenerate=None):
    A = rng.standard_normal((m, k))
    if degenerate == "zero_column":
        A[:, 0] = 0
    elif degenerate == "duplicate_column" and k > 1:
        A[:, 1] = A[:, 0]
    elif degenerate == "rank_one":
        A = np.outer(rng.standard_normal(m), rng.standard_normal(k))
    return A, rng.standard_normal((m, r))


@pytest.mark.parametrize("degenerate", [None, "zero_column", "duplicate_column", "rank_one"])
def test_bpp_matches_scipy_nnls_objective(degenerate):
    rng = np.random.default_rng(0)
    for _ in range(40):
        m, k, r = rng.integers(1, 25), rng.integers(1, 10), rng.integers(1, 15)
        A, B = _problem(rng, m, k, r, degenerate)
        X = nnls_bpp(A.T @ A, A.T @ B)
        assert X.shape == (k, r) and (X >= 0).all()
        for j in range(r):
            x_ref, _ = scipy.optimize.nnls(A, B[:, j])
            ours = np.sum((A @ X[:, j] - B[:, j]) ** 2)
            ref = np.sum((A @ x_ref - B[:, j]) ** 2)
            assert ours <= ref + 1e-9 * max(1.0, ref)


def test_bpp_equals_scipy_solution_when_unique():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((30, 8)), rng.standard_normal((30, 50))
    X = nnls_bpp(A.T @ A, A.T @ B)
    ref = np.column_stack([scipy.optimize.nnls(A, b)[0] for b in B.T])
    np.testing.assert_allclose(X, ref, atol=1e-10)


def test_bpp_warm_start_gives_same_solution():
    rng = np.random.default_rng(2)
    A, B = rng.random((50, 12)), rng.random((50, 200)) - 0.3
    cold = nnls_bpp(A.T @ A, A.T @ B)
    warm = nnls_bpp(A.T @ A, A.T @ B, init=cold + rng.random(cold.shape) * (cold > 0))
    np.testing.assert_allclose(warm, cold, atol=1e-10)


def test_bpp_many_distinct_passive_sets_use_batched_path():
    rng = np.random.default_rng(3)
    A, B = rng.random((200, 20)), rng.standard_normal((200, 3000))
    X = nnls_bpp(A.T @ A, A.T @ B)
    assert _kkt_violation(A.T @ A, A.T @ B, X) < 1e-10


def test_bpp_zero_rhs_and_zero_gram():
    assert np.all(nnls_bpp(np.eye(3), np.zeros((3, 4))) == 0)
    assert np.all(nnls_bpp(np.zeros((3, 3)), np.ones((3, 2))) >= 0)


def test_bpp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="gram must have shape"):
        nnls_bpp(np.eye(3), np.ones((4, 2)))


def test_batched_matches_per_system_scipy():
    rng = np.random.default_rng(4)
    b, k = 60, 6
    As = rng.standard_normal((b, 15, k))
    ys = rng.standard_normal((b, 15))
    grams = np.einsum("bmi,bmj->bij", As, As) + 0.01 * np.eye(k)
    rhs = np.einsum("bmi,bm->bi", As, ys)
    X = nnls_batched(grams, rhs)
    for i in range(b):
        # the same problem as a plain NNLS: factor the Gram, ||L^T x - L^-1 rhs||
        L = np.linalg.cholesky(grams[i])
        ref, _ = scipy.optimize.nnls(L.T, np.linalg.solve(L, rhs[i]))
        np.testing.assert_allclose(X[i], ref, atol=1e-9)


def test_batched_warm_start_and_shape_check():
    rng = np.random.default_rng(5)
    grams = np.stack([np.eye(4) * (i + 1) for i in range(5)])
    rhs = rng.standard_normal((5, 4))
    expected = np.maximum(rhs, 0) / np.arange(1, 6)[:, None]
    np.testing.assert_allclose(nnls_batched(grams, rhs), expected, atol=1e-12)
    np.testing.assert_allclose(nnls_batched(grams, rhs, init=np.ones((5, 4))), expected, atol=1e-12)
    with pytest.raises(ValueError, match="grams must have shape"):
        nnls_batched(grams[:3], rhs)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 12), k=st.integers(1, 6), r=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
    conditioning=st.sampled_from([0.0, 1e-6, 1e-10]),
)
def test_bpp_kkt_property(m, k, r, seed, conditioning):
    """KKT holds on random and near-singular Grams (columns nearly parallel)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k))
    if conditioning and k > 1:
        A[:, -1] = A[:, 0] + conditioning * rng.standard_normal(m)
    B = rng.standard_normal((m, r))
    gram, cross = A.T @ A, A.T @ B
    X = nnls_bpp(gram, cross)
    assert (X >= 0).all()
    assert _kkt_violation(gram, cross, X) < 1e-6


def test_bpp_rank_deficient_gram_does_not_cycle():
    """Regression (found by test_bpp_kkt_property): fewer rows than columns gave a singular Gram on which the
    pivoting cycled and returned a non-optimal X (KKT violation 0.09)."""
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((4, 5)), rng.standard_normal((4, 2))
    X = nnls_bpp(A.T @ A, A.T @ B)
    assert (X >= 0).all() and _kkt_violation(A.T @ A, A.T @ B, X) < 1e-9
