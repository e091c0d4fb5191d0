"""Weighted NMF (per-entry uncertainties, missing entries): oracles, properties, local = Spark, bad input."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import nnls

from sparknmf import NMF, InvalidInputError, NMFModel, nmf
from sparknmf.engine.validation import as_weighted
from sparknmf.kernels.updates import WEIGHTED_RULES, RuleParams, half_step_block
from sparknmf.kernels.weighted import WeightedBlock

pytestmark = pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")


def _data(seed=0, shape=(30, 20)):
    rng = np.random.default_rng(seed)
    return rng.random(shape), 0.5 + rng.random(shape)


def _weighted_loss(V, S, W, H, reg=0.0):
    """½ Σ ((v − WH)/s)² + ½ reg (‖W‖² + ‖H‖²), summed over the finite s (brute force)."""
    R = np.where(np.isfinite(S), (V - W @ H) / S, 0.0)
    return 0.5 * float((R ** 2).sum()) + 0.5 * reg * float((W ** 2).sum() + (H ** 2).sum())


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("sparse", [False, True])
def test_weighted_anls_half_step_matches_scipy_nnls_per_row(sparse):
    rng = np.random.default_rng(3)
    V = rng.random((12, 9))
    w = rng.random(V.shape) * (rng.random(V.shape) < 0.7)
    block = WeightedBlock.from_coordinates(*np.nonzero(w), V[w > 0], w[w > 0], V.shape) if sparse \
        else WeightedBlock.dense(V, w)
    Y, X = rng.random((9, 3)), rng.random((12, 3))
    X_new, _, _ = half_step_block(WEIGHTED_RULES["bpp"], RuleParams(), "W", Y.T @ Y, block, X, Y)
    for i in range(V.shape[0]):
        root = np.sqrt(w[i])
        expected, _ = nnls(root[:, None] * Y, root * V[i])
        np.testing.assert_allclose(X_new[i], expected, atol=1e-10)


def test_weighted_anls_with_ridge_matches_augmented_nnls():
    rng = np.random.default_rng(4)
    V, w = rng.random((8, 6)), rng.random((8, 6))
    Y, X, lam = rng.random((6, 2)), rng.random((8, 2)), 0.3
    X_new, _, _ = half_step_block(WEIGHTED_RULES["bpp"], RuleParams(lam=lam), "W", Y.T @ Y,
                                  WeightedBlock.dense(V, w), X, Y)
    for i in range(8):
        A = np.vstack([np.sqrt(w[i])[:, None] * Y, np.sqrt(lam) * np.eye(2)])
        expected, _ = nnls(A, np.concatenate([np.sqrt(w[i]) * V[i], np.zeros(2)]))
        np.testing.assert_allclose(X_new[i], expected, atol=1e-10)


# ---------------------------------------------------------------- the loop
@pytest.mark.parametrize("algorithm", ["bpp", "lee"])
def test_all_ones_weights_give_the_unweighted_fit(algorithm):
    V, _ = _data()
    plain = nmf(V, 4, algorithm=algorithm, init="random", seed=5, max_iter=40, tol=0)
    ones = nmf(V, 4, algorithm=algorithm, init="random", seed=5, max_iter=40, tol=0, weights=np.ones(V.shape))
    np.testing.assert_allclose(ones.W, plain.W, atol=1e-8)
    np.testing.assert_allclose(ones.H, plain.H, atol=1e-8)
    assert ones.history == pytest.approx(plain.history, rel=1e-8)


@pytest.mark.parametrize("algorithm", ["bpp", "lee"])
def test_weights_scaled_by_a_constant_give_the_same_factors(algorithm):
    V, S = _data(1)
    base = nmf(V, 3, algorithm=algorithm, seed=2, max_iter=30, tol=0, uncertainty=S)
    scaled = nmf(V, 3, algorithm=algorithm, seed=2, max_iter=30, tol=0, uncertainty=S * 7.0)
    np.testing.assert_allclose(scaled.W, base.W, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(scaled.H, base.H, rtol=1e-7, atol=1e-9)
    assert scaled.objective == pytest.approx(base.objective / 49.0, rel=1e-8)


@pytest.mark.parametrize("algorithm", ["bpp", "lee"])
@pytest.mark.parametrize("reg", [0.0, 0.5])
def test_objective_is_the_weighted_loss_and_never_increases(algorithm, reg):
    V, S = _data(2)
    S[np.random.default_rng(0).random(V.shape) < 0.2] = np.inf  # some entries do not count
    fit = nmf(V, 4, algorithm=algorithm, seed=1, max_iter=60, tol=0, uncertainty=S, reg=reg)
    assert fit.objective == pytest.approx(_weighted_loss(V, S, fit.W, fit.H, reg), rel=1e-10)
    history = np.array(fit.history)
    assert (np.diff(history) <= 1e-10 * history[0]).all()
    assert (fit.W >= 0).all() and (fit.H >= 0).all()


def test_planted_matrix_with_half_the_entries_missing_is_recovered():
    rng = np.random.default_rng(0)
    V = rng.random((100, 3)) @ rng.random((3, 80))
    observed = rng.random(V.shape) < 0.5
    fit = nmf(np.where(observed, V, np.nan), 3, missing="missing", max_iter=500, tol=1e-14)
    filled = fit.W @ fit.H
    error = np.linalg.norm((filled - V)[~observed]) / np.linalg.norm(V[~observed])
    assert error < 1e-3


def test_entries_with_huge_uncertainty_barely_influence_the_fit():
    rng = np.random.default_rng(6)
    V = rng.random((40, 3)) @ rng.random((3, 30)) + 0.01 * rng.random((40, 30))
    outliers = rng.random(V.shape) < 0.1
    corrupted = np.where(outliers, 50.0, V)
    S = np.where(outliers, 1e8, 1.0)
    huge = nmf(corrupted, 3, uncertainty=S, seed=3, max_iter=100, tol=0)
    without = nmf(np.where(outliers, np.nan, V), 3, missing="missing", seed=3, max_iter=100, tol=0)
    np.testing.assert_allclose(huge.W @ huge.H, without.W @ without.H, atol=1e-6)
    plain = nmf(corrupted, 3, seed=3, max_iter=100, tol=0)
    assert np.abs(plain.W @ plain.H - V)[~outliers].max() > 1.0  # the outliers would have dominated


def test_mostly_observed_sparse_input_is_stored_dense_with_zero_weights():
    assert as_weighted(sp.random(40, 30, density=0.1, random_state=2, format="csr"), missing="missing").sparse
    V = sp.random(20, 10, density=0.8, random_state=1, format="csr")
    block = as_weighted(V, missing="missing")
    assert not block.sparse
    np.testing.assert_array_equal(block.weights, (V.toarray() != 0).astype(float))
    as_nan = np.where(V.toarray() != 0, V.toarray(), np.nan)
    a = nmf(V, 3, missing="missing", max_iter=5, tol=0, seed=4)
    b = nmf(as_nan, 3, missing="missing", max_iter=5, tol=0, seed=4)
    np.testing.assert_allclose(a.W, b.W, atol=1e-12)


def test_sparse_input_with_missing_keeps_explicit_zeros_as_observed():
    V = sp.csr_matrix((np.array([0.0, 2.0, 1.0]), (np.array([0, 1, 2]), np.array([0, 1, 2]))), shape=(3, 3))
    block = as_weighted(V, missing="missing")
    rows, cols, values, weights = block.entries()
    counted = weights > 0
    assert sorted(zip(rows[counted].tolist(), cols[counted].tolist())) == [(0, 0), (1, 1), (2, 2)]
    assert (weights[counted] == 1).all()


def test_rows_without_observed_entries_get_zero_factors_with_a_warning():
    V = np.random.default_rng(1).random((6, 5))
    V[2] = np.nan
    with pytest.warns(UserWarning, match="1 rows and 0 columns have no observed entry"):
        fit = nmf(V, 2, missing="missing", max_iter=10, tol=0)
    assert (fit.W[2] == 0).all() and np.isfinite(fit.W).all()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, message", [
    ({"uncertainty": -np.ones((4, 3))}, "zero or negative uncertainty"),
    ({"uncertainty": np.zeros((4, 3))}, "zero or negative uncertainty"),
    ({"uncertainty": np.full((4, 3), np.nan)}, "NaN uncertainty"),
    ({"weights": np.full((4, 3), np.nan)}, "NaN or infinite weight"),
    ({"weights": -np.ones((4, 3))}, "negative weight"),
    ({"weights": np.ones((3, 4))}, r"weights have shape \(3, 4\), V has shape \(4, 3\)"),
    ({"weights": np.zeros((4, 3))}, "no entry with a positive weight"),
    ({"weights": sp.csr_matrix(np.ones((4, 3)))}, "give the weights as a dense array"),
])
def test_bad_weights_are_rejected_naming_the_problem(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        nmf(np.ones((4, 3)), 2, **kwargs)


def test_weights_for_entries_not_in_v_are_rejected():
    V = sp.csr_matrix(np.eye(4))
    with pytest.raises(InvalidInputError, match=r"weights given for 12 entries not in V, e\.g\. at \(0, 1\)"):
        nmf(V, 2, weights=np.ones((4, 4)), missing="missing")
    # NaN weights / infinite uncertainties at absent entries mean "not given"
    nmf(np.where(np.eye(4) > 0, 1.0, np.nan) + np.eye(4), 2, missing="missing",
        uncertainty=np.where(np.eye(4) > 0, 1.0, np.inf), max_iter=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": np.ones((4, 3)), "uncertainty": np.ones((4, 3))}, "not both"),
    ({"weights": np.ones((4, 3)), "algorithm": "hals"}, "does not take weights"),
    ({"reg": 0.1}, "applies to weighted NMF only"),
    ({"missing": "ignore"}, "missing must be one of"),
    ({"missing": "missing", "dtype": "float32"}, "float64"),
    ({"missing": "missing", "nrun": 3}, "does not take weights"),
])
def test_bad_weighted_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nmf(np.ones((4, 3)), 2, **kwargs)


# ---------------------------------------------------------------- Estimator, Spark, completion
def _coordinates(spark, V, S, observed):
    rows, cols = np.nonzero(observed)
    data = [(f"r{i:02d}", int(j), float(V[i, j]), float(S[i, j])) for i, j in zip(rows, cols)]
    return spark.createDataFrame(data, "row string, col long, value double, s double")


@pytest.mark.spark
@pytest.mark.parametrize("algorithm, missing, fill", [("bpp", "missing", 0.15), ("lee", "missing", 0.7),
                                                     ("bpp", "zero", 0.6)])
def test_spark_equals_local(spark, algorithm, missing, fill):
    """Sparse (fill < ¼) and dense blocks of observed entries, and absent entries as zeros."""
    V, S = _data(4, (16, 12))
    observed = np.random.default_rng(1).random(V.shape) < fill
    observed[np.arange(16), np.arange(16) % 12] = True  # every row and column has an entry (an id)
    frame = _coordinates(spark, V, S, observed)
    estimator = NMF(k=3, algorithm=algorithm, maxIter=3, tol=0.0, seed=2, uncertaintyCol="s", missing=missing,
                    regParam=0.01, numRowBlocks=2, numColBlocks=2)
    on_spark = estimator.fit(frame)
    # the same data on the driver: absent entries are missing, or zeros of weight 1
    values = np.where(observed, V, np.nan if missing == "missing" else 0.0)
    absent = np.inf if missing == "missing" else 1.0
    local = estimator.copy({estimator.uncertaintyCol: ""}).fitWith(values, uncertainty=np.where(observed, S, absent))
    np.testing.assert_allclose(on_spark.W, local.W, atol=1e-9)
    np.testing.assert_allclose(on_spark.H, local.H, atol=1e-9)
    assert on_spark.history == pytest.approx(local.history, rel=1e-9)


def test_complete_returns_the_fitted_values_at_index_positions():
    rng = np.random.default_rng(2)
    V = rng.random((12, 2)) @ rng.random((2, 10))
    observed = rng.random(V.shape) < 0.6
    model = NMF(k=2, missing="missing", maxIter=300, tol=1e-14).fit(np.where(observed, V, np.nan))
    rows, cols = np.nonzero(~observed)
    np.testing.assert_allclose(model.complete((rows, cols)), V[rows, cols], rtol=1e-4)
    np.testing.assert_allclose(model.complete()[rows, cols], model.complete((rows, cols)))
    with pytest.raises(ValueError, match="pass the positions"):
        model.complete(limit=10)
    with pytest.raises(IndexError, match=r"row indices must be in \[0, 12\)"):
        model.complete((np.array([12]), np.array([0])))


@pytest.mark.spark
def test_complete_by_ids_on_spark_and_after_load(spark, tmp_path):
    V, S = _data(5, (10, 8))
    observed = np.random.default_rng(3).random(V.shape) < 0.6
    observed[:, 0] = observed[0] = True
    model = NMF(k=2, missing="missing", uncertaintyCol="s", maxIter=2).fit(_coordinates(spark, V, S, observed))
    rows, cols = np.nonzero(~observed)
    asked = spark.createDataFrame([(f"r{i:02d}", int(j)) for i, j in zip(rows, cols)] + [("nobody", 0), ("r00", 99)],
                                  "row string, col long")
    out = model.complete(asked).toArrow().to_pylist()
    got = np.array([r["prediction"] for r in out[:-2]])
    np.testing.assert_allclose(got, (model.W @ model.H)[rows, cols], rtol=1e-12)
    assert np.isnan(out[-1]["prediction"]) and np.isnan(out[-2]["prediction"])
    model.write().overwrite().save(str(tmp_path / "m"))
    loaded = NMFModel.load(str(tmp_path / "m"))
    reloaded = np.array([r["prediction"] for r in loaded.complete(asked).toArrow().to_pylist()[:-2]])
    np.testing.assert_allclose(reloaded, got, rtol=1e-12)


@pytest.mark.spark
def test_spark_bad_weights_are_rejected_before_the_fit(spark):
    frame = spark.createDataFrame([(0, 0, 1.0, -2.0), (1, 1, 2.0, 1.0)], "row long, col long, value double, w double")
    with pytest.raises(InvalidInputError, match=r"1 entries with a negative weight, e\.g\. -2\.0 at \(row=0, col=0\)"):
        NMF(k=1, weightCol="w").fit(frame)
    with pytest.raises(InvalidInputError, match=r"unknown column\(s\) \['s'\]"):
        NMF(k=1, uncertaintyCol="s").fit(frame)
    with pytest.raises(ValueError, match="not both"):
        NMF(k=1, weightCol="w", uncertaintyCol="w").fit(frame)
    with pytest.raises(ValueError, match="fitWith"):
        NMF(k=1, weightCol="w").fit(np.ones((2, 2)))
    vectors = spark.createDataFrame([([1.0, 2.0],)], "features array<double>")
    with pytest.raises(InvalidInputError, match="need coordinate input"):
        NMF(k=1, missing="missing").fit(vectors)
    dup = spark.createDataFrame([(0, 0, 1.0), (0, 0, 2.0)], "row long, col long, value double")
    with pytest.raises(InvalidInputError, match="duplicate coordinate"):
        NMF(k=1, missing="missing").fit(dup)
