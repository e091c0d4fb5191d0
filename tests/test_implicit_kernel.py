"""Implicit-feedback ALS kernel (issue 17) against dense brute-force oracles over all pairs."""

import numpy as np
import pytest

from sparknmf.kernels.implicit import confidence, implicit_half_step


def _events(seed=0, n=9, m=7, density=0.4, negative=False):
    """A dense event matrix with NaN where unobserved (an observed 0 is an event of value 0)."""
    rng = np.random.default_rng(seed)
    R = np.where(rng.random((n, m)) < density, rng.integers(0, 6, (n, m)).astype(float), np.nan)
    R[np.arange(n), rng.integers(0, m, n)] = rng.integers(1, 6, n)
    if negative:
        R[0, np.isnan(R[0])] = -2.0
    return R


def _csr(R):
    observed = ~np.isnan(R)
    indptr = np.r_[0, np.cumsum(observed.sum(axis=1))]
    cols = np.nonzero(observed)[1]
    return indptr, cols, R[observed]


def _dense_c_p(R, alpha, kind="linear", eps=1.0, W=None):
    """c and p of every pair, written out directly from the model's definition."""
    observed = ~np.isnan(R)
    r = np.where(observed, R, 0.0)
    f = np.abs(r) if kind == "linear" else np.log(1.0 + np.abs(r) / eps)
    c = np.where(observed, (1.0 + alpha * f) * (1.0 if W is None else W), 1.0)
    return c, (r > 0).astype(float)


def _brute_objective(R, X, Y, lam, alpha, kind="linear", eps=1.0, scaled=False):
    c, p = _dense_c_p(R, alpha, kind, eps)
    su = p.sum(axis=1) if scaled else np.ones(R.shape[0])
    si = p.sum(axis=0) if scaled else np.ones(R.shape[1])
    return float((c * (p - X @ Y.T) ** 2).sum() + lam * (su @ (X**2).sum(1) + si @ (Y**2).sum(1)))


def _brute_rows(R, Y, lam, alpha, kind="linear", eps=1.0, scaled=False, W=None):
    """Each row's all-pairs weighted ridge solve with the dense diagonal C_u (m×m): no shortcut."""
    c, p = _dense_c_p(R, alpha, kind, eps, W)
    X = np.zeros((R.shape[0], Y.shape[1]))
    for u in range(R.shape[0]):
        Cu = np.diag(c[u])
        s = (p[u] * (1.0 if W is None else W[u]) * ~np.isnan(R[u])).sum() if scaled else 1.0
        X[u] = np.linalg.solve(Y.T @ Cu @ Y + lam * s * np.eye(Y.shape[1]), Y.T @ Cu @ p[u])
    return X


def _step(R, Y, **kw):
    indptr, cols, r = _csr(R)
    return implicit_half_step(indptr, cols, r, Y, Y.T @ Y, **kw)


@pytest.mark.parametrize("kind,scaled,negative", [("linear", False, False), ("log", False, True),
                                                  ("linear", True, True)])
def test_half_step_equals_dense_all_pairs_solve(kind, scaled, negative):
    R = _events(1, negative=negative)
    Y = np.random.default_rng(2).normal(size=(R.shape[1], 3))
    X, loss, penalty = _step(R, Y, reg=0.7, alpha=2.5, confidence_kind=kind, epsilon=0.5, scaled=scaled)
    np.testing.assert_allclose(X, _brute_rows(R, Y, 0.7, 2.5, kind, 0.5, scaled), rtol=1e-10, atol=1e-12)
    c, p = _dense_c_p(R, 2.5, kind, 0.5)
    assert loss == pytest.approx(float((c * (p - X @ Y.T) ** 2).sum()), rel=1e-10)
    s = p.sum(axis=1) if scaled else np.ones(R.shape[0])
    assert penalty == pytest.approx(0.7 * float(s @ (X**2).sum(1)), rel=1e-10)


def test_event_weights_multiply_the_confidence():
    R = _events(3)
    W = np.random.default_rng(4).uniform(0.2, 3.0, R.shape)
    Y = np.random.default_rng(5).normal(size=(R.shape[1], 2))
    indptr, cols, r = _csr(R)
    X, _, _ = implicit_half_step(indptr, cols, r, Y, Y.T @ Y, reg=0.3, alpha=1.5, weights=W[~np.isnan(R)],
                                 scaled=True)
    np.testing.assert_allclose(X, _brute_rows(R, Y, 0.3, 1.5, scaled=True, W=W), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("nonnegative", [False, True])
def test_all_pairs_objective_never_increases(scaled, nonnegative):
    R = _events(6, n=12, m=9, negative=True)
    rng = np.random.default_rng(7)
    X, Y = np.abs(rng.normal(size=(12, 3))), np.abs(rng.normal(size=(9, 3)))
    kw = dict(reg=0.2, alpha=3.0, scaled=scaled, nonnegative=nonnegative)
    last = _brute_objective(R, X, Y, 0.2, 3.0, scaled=scaled)
    for _ in range(6):
        X, loss_u, pen_u = _step(R, Y, init=X, **kw)
        mid = _brute_objective(R, X, Y, 0.2, 3.0, scaled=scaled)
        Y, loss_i, pen_i = _step(R.T, X, init=Y, **kw)
        now = _brute_objective(R, X, Y, 0.2, 3.0, scaled=scaled)
        assert mid <= last * (1 + 1e-12) and now <= mid * (1 + 1e-12)
        assert loss_i + pen_i + pen_u == pytest.approx(now, rel=1e-10)  # the loop's objective, from the blocks
        last = now
    if nonnegative:
        assert X.min() >= 0 and Y.min() >= 0


def test_alpha_zero_is_plain_ridge_on_the_full_binary_matrix():
    """α = 0: every confidence is 1, so each row solves ridge regression on the whole 0/1 row of P."""
    R = _events(8, negative=True)
    Y = np.random.default_rng(9).normal(size=(R.shape[1], 4))
    X, loss, _ = _step(R, Y, reg=0.4, alpha=0.0)
    P = (np.nan_to_num(R) > 0).astype(float)
    ridge = np.linalg.solve(Y.T @ Y + 0.4 * np.eye(4), Y.T @ P.T).T
    np.testing.assert_allclose(X, ridge, rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(float(((P - X @ Y.T) ** 2).sum()), rel=1e-10)


def test_confidence_rules():
    c, p = confidence(np.array([3.0, 0.0, -2.0]), alpha=2.0)
    np.testing.assert_array_equal(c, [7.0, 1.0, 5.0])
    np.testing.assert_array_equal(p, [1.0, 0.0, 0.0])
    c, _ = confidence(np.array([3.0]), alpha=2.0, kind="log", epsilon=0.5)
    np.testing.assert_allclose(c, 1 + 2 * np.log(1 + 3 / 0.5))
    with pytest.raises(ValueError, match="confidence must be one of"):
        confidence(np.array([1.0]), alpha=1.0, kind="exp")


def test_chunks_do_not_change_the_rows():
    R = _events(10, n=20)
    Y = np.random.default_rng(11).normal(size=(R.shape[1], 3))
    whole, _, _ = _step(R, Y, reg=0.1, alpha=1.0)
    chunked, _, _ = _step(R, Y, reg=0.1, alpha=1.0, rows_per_chunk=3)
    np.testing.assert_array_equal(whole, chunked)


def _step_cg(R, Y, **kw):
    from sparknmf.kernels.implicit import implicit_half_step_cg

    indptr, cols, r = _csr(R)
    return implicit_half_step_cg(indptr, cols, r, Y, Y.T @ Y, **kw)


@pytest.mark.parametrize("scaled", [False, True])
def test_conjugate_gradient_reaches_the_exact_solve_and_reports_its_exact_loss(scaled, monkeypatch):
    import sparknmf.kernels.implicit as kernel

    monkeypatch.setattr(kernel, "_CG_BUDGET", 7)  # several chunks of rows
    R = _events(12, n=15, negative=True)
    Y = np.random.default_rng(13).normal(size=(R.shape[1], 4))
    exact, _, _ = _step(R, Y, reg=0.6, alpha=2.0, scaled=scaled)
    X, loss, penalty = _step_cg(R, Y, steps=12, reg=0.6, alpha=2.0, scaled=scaled)
    np.testing.assert_allclose(X, exact, rtol=1e-7, atol=1e-9)
    few, loss, penalty = _step_cg(R, Y, steps=2, reg=0.6, alpha=2.0, scaled=scaled)
    c, p = _dense_c_p(R, 2.0)
    assert loss == pytest.approx(float((c * (p - few @ Y.T) ** 2).sum()), rel=1e-10)
    s = p.sum(axis=1) if scaled else np.ones(R.shape[0])
    assert penalty == pytest.approx(0.6 * float(s @ (few**2).sum(1)), rel=1e-10)


def test_conjugate_gradient_steps_never_increase_the_objective():
    R = _events(14, n=12, m=9, negative=True)
    rng = np.random.default_rng(15)
    X, Y = rng.normal(size=(12, 3)) * 0.1, rng.normal(size=(9, 3)) * 0.1
    last = _brute_objective(R, X, Y, 0.2, 3.0)
    for _ in range(6):
        X, _, _ = _step_cg(R, Y, steps=1, reg=0.2, alpha=3.0, init=X)
        mid = _brute_objective(R, X, Y, 0.2, 3.0)
        Y, _, _ = _step_cg(R.T, X, steps=1, reg=0.2, alpha=3.0, init=Y)
        now = _brute_objective(R, X, Y, 0.2, 3.0)
        assert mid <= last * (1 + 1e-12) and now <= mid * (1 + 1e-12)
        last = now
