"""Issue 22, item 5: scikit-learn habits -- fit_transform, sklearn's attributes, new samples given as rows.

scikit-learn and scipy are the oracles: sklearn's own ``_beta_divergence`` (what its
``reconstruction_err_`` is) on the same W and H, ``scipy.optimize.nnls`` row by row,
and sklearn's ``NMF.transform`` against the same components.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import nnls
from scipy.special import xlogy
from sklearn.decomposition import NMF as SkNMF
from sklearn.decomposition._nmf import _beta_divergence

from sparknmf import NMF, MultiStartNMF, NMFModel
from sparknmf.errors import ConvergenceWarning

pytestmark = pytest.mark.filterwarnings("ignore::sparknmf.errors.ConvergenceWarning")  # short fits on purpose

def _planted(n=14, m=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, k)) @ rng.random((k, m)) + 0.05 * rng.random((n, m))


def _fit_transform(X, **params):
    est = NMF(**{"k": 3, "tol": 1e-10, "maxIter": 300, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est, est.fit_transform(X)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("algorithm, beta", [("bpp", 2), ("hals", 2), ("lee", 2), ("snmf/r", 2), ("brunet", 1)])
def test_reconstruction_err_is_sklearns_on_the_same_factors(algorithm, beta, sparse):
    X = _planted()
    est, W = _fit_transform(sp.csr_matrix(X) if sparse else X, algorithm=algorithm, maxIter=40)
    H = est.components_
    oracle = _beta_divergence(X, W, H, beta, square_root=True)
    assert est.reconstruction_err_ == pytest.approx(oracle, rel=1e-7)
    # and the closed forms: ‖X − WH‖_F, or sqrt(2 D_KL(X‖WH)) (penalties of snmf/r are not in it)
    WH = W @ H
    closed = np.linalg.norm(X - WH) if beta == 2 else np.sqrt(2 * (xlogy(X, X / WH) - X + WH).sum())
    assert est.reconstruction_err_ == pytest.approx(closed, rel=1e-7)


def test_fit_transform_is_fit_then_W_and_keeps_the_model():
    X = _planted(seed=1)
    est, W = _fit_transform(X, algorithm="hals", seed=4)
    model = NMF(k=3, tol=1e-10, maxIter=300, algorithm="hals", seed=4).fit(X)
    np.testing.assert_array_equal(W, model.W)
    np.testing.assert_array_equal(est.components_, model.H)
    assert isinstance(est.model_, NMFModel) and est.n_iter_ == model.nIter == model.n_iter_
    assert (model.n_components_, model.n_features_in_) == (3, X.shape[1])
    np.testing.assert_allclose(model.inverse_transform(W), W @ model.H)


def test_fit_transform_takes_sklearns_custom_start():
    X = _planted(seed=2)
    rng = np.random.default_rng(9)
    W0, H0 = rng.random((X.shape[0], 3)), rng.random((3, X.shape[1]))
    est = NMF(k=3, algorithm="lee", maxIter=5, tol=1e-10, init="custom")
    reference = NMF(k=3, algorithm="lee", maxIter=5, tol=1e-10, init="custom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = est.fit_transform(X, W=W0, H=H0)
        expected = reference.fitWith(X, W0=W0, H0=H0)
    np.testing.assert_array_equal(W, expected.W)
    assert est.model_.result.init == "custom"


def test_transform_rows_is_nnls_against_H():
    """sklearn's orientation: rows of X_new (p×m) -> W_new (p×k); scipy's nnls per row is the oracle."""
    X = _planted(seed=3)
    _, W = _fit_transform(X, algorithm="bpp")
    model = NMF(k=3, algorithm="bpp", tol=1e-10, maxIter=300).fit(X)
    X_new = np.random.default_rng(5).random((6, X.shape[1])) * 2
    X_new[0, :] = 0.0  # a zero sample has zero coefficients
    W_new = model.transform(X_new, samples="rows")
    assert W_new.shape == (6, 3)
    expected = np.array([nnls(model.H.T, x)[0] for x in X_new])
    np.testing.assert_allclose(W_new, expected, atol=1e-10)
    np.testing.assert_array_equal(W_new[0], 0.0)
    np.testing.assert_allclose(model.transform(sp.csr_matrix(X_new), samples="rows"), W_new, atol=1e-12)
    # sklearn's NMF.transform with the same components converges to the same NNLS solution
    sk = SkNMF(n_components=3, solver="cd", tol=1e-12, max_iter=5000, init="random", random_state=0).fit(X)
    sk.components_ = model.H.copy()
    np.testing.assert_allclose(sk.transform(X_new), W_new, atol=1e-6)


def test_transform_rows_of_the_fitted_data_gives_back_W():
    """ANLS returns W = argmin_{W ≥ 0} ‖X − WH‖ for the returned H, so transforming X itself gives W."""
    X = _planted(seed=6)
    model = NMF(k=3, algorithm="bpp", tol=1e-10, maxIter=300).fit(X)
    np.testing.assert_allclose(model.transform(X, samples="rows"), model.W, atol=1e-9)
    # the default orientation is unchanged: columns of V -> H_new (k × s)
    assert model.transform(X[:, :4]).shape == (3, 4)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m: m.transform(np.ones((2, 3)), samples="rows"), ValueError,
         r"X_new must have 10 columns \(features, the columns of the fitted V\), got 3"),
        (lambda m: m.transform(np.ones((2, 10)), samples="diagonal"), ValueError,
         r"invalid samples='diagonal'; it must be one of \['columns', 'rows'\]"),
        (lambda m: m.transform(-np.ones((2, 10)), samples="rows"), Exception, "negative entries"),
        (lambda m: m.inverse_transform(np.ones((2, 4))), ValueError, r"W must have shape \(p, 3\), got \(2, 4\)"),
    ],
)
def test_sklearn_methods_reject_bad_input(call, error, message):
    model = NMF(k=3, maxIter=20, tol=1e-3).fit(_planted())
    with pytest.raises(error, match=message):
        call(model)


def test_estimator_attributes_before_fit_and_dataframes(spark):
    est = NMF(k=2)
    assert not hasattr(est, "components_")
    with pytest.raises(AttributeError, match="no fitted model: call fit_transform first"):
        est.reconstruction_err_
    frame = spark.createDataFrame([(0, 0, 1.0), (1, 1, 2.0), (0, 1, 1.0)], "row long, col long, value double")
    with pytest.raises(ValueError, match="for a DataFrame use fit"):
        est.fit_transform(frame)
    model = NMF(k=1, maxIter=5).fit(np.ones((2, 2)))  # refused before any Spark job
    with pytest.raises(ValueError, match="samples='rows' is for numpy / scipy input"):
        model.transform(frame, samples="rows")


def test_reconstruction_err_survives_save_and_load(spark, tmp_path):
    X = _planted(seed=7)
    model = NMF(k=3, algorithm="brunet", maxIter=30, tol=1e-3).fit(X)
    model.save(str(tmp_path / "m"))
    loaded = NMFModel.load(str(tmp_path / "m"))
    assert loaded.reconstruction_err_ == model.reconstruction_err_


def test_multistart_fit_transform_returns_the_best_runs_W():
    X = _planted(seed=8)
    est = MultiStartNMF(k=3, nrun=3, runMode="local", maxIter=50, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = est.fit_transform(X)
    np.testing.assert_array_equal(W, est.model_.runs.best.W)
    assert est.reconstruction_err_ == pytest.approx(_beta_divergence(X, W, est.components_, 2, square_root=True))
