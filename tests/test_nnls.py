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


@settings(max_examples=80, deadline=None)
@given(
    extra=st.integers(0, 30), k=st.integers(1, 12), r=st.integers(1, 150), seed=st.integers(0, 2**31 - 1),
    start=st.sampled_from(["perturbed", "random", "zeros", "other_problem"]),
)
def test_warm_started_bpp_equals_cold_bpp(extra, k, r, seed, start):
    """Issue 18: the solution does not depend on the warm start (m >= k rows: a unique solution)."""
    rng = np.random.default_rng(seed)
    m = k + extra
    A = rng.standard_normal((m, k)) + np.eye(m, k) * 3.0  # full column rank, well conditioned
    B = rng.standard_normal((m, r)) + 0.5
    gram, cross = A.T @ A, A.T @ B
    cold = nnls_bpp(gram, cross)
    if start == "perturbed":  # as in ANLS: the previous iterate, near the answer
        init = np.maximum(cold + 0.1 * rng.standard_normal(cold.shape), 0)
    elif start == "random":
        init = rng.random((k, r)) * (rng.random((k, r)) < 0.5)
    elif start == "zeros":
        init = np.zeros((k, r))
    else:  # the solution of another problem with the same A
        init = nnls_bpp(gram, A.T @ rng.standard_normal((m, r)))
    warm = nnls_bpp(gram, cross, init=init)
    np.testing.assert_allclose(warm, cold, rtol=0, atol=1e-10 * max(1.0, np.abs(cold).max()))
    assert _kkt_violation(gram, cross, warm) < 1e-10


def test_bpp_shared_passive_sets_use_one_factorisation_and_agree_with_batched():
    """Issue 18: columns whose passive set repeats (dense data: all positive) are solved by group; the rest
    by size-batched sub-systems.  Both paths give scipy's solution."""
    rng = np.random.default_rng(6)
    A = rng.random((60, 8)) + np.eye(60, 8)
    W = np.zeros((8, 400))
    W[:, :300] = rng.random((8, 300)) + 0.1  # 300 columns with every variable passive
    W[:3, 300:] = rng.random((3, 100))  # and 100 with the first three passive
    B = A @ W + 0.001 * rng.standard_normal((60, 400))
    X = nnls_bpp(A.T @ A, A.T @ B)
    ref = np.column_stack([scipy.optimize.nnls(A, b)[0] for b in B.T])
    np.testing.assert_allclose(X, ref, atol=1e-9)


@pytest.mark.parametrize("k", [1, 5, 20, 60])
def test_bpp_warm_start_from_previous_iterate_in_anls(k):
    """The ANLS pattern on a sparse non-negative V: every NNLS warm-started from the previous iterate equals the
    cold solve (to 1e-10) and satisfies KKT, also for k > 52 (passive-set keys as packed bytes)."""
    rng = np.random.default_rng(k)
    V = rng.random((80, 120)) * (rng.random((80, 120)) < 0.1)
    W = rng.random((80, k))
    H = nnls_bpp(W.T @ W, W.T @ V)
    for _ in range(3):
        W = nnls_bpp(H @ H.T, H @ V.T, init=W.T).T
        gram, cross = W.T @ W, W.T @ V
        warm, cold = nnls_bpp(gram, cross, init=H), nnls_bpp(gram, cross)
        np.testing.assert_allclose(warm, cold, rtol=0, atol=1e-10 * max(1.0, np.abs(cold).max()))
        assert _kkt_violation(gram, cross, warm) < 1e-9
        H = warm


def test_batched_warm_start_equals_cold_with_mixed_passive_sizes():
    rng = np.random.default_rng(7)
    b, k = 300, 9
    As = rng.standard_normal((b, 20, k))
    grams = np.einsum("bmi,bmj->bij", As, As) + 0.1 * np.eye(k)
    rhs = np.einsum("bmi,bm->bi", As, rng.standard_normal((b, 20)))
    cold = nnls_batched(grams, rhs)
    warm = nnls_batched(grams, rhs, init=rng.random((b, k)) * (rng.random((b, k)) < 0.4))
    np.testing.assert_allclose(warm, cold, atol=1e-10)
    assert len(set(map(int, (cold > 0).sum(axis=1)))) > 3  # several passive-set sizes batched apart
