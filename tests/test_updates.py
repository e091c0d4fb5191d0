"""Update rules, loss pieces and the loop, against plain dense references."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import sparknmf
import sparknmf.decomposition.factorize
from sparknmf import ConvergenceWarning, ModelFitError, nmf
from sparknmf.kernels.updates import UPDATE_RULES

ALGORITHMS = sorted(UPDATE_RULES)


def _reference_objective(V, W, H, algorithm, eta=0.0, beta=0.01):
    """Slow dense loss, written from the definitions (never from the pieces)."""
    V = V.toarray() if sp.issparse(V) else V
    WH = W @ H
    if algorithm == "brunet":
        mask = V > 0
        return float(np.sum(V[mask] * np.log(V[mask] / WH[mask])) - V.sum() + WH.sum())
    loss = 0.5 * np.sum((V - WH) ** 2)
    if algorithm == "snmf/r":
        loss += 0.5 * (eta**2 * np.sum(W**2) + beta * np.sum(H.sum(axis=0) ** 2))
    elif algorithm == "snmf/l":
        loss += 0.5 * (eta**2 * np.sum(H**2) + beta * np.sum(W.sum(axis=1) ** 2))
    return float(loss)


def _data(kind="dense", seed=0):
    rng = np.random.default_rng(seed)
    V = rng.random((30, 25)) * (rng.random((30, 25)) < 0.6)
    return sp.csr_matrix(V) if kind == "sparse" else V


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_objective_non_increasing(algorithm, kind):
    fit = nmf(_data(kind), 4, algorithm=algorithm, max_iter=30, tol=0, seed=3)
    h = np.array(fit.history)
    assert len(h) == 31
    assert np.all(np.diff(h) <= 1e-10 * np.abs(h[:-1])), np.diff(h).max()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("init", ["random", "nndsvda"])
def test_reported_objective_matches_dense_reference(algorithm, init):
    V = _data()
    fit = nmf(V, 3, algorithm=algorithm, init=init, max_iter=7, tol=0, seed=1, eta=0.5)
    assert (fit.W >= 0).all() and (fit.H >= 0).all()
    ref = _reference_objective(V, fit.W, fit.H, algorithm, eta=0.5)
    assert fit.objective == pytest.approx(ref, rel=1e-9)


def test_objective_history_matches_each_state():
    V = _data("sparse")
    full = nmf(V, 3, algorithm="hals", max_iter=5, tol=0)
    for t in range(6):
        part = nmf(V, 3, algorithm="hals", max_iter=t, tol=0)
        assert part.history == pytest.approx(full.history[: t + 1], rel=1e-12)
        assert _reference_objective(V, part.W, part.H, "hals") == pytest.approx(full.history[t], rel=1e-9)


@pytest.mark.parametrize("algorithm", ["bpp", "hals"])
def test_planted_factorization_recovered(algorithm, planted):
    V, _, _ = planted
    fit = nmf(V, 4, algorithm=algorithm, max_iter=2000, tol=1e-12, init="nndsvda")
    assert np.linalg.norm(V - fit.W @ fit.H) / np.linalg.norm(V) < 1e-4


@pytest.mark.parametrize("algorithm", ["lee", "brunet", "snmf/r", "snmf/l"])
def test_other_rules_fit_planted_matrix_well(algorithm, planted):
    V, _, _ = planted
    fit = nmf(V, 4, algorithm=algorithm, max_iter=300, tol=0, beta=1e-4, eta=1e-3)
    assert np.linalg.norm(V - fit.W @ fit.H) / np.linalg.norm(V) < 0.05


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_dense_and_sparse_agree(algorithm):
    V = _data("dense")
    a = nmf(V, 3, algorithm=algorithm, max_iter=15, tol=0, seed=5)
    b = nmf(sp.csr_matrix(V), 3, algorithm=algorithm, max_iter=15, tol=0, seed=5)
    np.testing.assert_allclose(a.W, b.W, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.H, b.H, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("algorithm", ["bpp", "hals", "lee"])
def test_float32_close_to_float64(algorithm):
    V = _data()
    a = nmf(V, 3, algorithm=algorithm, max_iter=20, tol=0)
    b = nmf(V, 3, algorithm=algorithm, max_iter=20, tol=0, dtype="float32")
    assert b.W.dtype == np.float32
    assert b.objective == pytest.approx(a.objective, rel=1e-3)


def test_snmf_r_makes_h_sparser_than_bpp():
    rng = np.random.default_rng(0)
    V = rng.random((40, 60))

    def hoyer(x):
        n = x.size
        return (np.sqrt(n) - np.abs(x).sum() / np.linalg.norm(x)) / (np.sqrt(n) - 1)

    plain = nmf(V, 5, algorithm="bpp", max_iter=100, seed=2)
    sparse = nmf(V, 5, algorithm="snmf/r", beta=0.5, max_iter=100, seed=2)
    assert np.mean([hoyer(c) for c in sparse.H.T]) > np.mean([hoyer(c) for c in plain.H.T])
    sparse_l = nmf(V, 5, algorithm="snmf/l", beta=0.5, max_iter=100, seed=2)
    assert np.mean([hoyer(r) for r in sparse_l.W]) > np.mean([hoyer(r) for r in plain.W])


@pytest.mark.parametrize("variant", ["nndsvd", "nndsvda", "nndsvdar"])
def test_nndsvd_matches_scikit_learn(variant):
    from sklearn.decomposition._nmf import _initialize_nmf

    # distinct singular values, so that any accurate top-4 SVD gives the same NNDSVD
    rng = np.random.default_rng(0)
    V = rng.random((40, 4)) @ np.diag([8.0, 4.0, 2.0, 1.0]) @ rng.random((4, 30)) + 1e-3 * rng.random((40, 30))
    fit = nmf(V, 4, init=variant, max_iter=0, tol=0)
    W, H = _initialize_nmf(V, 4, init=variant, random_state=0)
    if variant == "nndsvdar":  # random fill differs; the SVD part must agree
        svd_part = nmf(V, 4, init="nndsvd", max_iter=0, tol=0).W > 0
        np.testing.assert_allclose(fit.W[svd_part], W[svd_part], rtol=1e-6)
        fill = fit.W[~svd_part]
        assert fill.size and (fill > 0).all() and (fill <= V.mean() / 100).all()
    else:
        np.testing.assert_allclose(fit.W, W, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(fit.H, H, rtol=1e-6, atol=1e-9)


def test_same_seed_same_factors_different_seed_differs():
    V = _data()
    a, b = nmf(V, 3, seed=11, max_iter=5), nmf(V, 3, seed=11, max_iter=5)
    c = nmf(V, 3, seed=12, max_iter=5)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.H, b.H)
    assert not np.allclose(a.W, c.W)


def test_custom_init_is_used_and_checked():
    V = _data()
    W0, H0 = np.full((30, 2), 0.5), np.full((2, 25), 0.5)
    fit = nmf(V, 2, init="custom", W0=W0, H0=H0, max_iter=0)
    np.testing.assert_array_equal(fit.W, W0)
    with pytest.raises(ValueError, match="W0 must have shape"):
        nmf(V, 2, init="custom", W0=W0[:3], H0=H0)
    with pytest.raises(ValueError, match="needs both W0"):
        nmf(V, 2, init="custom", W0=W0)
    with pytest.warns(UserWarning, match="ignored unless init='custom'"):
        nmf(V, 2, init="random", W0=W0, H0=H0, max_iter=1)
    fit = nmf(V, 2, W0=W0, H0=H0, max_iter=0)  # init="auto" (the default) with W0 and H0: they are the start
    assert fit.init == "custom"
    np.testing.assert_array_equal(fit.W, W0)
    with pytest.raises(ValueError, match="needs both W0"):
        nmf(V, 2, H0=H0)


def test_stopping_rules_and_callback():
    V = _data()
    seen = []
    with pytest.warns(ConvergenceWarning, match="maxIter=3"):
        fit = nmf(V, 3, max_iter=3, tol=1e-12, callback=lambda i, t, f: seen.append((i, f)))
    assert fit.stop_reason == "max_iter" and fit.n_iter == 3 and not fit.converged
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    assert [f for _, f in seen] == fit.history
    fit = nmf(V, 3, max_iter=5000, tol=1e-3)
    assert fit.converged and fit.stop_reason == "tol" and fit.n_iter < 5000
    rel = abs(fit.history[-2] - fit.history[-1]) / fit.history[-2]
    assert rel < 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = nmf(V, 3, max_iter=10**6, tol=0, time_limit=0.2)
    assert fit.stop_reason == "time_limit" and fit.n_iter < 10**6


def test_nan_objective_raises_model_fit_error():
    V = np.full((5, 4), 1e200)
    with pytest.raises(ModelFitError, match="iteration 0.*smaller k"):
        nmf(V, 2, init="random", max_iter=3)
    with pytest.raises(FloatingPointError, match="SVD of an NNDSVD start overflowed.*rescale V"):
        nmf(V, 2, max_iter=3)  # init="auto": nndsvda


def test_algorithms_listed_and_unknown_rejected():
    assert sparknmf.ALGORITHMS == ("bpp", "brunet", "hals", "lee", "snmf/l", "snmf/r")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        nmf(_data(), 2, algorithm="als")
    with pytest.raises(ValueError, match="init must be one of"):
        nmf(_data(), 2, init="kmeans")


def test_checkpoint_resume_gives_uninterrupted_result(tmp_path):
    V = _data("sparse")
    full = nmf(V, 3, max_iter=12, tol=0)
    fac = sparknmf.decomposition.factorize
    from sparknmf.engine.local import LocalMatrix
    from sparknmf.engine.validation import as_matrix

    backend = LocalMatrix(as_matrix(V))
    # a run that dies after 7 iterations: the checkpoint holds iteration 6 (interval 3)
    fac.factorize(backend, 3, max_iter=7, tol=0, checkpoint_dir=tmp_path, checkpoint_interval=3)
    resumed = fac.factorize(backend, 3, max_iter=12, tol=0, checkpoint_dir=tmp_path, checkpoint_interval=3,
                            resume=True)
    np.testing.assert_array_equal(resumed.W, full.W)
    np.testing.assert_array_equal(resumed.H, full.H)
    assert resumed.history == full.history and resumed.n_iter == 12
    with pytest.raises(ValueError, match=r"different problem \(differs in \['k'\]\)"):
        fac.factorize(backend, 2, max_iter=12, checkpoint_dir=tmp_path, resume=True)
    (tmp_path / "checkpoint.npz").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="not a readable sparknmf checkpoint"):
        fac.factorize(backend, 3, max_iter=12, checkpoint_dir=tmp_path, resume=True)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_all_zero_rows_and_columns_as_documented(algorithm):
    """Zero rows of V get zero rows of W (the floor ε for hals and multiplicative rules); same for H."""
    V = _data()
    V[3] = 0
    V[:, 5] = 0
    fit = nmf(V, 3, algorithm=algorithm, max_iter=50, tol=0)
    floor = 1e-10 if algorithm in ("lee", "brunet", "hals") else 0.0
    assert np.all(fit.W[3] <= floor) and np.all(fit.H[:, 5] <= floor)
    assert np.isfinite(fit.objective)


def test_hals_rows_do_not_depend_on_their_block_issue_18():
    """Regression (issue 18, hals as the default): the sweeps stopped on the change of the whole block, so a row's
    update depended on the rows sharing its block (0.1 apart between one block and two); each row now stops on
    its own change."""
    from sparknmf.kernels.updates import RuleParams, _update_hals

    params = RuleParams(sweeps={"W": 5, "H": 5})
    for seed in range(50):
        rng = np.random.default_rng(seed)
        Y, X = rng.random((18, 3)), rng.random((24, 3))
        V = rng.random((24, 18)) * (rng.random((24, 18)) < 0.7)
        gram, cross = Y.T @ Y, V @ Y
        whole = _update_hals(gram=gram, cross=cross, X=X, side="W", params=params)
        split = np.vstack([_update_hals(gram=gram, cross=cross[rows], X=X[rows], side="W", params=params)
                           for rows in (slice(0, 7), slice(7, 24))])
        np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-14)
