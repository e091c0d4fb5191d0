"""MaskedALS(implicitPrefs=True) on Spark (issue 17): brute-force oracles over all pairs, Spark ≡ local, Params,
bad events, recommendations without seen items, persistence."""

import numpy as np
import pyarrow as pa
import pytest

from sparknmf import InvalidInputError, MaskedALS, MaskedALSModel
from sparknmf.kernels.seeding import chunked_draw

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]

IMPLICIT = dict(implicitPrefs=True, rank=3, regParam=0.5, alpha=2.0, maxIter=4, tol=0.0, seed=5)


def _events(seed=0, n=13, m=11, density=0.35, weights=False, negative=False):
    rng = np.random.default_rng(seed)
    mask = rng.random((n, m)) < density
    mask[np.arange(n), rng.integers(0, m, n)] = True
    mask[rng.integers(0, n, m), np.arange(m)] = True
    u, i = np.nonzero(mask)
    values = rng.integers(1, 8, u.size).astype(float)
    if negative:
        values[::7] = -values[::7]
    cols = {"user": pa.array([f"u{x:02d}" for x in u]), "item": pa.array(i + 100, pa.int64()), "rating": values}
    if weights:
        cols["w"] = pa.array(rng.uniform(0.5, 2.0, u.size))
    return pa.table(cols)


def _dense(table, column="rating"):
    """The events as a dense matrix (NaN unobserved), in the model's sorted id order."""
    users = sorted(set(table.column("user").to_pylist()))
    items = sorted(set(table.column("item").to_pylist()))
    R = np.full((len(users), len(items)), np.nan)
    u = [users.index(x) for x in table.column("user").to_pylist()]
    i = [items.index(x) for x in table.column("item").to_pylist()]
    R[u, i] = table.column(column).to_numpy()
    return R, users, items


def _c_p(R, alpha):
    observed = ~np.isnan(R)
    r = np.where(observed, R, 0.0)
    return np.where(observed, 1.0 + alpha * np.abs(r), 1.0), (r > 0).astype(float)


def _objective(R, X, Y, lam, alpha):
    c, p = _c_p(R, alpha)
    return float((c * (p - X @ Y.T) ** 2).sum() + lam * ((X**2).sum() + (Y**2).sum()))


def _solve_all(R, Y, lam, alpha):
    c, p = _c_p(R, alpha)
    return np.array([np.linalg.solve(Y.T @ np.diag(c[u]) @ Y + lam * np.eye(Y.shape[1]), Y.T @ (c[u] * p[u]))
                     for u in range(R.shape[0])])


@pytest.fixture(scope="module")
def events(spark):
    return spark.createDataFrame(_events(negative=True)).cache()


def test_first_iteration_equals_the_dense_all_pairs_solves_and_history_is_the_brute_force_objective(spark, events):
    table = _events(negative=True)
    R, _, items = _dense(table)
    model = MaskedALS(**{**IMPLICIT, "maxIter": 1, "backend": "local"}).fit(events)
    Y0 = chunked_draw(len(items), 3, 5, 11) * 0.1
    X1 = _solve_all(R, Y0, 0.5, 2.0)
    Y1 = _solve_all(R.T, X1, 0.5, 2.0)
    np.testing.assert_allclose(model.userParams, X1, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(model.itemParams, Y1, rtol=1e-9, atol=1e-11)
    assert model.history[0] == pytest.approx(_objective(R, X1, Y1, 0.5, 2.0), rel=1e-10)
    assert model.implicitPrefs and model.globalMean == 0.0 and model.implicitVectors is None


def test_objective_never_increases_and_equals_the_brute_force_one(spark, events):
    table = _events(negative=True)
    R, _, _ = _dense(table)
    model = MaskedALS(**{**IMPLICIT, "maxIter": 8, "backend": "local"}).fit(events)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(model.history, model.history[1:]))
    assert model.history[-1] == pytest.approx(_objective(R, model.userParams, model.itemParams, 0.5, 2.0), rel=1e-10)
    # predictions are x_uᵀy_i, with no mean or bias
    pred = model.predictIndices(np.array([0, 1]), np.array([2, 3]))
    np.testing.assert_allclose(pred, [model.userParams[0] @ model.itemParams[2],
                                      model.userParams[1] @ model.itemParams[3]], rtol=1e-12)


@pytest.mark.parametrize("options", [
    dict(),
    dict(confidence="log", epsilon=0.5, regularization="weighted", weightCol="w"),
    dict(nonnegative=True),
])
def test_spark_equals_local_bit_for_bit_in_both_execution_modes(spark, options):
    frame = spark.createDataFrame(_events(1, weights=True, negative=True))
    est = MaskedALS(**{**IMPLICIT, "numUserBlocks": 3, "numItemBlocks": 2, **options})
    local = est.copy({est.backend: "local"}).fit(frame)
    for mode in ("jobs", "resident"):
        fitted = est.copy({est.backend: "spark", est.executionMode: mode}).fit(frame)
        np.testing.assert_array_equal(local.userParams, fitted.userParams)
        np.testing.assert_array_equal(local.itemParams, fitted.itemParams)
        assert local.history == fitted.history
    other_grid = est.copy({est.backend: "spark", est.numUserBlocks: 1, est.numItemBlocks: 3}).fit(frame)
    np.testing.assert_allclose(local.userParams, other_grid.userParams, rtol=1e-10, atol=1e-12)
    if options.get("nonnegative"):
        assert local.userParams.min() >= 0 and local.itemParams.min() >= 0


def test_event_weights_scale_the_confidence(spark):
    table = _events(2, weights=True)
    R, _, items = _dense(table)
    W, _, _ = _dense(table, "w")
    model = MaskedALS(**{**IMPLICIT, "maxIter": 1, "weightCol": "w", "backend": "local"}).fit(
        spark.createDataFrame(table))
    c, p = _c_p(R, 2.0)
    c = np.where(np.isnan(W), c, c * np.nan_to_num(W))
    Y0 = chunked_draw(len(items), 3, 5, 11) * 0.1
    X1 = np.array([np.linalg.solve(Y0.T @ np.diag(c[u]) @ Y0 + 0.5 * np.eye(3), Y0.T @ (c[u] * p[u]))
                   for u in range(R.shape[0])])
    np.testing.assert_allclose(model.userParams, X1, rtol=1e-9, atol=1e-11)


def test_explicit_terms_are_off_by_default_and_refused_when_set(spark, events):
    model = MaskedALS(**{**IMPLICIT, "maxIter": 1, "backend": "local"}).fit(events)
    assert model.userParams.shape[1] == 3 and model.itemParams.shape[1] == 3  # no bias columns
    for bad, what in [(dict(biases=True), "biases=True"), (dict(implicitFeedback=True), "implicitFeedback=True"),
                      (dict(timestampCol="ts", timeBins=2), "timeBins > 0"),
                      (dict(ratingRange=[0.0, 9.0]), "ratingRange")]:
        with pytest.raises(ValueError, match=f"implicitPrefs=True cannot be combined with {what}"):
            MaskedALS(**{**IMPLICIT, **bad}).fit(events)
    for bad, match in [(dict(alpha=-1.0), "invalid alpha=-1.0"), (dict(confidence="exp"), "invalid confidence='exp'"),
                       (dict(epsilon=0.0), "invalid epsilon=0.0"), (dict(alpha=float("nan")), "invalid alpha=nan")]:
        with pytest.raises(ValueError, match=match):
            MaskedALS(**{**IMPLICIT, **bad}).fit(events)
    MaskedALS(**{**IMPLICIT, "biases": False, "implicitFeedback": False, "maxIter": 1, "backend": "local"}).fit(events)


@pytest.mark.parametrize("value, what", [(float("nan"), "NaN"), (float("inf"), "infinite"), (None, "null")])
def test_bad_event_values_are_refused_before_fitting(spark, value, what):
    frame = spark.createDataFrame([("a", 1, 1.0), ("b", 2, value)], "user string, item long, rating double")
    with pytest.raises(InvalidInputError, match="null, NaN or infinite ratings"):
        MaskedALS(**IMPLICIT).fit(frame)


def test_recommendations_never_contain_seen_items_and_match_brute_force(spark, events):
    table = _events(negative=True)
    model = MaskedALS(**{**IMPLICIT, "backend": "local"}).fit(events)
    seen = set(zip(table.column("user").to_pylist(), table.column("item").to_pylist()))
    scores = model.userParams @ model.itemParams.T
    users, items = model.userIds.to_pylist(), model.itemIds.to_pylist()
    got = {r.user: r.recommendations for r in model.recommendForAllUsers(4).collect()}
    assert set(got) == set(users)
    for user, recs in got.items():
        u = users.index(user)
        allowed = [i for i in range(len(items)) if (user, items[i]) not in seen]
        best = sorted(allowed, key=lambda i: -scores[u, i])[:4]
        assert [x.item for x in recs] == [items[i] for i in best]
        np.testing.assert_allclose([x.rating for x in recs], scores[u, best], rtol=1e-6)
    everything = {r.user: [x.item for x in r.recommendations] for r in model.recommendForAllUsers(4, filterRated=False)
                  .collect()}
    assert any((u, i) in seen for u, recs in everything.items() for i in recs)
    # the item side and subsets filter the same pairs
    by_item = model.recommendForItemSubset(spark.createDataFrame([(100,), (103,)], "item long"), 5).collect()
    assert by_item and not any((x.user, r.item) in seen for r in by_item for x in r.recommendations)
    explicit = MaskedALS(rank=2, implicitFeedback=False, maxIter=1, backend="local").fit(
        spark.createDataFrame(_events()))
    with pytest.raises(ValueError, match="filterRated=True needs an implicit model"):
        explicit.recommendForAllUsers(2, filterRated=True)


def test_save_load_keeps_the_implicit_model_and_its_events(spark, events, tmp_path):
    model = MaskedALS(**{**IMPLICIT, "maxIter": 2, "backend": "local"}).fit(events)
    path = str(tmp_path / "implicit")
    model.save(path)
    loaded = MaskedALSModel.load(path)
    assert loaded.implicitPrefs and loaded.globalMean == 0.0
    np.testing.assert_array_equal(model.userParams, loaded.userParams)
    assert (model.seenPairs != loaded.seenPairs).nnz == 0
    recs = lambda m: sorted((r.user, [x.item for x in r.recommendations]) for r in m.recommendForAllUsers(3).collect())  # noqa: E731
    assert recs(model) == recs(loaded)


def test_conjugate_gradient_fit_never_increases_the_objective_and_matches_spark(spark, events):
    table = _events(negative=True)
    R, _, _ = _dense(table)
    est = MaskedALS(**{**IMPLICIT, "maxIter": 5, "cgSteps": 2, "numUserBlocks": 2, "numItemBlocks": 2})
    local = est.copy({est.backend: "local"}).fit(events)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(local.history, local.history[1:]))
    assert local.history[-1] == pytest.approx(_objective(R, local.userParams, local.itemParams, 0.5, 2.0), rel=1e-10)
    fitted = est.copy({est.backend: "spark", est.executionMode: "jobs"}).fit(events)
    np.testing.assert_array_equal(local.userParams, fitted.userParams)
    exact = MaskedALS(**{**IMPLICIT, "maxIter": 5, "backend": "local"}).fit(events)
    assert local.history[-1] <= exact.history[0]
    for bad, match in [(dict(cgSteps=2, nonnegative=True), "nonnegative=True cannot be combined with cgSteps=2"),
                       (dict(cgSteps=-1), "invalid cgSteps=-1")]:
        with pytest.raises(ValueError, match=match):
            MaskedALS(**{**IMPLICIT, **bad}).fit(events)
    with pytest.raises(ValueError, match="cgSteps=3 applies to implicitPrefs=True only"):
        MaskedALS(cgSteps=3).fit(events)
