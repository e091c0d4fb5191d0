"""Row normal equations and solvers against plain per-row numpy references (no Spark)."""

import numpy as np
import pytest
import scipy.sparse as sp

from sparknmf.kernels import rowsolve
from sparknmf.kernels.rowsolve import NormalEquations, padded_counts, row_equations, solve, solve_rows


def _block(seed=0, rows=30, m=25, density=0.3, long_row=True):
    rng = np.random.default_rng(seed)
    M = sp.random(rows, m, density=density, random_state=seed, format="csr")
    if long_row:  # one row with every column, one empty row
        M = sp.vstack([M[:-2], sp.csr_matrix(np.ones((1, m))), sp.csr_matrix((1, m))]).tocsr()
    nnz = M.nnz
    return M, rng.normal(size=(m, 4)), rng.normal(size=nnz), rng.random(nnz), rng.normal(size=(nnz, 2))


def _reference(M, Y, target, weights, extra):
    """Per-row loop: G_i = Σ w a aᵀ, b_i = Σ w t a with a = [y_j, e_ij]."""
    grams, rhs = [], []
    for i in range(M.shape[0]):
        s, e = M.indptr[i], M.indptr[i + 1]
        A = np.hstack([Y[M.indices[s:e]], extra[s:e]])
        grams.append((A * weights[s:e, None]).T @ A)
        rhs.append(A.T @ (weights[s:e] * target[s:e]))
    return np.array(grams), np.array(rhs)


@pytest.mark.parametrize("budget", [1 << 22, 7])
def test_row_equations_match_per_row_reference(monkeypatch, budget):
    monkeypatch.setattr(rowsolve, "_BUDGET", budget)  # 7 forces one row per chunk
    M, Y, t, w, E = _block()
    eq = row_equations(M.indptr, M.indices, Y, t, extra=E, weights=w)
    grams, rhs = _reference(M, Y, t, w, E)
    np.testing.assert_allclose(eq.grams, grams, atol=1e-12)
    np.testing.assert_allclose(eq.rhs, rhs, atol=1e-12)
    np.testing.assert_allclose(eq.weight, [w[M.indptr[i]:M.indptr[i + 1]].sum() for i in range(M.shape[0])])
    unweighted = row_equations(M.indptr, M.indices, Y, t)
    np.testing.assert_allclose(unweighted.grams, _reference(M, Y, t, np.ones_like(w), np.zeros((M.nnz, 0)))[0],
                               atol=1e-12)
    np.testing.assert_array_equal(unweighted.weight, np.diff(M.indptr))


def test_padding_ladder_bounds():
    counts = np.arange(0, 5000)
    pads = padded_counts(counts)
    assert (pads >= counts).all() and (pads[9:] <= 1.25 * counts[9:]).all()
    assert (np.diff(pads) >= 0).all() and (pads[:9] == counts[:9]).all()


def test_accumulators_merge_and_loss():
    M, Y, t, w, E = _block(1)
    whole = row_equations(M.indptr, M.indices, Y, t, extra=E, weights=w)
    # split every row's entries in two halves by column: the partial equations add up
    keep = M.indices < 12
    parts = NormalEquations.zeros(M.shape[0], Y.shape[1] + 2)
    for mask in (keep, ~keep):
        counts = np.add.reduceat(np.append(mask, False).astype(int), M.indptr[:-1]) * (np.diff(M.indptr) > 0)
        indptr = np.r_[0, np.cumsum(counts)]
        parts.add(indptr, M.indices[mask], Y, t[mask], extra=E[mask], weights=w[mask])
    np.testing.assert_allclose(parts.grams, whole.grams, atol=1e-12)
    np.testing.assert_allclose(parts.rhs, whole.rhs, atol=1e-12)
    np.testing.assert_allclose(parts.tt, whole.tt, atol=1e-12)
    X = np.random.default_rng(2).normal(size=(M.shape[0], Y.shape[1] + 2))
    direct = [np.sum(w[s:e] * (t[s:e] - np.hstack([Y[M.indices[s:e]], E[s:e]]) @ X[i]) ** 2)
              for i, (s, e) in enumerate(zip(M.indptr[:-1], M.indptr[1:]))]
    np.testing.assert_allclose(whole.loss(X), direct, atol=1e-9)


def _ridge_reference(grams, rhs, lam):
    return np.array([np.linalg.solve(G + np.diag(lam_i), b) for G, b, lam_i in zip(grams, rhs, lam)])


def test_cholesky_solver_is_the_ridge_solution_and_handles_empty_rows():
    M, Y, t, w, E = _block(3)
    eq = row_equations(M.indptr, M.indices, Y, t, extra=E, weights=w)
    lam = np.random.default_rng(4).random((M.shape[0], 6)) + 0.1
    np.testing.assert_allclose(solve(eq.grams, eq.rhs, lam), _ridge_reference(eq.grams, eq.rhs, lam), atol=1e-10)
    # no ridge: the empty last row has a zero Gram and gets 0, the others are the least-squares solutions
    X = solve(eq.grams, eq.rhs, 0.0)
    np.testing.assert_array_equal(X[-1], 0.0)
    np.testing.assert_allclose(X[-2], np.linalg.solve(eq.grams[-2], eq.rhs[-2]), atol=1e-9)


def _kkt(G, b, x, lam, free, tol=1e-8):
    """KKT of min xᵀ(G+Λ)x − 2bᵀx s.t. x ≥ 0 off ``free``: gradient 0 on free/positive, ≥ 0 at zero."""
    grad = 2 * ((G + np.diag(lam)) @ x - b)
    scale = tol * (1 + np.abs(b).max())
    active = ~free & (x <= 0)
    assert (x[~free] >= 0).all()
    assert np.abs(grad[~active]).max(initial=0) <= scale * 10
    assert (grad[active] >= -scale * 10).all()


def test_nnls_solver_satisfies_kkt_with_free_biases():
    M, Y, t, w, E = _block(5)
    eq = row_equations(M.indptr, M.indices, Y, t - 1.0, extra=E, weights=w)
    free = np.array([False] * 4 + [True, True])
    lam = np.full(6, 0.05)
    X = solve(eq.grams, eq.rhs, lam, nonnegative=True, free=free)
    assert (X[:, :4] >= 0).all() and (X[:, 4:] < 0).any()  # free variables do go negative
    for i in range(M.shape[0] - 1):
        _kkt(eq.grams[i], eq.rhs[i], X[i], lam, free)
    # without free variables it is scipy's NNLS on the augmented least-squares system
    import scipy.optimize

    s, e = M.indptr[0], M.indptr[1]
    A = np.vstack([np.hstack([Y[M.indices[s:e]], E[s:e]]) * np.sqrt(w[s:e, None]), np.sqrt(0.05) * np.eye(6)])
    ref, _ = scipy.optimize.nnls(A, np.r_[np.sqrt(w[s:e]) * (t[s:e] - 1.0), np.zeros(6)])
    np.testing.assert_allclose(solve(eq.grams[:1], eq.rhs[:1], lam, nonnegative=True)[0], ref, atol=1e-9)


@pytest.mark.parametrize("scaled", [False, True])
def test_solve_rows_chunks_and_regularization(scaled):
    M, Y, t, w, E = _block(6, rows=40)
    reg = np.array([0.3] * 4 + [0.01, 0.02])
    X, loss, penalty = solve_rows(M.indptr, M.indices, Y, t, reg, extra=E, weights=w, scale_by_weight=scaled,
                                  rows_per_chunk=7)
    eq = row_equations(M.indptr, M.indices, Y, t, extra=E, weights=w)
    lam = reg[None, :] * (eq.weight[:, None] if scaled else 1.0)
    ref = _ridge_reference(eq.grams, eq.rhs, lam + (lam == 0) * (np.einsum("bii->bi", eq.grams) == 0))
    np.testing.assert_allclose(X, ref, atol=1e-10)
    np.testing.assert_allclose(loss, eq.loss(ref), atol=1e-9)
    np.testing.assert_allclose(penalty, (lam * ref**2).sum(axis=1), atol=1e-12)


def test_lam_shapes_are_checked():
    with pytest.raises(ValueError, match="lam must be a scalar or have shape"):
        solve(np.zeros((3, 2, 2)), np.zeros((3, 2)), np.ones(5))
