"""The masked ALS half-step, implicit-feedback pieces and top-N against dense numpy references (no Spark)."""

import numpy as np
import pytest
import scipy.sparse as sp

from sparknmf.kernels.als import (
    Entries,
    SideSpec,
    drift,
    half_step,
    implicit_apply,
    implicit_system,
    predict,
)
from sparknmf.kernels.topn import top_n


def _ratings(seed=0, n=12, m=9, density=0.5):
    """A dense rating matrix R (n×m) with mask M, weights C, days T (every row and column observed)."""
    rng = np.random.default_rng(seed)
    M = rng.random((n, m)) < density
    M[np.arange(n), rng.integers(0, m, n)] = True
    M[rng.integers(0, n, m), np.arange(m)] = True
    R = np.round(rng.uniform(1, 5, (n, m)))
    C = rng.uniform(0.5, 2.0, (n, m))
    T = rng.uniform(0, 100, (n, m))
    return R, M, C, T


def _entries(R, M, C=None, T=None, bins=0, mean_days=None, transpose=False):
    """CSR-shaped Entries of the masked matrix (rows = users, or items when ``transpose``)."""
    R, M = (R.T, M.T) if transpose else (R, M)
    C = None if C is None else (C.T if transpose else C)
    T = None if T is None else (T.T if transpose else T)
    csr = sp.csr_matrix(np.where(M, 1.0, 0.0))
    rows, cols = np.nonzero(M)
    e = Entries(csr.indptr.astype(np.int64), cols.astype(np.int64), R[rows, cols],
                weights=None if C is None else C[rows, cols])
    if T is not None:
        days = T[rows, cols]
        e.bins = np.minimum((days / (100 / bins)).astype(np.int64), bins - 1) if bins else None
        users = cols if transpose else rows
        e.dev = drift(days, mean_days[users], 0.4) if mean_days is not None else None
    return e


def _dense_half_step(R, M, C, design_other, offset, regs, scaled):
    """Per row u: argmin Σ_j c (r − offset − a_ujᵀx)² + Σ_v s λ_v x_v², a_uj = design_other(u, j)."""
    out = []
    for u in range(R.shape[0]):
        js = np.flatnonzero(M[u])
        A = np.array([design_other(u, j) for j in js])
        c = C[u, js]
        t = R[u, js] - np.array([offset(u, j) for j in js])
        s = c.sum() if scaled else 1.0
        out.append(np.linalg.solve((A * c[:, None]).T @ A + np.diag(s * regs), A.T @ (c * t)))
    return np.array(out)


@pytest.mark.parametrize("scaled", [False, True])
def test_user_half_step_equals_dense_reference_with_biases_and_weights(scaled):
    R, M, C, _ = _ratings()
    k, mu = 3, 3.1
    user, item = SideSpec(k, True), SideSpec(k, True)
    P_item = np.random.default_rng(1).normal(size=(R.shape[1], item.width))
    X, loss, penalty = half_step(user, item, _entries(R, M, C), P_item, mu=mu, reg=0.2, bias_reg=0.05,
                                 scaled=scaled, nonnegative=False)
    regs = np.r_[np.full(k, 0.2), 0.05]
    ref = _dense_half_step(R, M, C, lambda u, j: np.r_[P_item[j, :k], 1.0], lambda u, j: mu + P_item[j, k], regs,
                           scaled)
    np.testing.assert_allclose(X, ref, rtol=1e-8, atol=1e-10)
    pred = mu + X[:, k][:, None] + P_item[:, k][None, :] + X[:, :k] @ P_item[:, :k].T
    assert loss == pytest.approx(float((C * M * (R - pred) ** 2).sum()), rel=1e-9)
    scale = (C * M).sum(axis=1) if scaled else np.ones(R.shape[0])
    assert penalty == pytest.approx(float((scale[:, None] * regs * X**2).sum()), rel=1e-9)


def test_time_bins_and_drift_half_steps_equal_dense_reference():
    R, M, C, T = _ratings(2)
    k, mu, bins = 2, 3.0, 4
    mean_days = np.array([T[u, M[u]].mean() for u in range(R.shape[0])])
    user, item = SideSpec(k, True, "drift"), SideSpec(k, True, "bins", bins)
    rng = np.random.default_rng(3)
    P_user, P_item = rng.normal(size=(R.shape[0], user.width)), rng.normal(size=(R.shape[1], item.width))
    bin_of = np.minimum((T / 25).astype(int), bins - 1)
    dev = drift(T, mean_days[:, None], 0.4)
    regs_item = np.r_[np.full(k, 0.1), np.full(1 + bins, 0.02)]
    X_item, _, _ = half_step(item, user, _entries(R, M, C, T, bins, mean_days, transpose=True), P_user, mu=mu,
                             reg=0.1, bias_reg=0.02, scaled=False, nonnegative=False)
    ref_item = _dense_half_step(
        R.T, M.T, C.T, lambda i, u: np.r_[P_user[u, :k], 1.0, np.eye(bins)[bin_of[u, i]]],
        lambda i, u: mu + P_user[u, k] + P_user[u, k + 1] * dev[u, i], regs_item, False)
    np.testing.assert_allclose(X_item, ref_item, rtol=1e-8, atol=1e-10)
    X_user, _, _ = half_step(user, item, _entries(R, M, C, T, bins, mean_days), P_item, mu=mu, reg=0.1,
                             bias_reg=0.02, scaled=False, nonnegative=False)
    ref_user = _dense_half_step(
        R, M, C, lambda u, i: np.r_[P_item[i, :k], 1.0, dev[u, i]],
        lambda u, i: mu + P_item[i, k] + P_item[i, k + 1 + bin_of[u, i]], np.r_[np.full(k, 0.1), 0.02, 0.02], False)
    np.testing.assert_allclose(X_user, ref_user, rtol=1e-8, atol=1e-10)


def test_alternating_half_steps_never_increase_the_objective():
    R, M, C, _ = _ratings(4, n=20, m=15)
    k, mu = 3, float((R * M).sum() / M.sum())
    user, item = SideSpec(k, True), SideSpec(k, True)
    rng = np.random.default_rng(0)
    P = {"user": rng.normal(0, 0.1, (20, user.width)), "item": rng.normal(0, 0.1, (15, item.width))}
    by = {"user": _entries(R, M, C), "item": _entries(R, M, C, transpose=True)}
    opts = dict(mu=mu, reg=0.5, bias_reg=0.1, scaled=False, nonnegative=False)
    previous, pen = np.inf, {"user": 0.0, "item": 0.0}
    for _ in range(5):
        for side, other in (("user", "item"), ("item", "user")):
            P[side], loss, pen[side] = half_step(user, item, by[side], P[other], **opts) if side == "user" else \
                half_step(item, user, by[side], P[other], **opts)
            objective = loss + pen["user"] + pen["item"]
            if np.isfinite(previous):
                assert objective <= previous * (1 + 1e-12)
            previous = objective


def test_implicit_operator_equals_dense_normal_equations():
    R, M, C, _ = _ratings(5)
    n, m, k = R.shape[0], R.shape[1], 3
    rng = np.random.default_rng(6)
    H, v, resid = rng.normal(size=(m, k)), rng.normal(size=(m, k)), rng.normal(size=(n, m)) * M
    entries = _entries(R, M, C)
    grams, rhs = implicit_system(entries, H, resid[M])
    N = M.astype(float)
    d = 1 / np.sqrt(N.sum(axis=1))
    # dense: predictions h_iᵀ d_u Σ_j n_uj v_j; the operator is the Hessian of ½ Σ c (e − pred)²
    G = np.array([(H[M[u]] * C[u, M[u], None]).T @ H[M[u]] for u in range(n)])
    s = d[:, None] * (N @ v)
    np.testing.assert_allclose(implicit_apply(entries, grams, v), N.T @ (d[:, None] * np.einsum("bij,bj->bi", G, s)),
                               atol=1e-10)
    g = np.array([(C[u, M[u]] * resid[u, M[u]]) @ H[M[u]] for u in range(n)])
    np.testing.assert_allclose(rhs, N.T @ (d[:, None] * g), atol=1e-10)


def test_predict_adds_every_term():
    R, M, C, T = _ratings(7)
    user, item = SideSpec(2, True, "drift"), SideSpec(2, True, "bins", 3)
    rng = np.random.default_rng(8)
    Pu, Pi = rng.normal(size=(R.shape[0], user.width)), rng.normal(size=(R.shape[1], item.width))
    e = Entries(np.array([0, 1]), np.array([4]), np.array([0.0]), bins=np.array([2]), dev=np.array([0.7]))
    got = predict(user, item, Pu, Pi, np.array([3]), np.array([4]), e, 2.5)
    assert got[0] == pytest.approx(2.5 + Pu[3, 2] + 0.7 * Pu[3, 3] + Pi[4, 2] + Pi[4, 3 + 2] + Pu[3, :2] @ Pi[4, :2])


@pytest.mark.parametrize("chunk", [3, 1000])
def test_top_n_matches_brute_force_with_exclusions_and_candidates(chunk):
    rng = np.random.default_rng(9)
    Q, T, bias = rng.normal(size=(6, 3)), rng.normal(size=(20, 3)), rng.normal(size=20)
    exclude = (np.array([0, 0, 2, 5]), np.array([1, 7, 3, 19]))
    candidates = np.array([1, 2, 3, 5, 7, 8, 11, 13, 17, 19])
    targets, scores = top_n(Q, T, 4, bias=bias, candidates=candidates, exclude=exclude, chunk=chunk)
    full = Q @ T.T + bias
    for q in range(6):
        allowed = [t for t in candidates if (q, t) not in set(zip(*exclude))]
        best = sorted(allowed, key=lambda t: -full[q, t])[:4]
        assert list(targets[q]) == best
        np.testing.assert_allclose(scores[q], full[q, best])
    # more requested than allowed: -inf pads the tail
    targets, scores = top_n(Q[:1], T, 5, candidates=np.array([1, 7, 2]), exclude=(np.array([0]), np.array([7])))
    assert list(targets[0][:2]) == sorted([1, 2], key=lambda t: -(Q[0] @ T[t])) and np.isinf(scores[0, 2])
