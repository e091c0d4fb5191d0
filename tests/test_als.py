"""MaskedALS / MaskedALSModel on Spark: oracles for fitting, cold start, ids, recommendations, persistence, warm
starts and bad input.  Data are tiny; most fits use the local backend (same block functions, no per-job cost),
and the Spark backend is checked against it."""

import inspect
import warnings

import numpy as np
import pyarrow as pa
import pytest

from sparknmf import NMF, InvalidInputError, MaskedALS, MaskedALSModel
from sparknmf.datasets import planted_ratings
from sparknmf.kernels.rowsolve import row_equations
from sparknmf.kernels.seeding import chunked_draw
from sparknmf.kernels.topn import top_n
from sparknmf.ratings.estimator import _MaskedALSParams

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]

FAST = dict(rank=2, regParam=0.1, biasRegParam=0.1, implicitFeedback=False, maxIter=5, tol=0.0)


def _table(seed=0, n=14, m=10, density=0.45, times=False, weights=False):
    rng = np.random.default_rng(seed)
    mask = rng.random((n, m)) < density
    mask[np.arange(n), rng.integers(0, m, n)] = True
    mask[rng.integers(0, n, m), np.arange(m)] = True
    u, i = np.nonzero(mask)
    cols = {"user": pa.array([f"u{x:02d}" for x in u]), "item": pa.array(i + 100, pa.int64()),
            "rating": pa.array(np.round(rng.uniform(1, 5, u.size)))}
    if times:
        cols["ts"] = pa.array(rng.integers(880_000_000, 890_000_000, u.size), pa.int64())
    if weights:
        cols["w"] = pa.array(rng.uniform(0.5, 2.0, u.size))
    return pa.table(cols)


@pytest.fixture(scope="module")
def ratings(spark):
    return spark.createDataFrame(_table()).cache()


def _params(model):
    return model.userParams, model.itemParams


def test_signature_defaults_equal_set_defaults():
    est = MaskedALS()
    for name, param in inspect.signature(MaskedALS.__init__).parameters.items():
        if name in ("self", "ratingRange"):
            continue
        assert est.getOrDefault(name) == param.default, name
    assert est.getRatingRange() == [] and MaskedALSModel().hasParam("coldStartStrategy")
    assert set(_MaskedALSParams._constraints) <= {p.name for p in est.params}


def test_first_iteration_equals_dense_reference(spark, ratings):
    """maxIter=1: users solved from the seeded item factors, then items from the new users (to 1e-8)."""
    table = _table()
    est = MaskedALS(**{**FAST, "maxIter": 1, "regParam": 0.3, "biasRegParam": 0.05, "seed": 3, "backend": "local"})
    model = est.fit(ratings)
    users = sorted(set(table.column("user").to_pylist()))
    items = sorted(set(table.column("item").to_pylist()))
    u = np.array([users.index(x) for x in table.column("user").to_pylist()])
    i = np.array([items.index(x) for x in table.column("item").to_pylist()])
    r = table.column("rating").to_numpy()
    mu, k = r.mean(), 2
    H0 = chunked_draw(len(items), k, 3, 11) * 0.1

    def solve_rows(rows, cols, other_factors, other_bias, count):
        out = np.zeros((count, k + 1))
        for row in range(count):
            sel = rows == row
            A = np.hstack([other_factors[cols[sel]], np.ones((sel.sum(), 1))])
            t = r[sel] - mu - other_bias[cols[sel]]
            out[row] = np.linalg.solve(A.T @ A + np.diag([0.3] * k + [0.05]), A.T @ t)
        return out

    P_user = solve_rows(u, i, H0, np.zeros(len(items)), len(users))
    P_item = solve_rows(i, u, P_user[:, :k], P_user[:, k], len(items))
    np.testing.assert_allclose(model.userParams, P_user, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.itemParams, P_item, rtol=1e-8, atol=1e-10)
    assert model.globalMean == pytest.approx(mu)


@pytest.mark.parametrize("options", [
    dict(implicitFeedback=True, implicitRegParam=2.0),
    dict(timestampCol="ts", timeBins=3, userDrift=True, weightCol="w", regularization="weighted"),
    dict(nonnegative=True, biases=False),
])
def test_spark_backend_equals_local_and_blocks_do_not_matter(spark, options):
    frame = spark.createDataFrame(_table(1, times=True, weights=True))
    est = MaskedALS(**{**FAST, "maxIter": 3, **options})
    local = est.copy({est.backend: "local"}).fit(frame)
    blocked = est.copy({est.backend: "spark", est.numUserBlocks: 3, est.numItemBlocks: 2}).fit(frame)
    for a, b in zip(_params(local), _params(blocked)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert local.history == pytest.approx(blocked.history, rel=1e-10)
    assert local.userIds.equals(blocked.userIds)


def test_auto_backend_takes_the_driver_of_a_local_master_while_the_ratings_fit_it(spark, ratings):
    """Above localLimit, a local master (the test session's local[2]) still fits on the driver: same model."""
    est = MaskedALS(**{**FAST, "maxIter": 2})
    blocks = est.copy({est.localLimit: 0}).ingest(ratings)
    try:
        assert blocks.local is not None
    finally:
        blocks.unpersist()
    auto = est.copy({est.localLimit: 0}).fit(ratings)
    local = est.copy({est.backend: "local"}).fit(ratings)
    for a, b in zip(_params(auto), _params(local)):
        np.testing.assert_array_equal(a, b)


def test_driver_threads_run_blas_on_one_thread_and_restore_it():
    """The driver's block threads take the cores: BLAS is limited to one thread meanwhile, then restored."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from sparknmf.ratings.store import in_threads as _in_threads

    def blas_threads():
        return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})

    with threadpool_limits(limits=2, user_api="blas"):  # whatever the environment set
        assert blas_threads() == [2]
        assert _in_threads(2, lambda x: (x, blas_threads()), range(4)) == [(x, [1]) for x in range(4)]
        assert blas_threads() == [2]


class _Session:
    """Just the conf of a session, for the driver rule."""

    def __init__(self, **conf):
        self.conf = self
        self._conf = {"spark.master": "local[4]", **conf}

    def get(self, key, default=None):
        return self._conf.get(key, default)


@pytest.mark.parametrize("conf, backend, rows, expected", [
    ({}, "auto", 1_000, True),  # within localLimit, whatever the master
    ({"spark.master": "yarn"}, "auto", 1_000, True),
    ({"spark.master": "yarn"}, "auto", 10_000_000, False),  # above it on a cluster: Spark
    ({}, "auto", 10_000_000, True),  # local master: 240 MB ≤ half of maxResultSize 1g, a quarter of memory 1g
    ({}, "auto", 12_000_000, False),  # 288 MB > a quarter of 1g
    ({"spark.driver.maxResultSize": "0", "spark.driver.memory": "4g"}, "auto", 40_000_000, True),  # 960 MB ≤ 1 GB
    ({"spark.driver.maxResultSize": "0", "spark.driver.memory": "4g"}, "auto", 50_000_000, False),
    ({"spark.driver.maxResultSize": "4g", "spark.driver.memory": "8g"}, "auto", 80_000_000, True),  # 1.92 GB ≤ 2 GB
    ({"spark.driver.maxResultSize": "256m", "spark.driver.memory": "8g"}, "auto", 10_000_000, False),
    ({"spark.master": "local"}, "auto", 10_000_000, True),
    ({"spark.master": "spark://host:7077"}, "local", 10_000_000, True),  # explicit backends are obeyed
    ({}, "spark", 1_000, False),
    ({"spark.driver.maxResultSize": "1m"}, "auto", 100_000, False),  # within localLimit, 2.4 MB > half of 1m
])
def test_driver_rule(conf, backend, rows, expected):
    from sparknmf.ratings.ingest import use_driver

    assert use_driver(_Session(**conf), backend, rows, 24, 1_000_000) is expected


@pytest.mark.parametrize("n, nnz, blocks, rows_per_block", [
    (40_000, 30_000_000, 0, 5_000),  # ratings decide: 8 blocks (2 waves of 4 cores) of ≤ 4M ratings
    (4_000_000, 8_000_000, 0, 250_000),  # rows decide: 16 blocks of ≤ 2^18 rows (rank 50: ~100 MB of parameters)
    (100, 1_000, 0, 25),  # a block per core
    (4_000_000, 8_000_000, 3, 1_333_334),  # numUserBlocks is obeyed
])
@pytest.mark.parametrize("received", [False, True])
def test_blocks_bound_ratings_and_rows(n, nnz, blocks, rows_per_block, received):
    from sparknmf.ratings.ingest import _MAX_BLOCK_ROWS, _grid

    step = _grid(_Session(), n, blocks, nnz, received)
    if received and not blocks and nnz > n:  # the executors placement: ≤ 2^18 rows received per block
        assert -(-n // step) >= nnz / _MAX_BLOCK_ROWS
        return
    assert step == rows_per_block
    assert blocks or (step <= _MAX_BLOCK_ROWS and -(-n // step) % 4 == 0)


def test_executors_blocks_bound_the_rows_each_block_receives():
    """20,000 items rated 8M times: a block per core for the driver placement, 32 for the executors placement
    (at most 2^18 received rows each)."""
    from sparknmf.ratings.ingest import _grid

    assert -(-20_000 // _grid(_Session(), 20_000, 0, 8_000_000)) == 4  # a block per core
    assert -(-20_000 // _grid(_Session(), 20_000, 0, 8_000_000, received=True)) == 32


def test_executors_partitions_bound_the_rows_of_a_cached_partition():
    """16M users in 62 blocks: a partition per core for the driver placement's blocks; under the executors
    placement a multiple of the cores with at most 2^20 parameter rows each, never more partitions than blocks."""
    from sparknmf.ratings.ingest import _PARTITION_ROWS, _partitions

    assert _partitions(_Session(), 62, 16_000_000, received=False) == 4
    partitions = _partitions(_Session(), 62, 16_000_000, received=True)
    assert partitions % 4 == 0 and 16_000_000 / partitions <= _PARTITION_ROWS < 16_000_000 / (partitions - 4)
    assert _partitions(_Session(), 28, 133_333, received=True) == 4  # small factors: a partition per core
    assert _partitions(_Session(), 3, 600_000, received=True) == 3


@pytest.mark.parametrize("n, other, blocks", [
    (26_666, 133_333, 4),  # items of MovieLens-like ratings: ≤ 133,333 users received per block, whatever the grid
    (133_333, 26_666, 4),  # and its users
    (20_000, 1 << 18, 4),  # at the bound
    (20_000, (1 << 18) + 1, 32),  # beyond it: ≤ 2^18 received rows per block (8M ratings / 2^18 = 30.5)
    (20_000, 4_000_000, 32),
])
def test_executors_blocks_bound_received_rows_by_the_other_side(n, other, blocks):
    """A block receives at most one row of the other side per rating and per row of the other side: when the
    other side has ≤ 2^18 rows, the executors placement keeps the driver placement's blocks (more blocks would
    only send each row to more of them)."""
    from sparknmf.ratings.ingest import _grid

    assert -(-n // _grid(_Session(), n, 0, 8_000_000, received=True, other=other)) == blocks


def test_driver_rule_rejects_a_malformed_size():
    from sparknmf.ratings.ingest import use_driver

    with pytest.raises(ValueError, match="spark.driver.memory"):
        use_driver(_Session(**{"spark.driver.memory": "lots"}), "auto", 10_000_000, 24, 0)


def test_planted_biases_are_recovered(spark):
    table, truth = planted_ratings(30, 25, 1, density=0.6, seed=2)
    r = (truth["mu"] + truth["user_bias"][table.column("user").to_numpy()]
         + truth["item_bias"][table.column("item").to_numpy()])
    frame = spark.createDataFrame(table.set_column(2, "rating", pa.array(r)))
    model = MaskedALS(rank=1, regParam=1e-3, biasRegParam=1e-6, implicitFeedback=False, maxIter=60, tol=1e-14,
                      backend="local").fit(frame)
    bu, bi = model.userParams[:, 1], model.itemParams[:, 1]
    shift = model.globalMean - truth["mu"]
    np.testing.assert_allclose(bu - bu.mean(), truth["user_bias"] - truth["user_bias"].mean(), atol=1e-3)
    np.testing.assert_allclose(bi - bi.mean(), truth["item_bias"] - truth["item_bias"].mean(), atol=1e-3)
    assert shift + bu.mean() + bi.mean() == pytest.approx(truth["user_bias"].mean() + truth["item_bias"].mean(),
                                                          abs=1e-3)
    np.testing.assert_allclose(model.userParams[:, 0][:, None] * model.itemParams[:, 0][None, :], 0, atol=1e-3)


def test_nonnegative_factors_satisfy_kkt_per_row(spark, ratings):
    model = MaskedALS(**{**FAST, "rank": 3, "maxIter": 4, "nonnegative": True, "backend": "local"}).fit(ratings)
    assert (model.userParams[:, :3] >= 0).all() and (model.itemParams[:, :3] >= 0).all()
    # the last half-step updated the items: each item row is the NNLS optimum given the users
    table = _table()
    users = sorted(set(table.column("user").to_pylist()))
    u = np.array([users.index(x) for x in table.column("user").to_pylist()])
    i = table.column("item").to_numpy() - 100
    order = np.lexsort((u, i))
    indptr = np.searchsorted(i[order], np.arange(model.itemParams.shape[0] + 1))
    Pu = model.userParams
    target = table.column("rating").to_numpy()[order] - model.globalMean - Pu[u[order], 3]
    extra = np.ones((order.size, 1))
    eq = row_equations(indptr, u[order], Pu[:, :3], target, extra=extra)
    lam = np.r_[np.full(3, 0.1), 0.1]
    for G, b, x in zip(eq.grams, eq.rhs, model.itemParams):
        grad = 2 * ((G + np.diag(lam)) @ x - b)
        zero = np.r_[x[:3] <= 0, False]
        assert np.abs(grad[~zero]).max() < 1e-8 and (grad[zero] > -1e-8).all()


def test_cold_start_strategies(spark, ratings):
    model = MaskedALS(**{**FAST, "backend": "local"}).fit(ratings)
    query = spark.createDataFrame([("u00", 100), ("nobody", 100), ("u00", 999), ("nobody", 999)],
                                  "user string, item long")
    mu = model.globalMean
    bu = dict(zip(model.userIds.to_pylist(), model.userParams[:, 2]))
    bi = dict(zip(model.itemIds.to_pylist(), model.itemParams[:, 2]))
    nan = {(r.user, r.item): r.prediction for r in model.transform(query).collect()}
    assert np.isfinite(nan[("u00", 100)]) and all(np.isnan(nan[key]) for key in nan if key != ("u00", 100))
    dropped = model.copy({model.coldStartStrategy: "drop"}).transform(query).collect()
    assert [(r.user, r.item) for r in dropped] == [("u00", 100)]
    biases = {(r.user, r.item): r.prediction
              for r in model.copy({model.coldStartStrategy: "biases"}).transform(query).collect()}
    assert biases[("nobody", 100)] == pytest.approx(mu + bi[100])
    assert biases[("u00", 999)] == pytest.approx(mu + bu["u00"])
    assert biases[("nobody", 999)] == pytest.approx(mu)
    assert biases[("u00", 100)] == pytest.approx(nan[("u00", 100)])
    clipped = model.copy({model.ratingRange: [2.0, 2.5]}).transform(query).collect()
    assert all(2.0 <= r.prediction <= 2.5 for r in clipped if not np.isnan(r.prediction))


def test_string_ids_round_trip_through_factors_and_predictions(spark, ratings):
    model = MaskedALS(**{**FAST, "backend": "local"}).fit(ratings)
    assert model.userIds.type == pa.string() and model.userIds.to_pylist() == sorted(model.userIds.to_pylist())
    factors = {r.id: r.features for r in model.userFactors.collect()}
    items = {r.id: r.features for r in model.itemFactors.collect()}
    biases = {r.id: r.bias for r in model.itemBiases.collect()}
    row = model.transform(spark.createDataFrame([("u03", 104)], "user string, item long")).first()
    users = {r.id: r.bias for r in model.userBiases.collect()}
    expected = model.globalMean + users["u03"] + biases[104] + np.dot(factors["u03"], items[104])
    assert row.prediction == pytest.approx(expected) and row.user == "u03"


def _brute_force(model, side, exclude_pairs, n, candidates=None):
    P = {"user": model.userParams, "item": model.itemParams}
    other = "item" if side == "user" else "user"
    ids = {s: model.ids(s).to_pylist() for s in ("user", "item")}
    scores = model.globalMean + P[side][:, 2][:, None] + P[other][:, 2][None, :] + P[side][:, :2] @ P[other][:, :2].T
    out = {}
    for q, qid in enumerate(ids[side]):
        allowed = [t for t, tid in enumerate(ids[other]) if (qid, tid) not in exclude_pairs
                   and (candidates is None or tid in candidates)]
        best = sorted(allowed, key=lambda t: -scores[q, t])[:n]
        out[qid] = ([ids[other][t] for t in best], scores[q, best])
    return out


def test_recommendations_match_brute_force_and_exclude_rated(spark, ratings):
    model = MaskedALS(**{**FAST, "backend": "local"}).fit(ratings)
    table = _table()
    rated = set(zip(table.column("user").to_pylist(), table.column("item").to_pylist()))
    got = {r.user: r.recommendations for r in model.recommendForAllUsers(3, exclude=ratings).collect()}
    expected = _brute_force(model, "user", rated, 3)
    assert set(got) == set(expected)
    for user, recs in got.items():
        assert [x.item for x in recs] == expected[user][0]
        np.testing.assert_allclose([x.rating for x in recs], expected[user][1], rtol=1e-6)
        assert not any((user, x.item) in rated for x in recs)
    # items side, a subset, candidates; the schema names the id columns
    frame = model.recommendForItemSubset(spark.createDataFrame([(101,), (105,), (555,)], "item long"), 2,
                                         candidates=["u01", "u02", "u05", "u09"])
    assert frame.schema.simpleString() == "struct<item:bigint,recommendations:array<struct<user:string,rating:float>>>"
    got = {r.item: [x.user for x in r.recommendations] for r in frame.collect()}
    expected = _brute_force(model, "item", set(), 2, {"u01", "u02", "u05", "u09"})
    assert got == {101: expected[101][0], 105: expected[105][0]}
    plain = {r.user: [x.item for x in r.recommendations] for r in model.recommendForAllUsers(2).collect()}
    assert plain == {u: v[0] for u, v in _brute_force(model, "user", set(), 2).items()}
    assert {r.item for r in model.recommendForAllItems(1).collect()} == set(model.itemIds.to_pylist())


def test_save_load_round_trip(spark, tmp_path):
    frame = spark.createDataFrame(_table(2, times=True))
    model = MaskedALS(**{**FAST, "implicitFeedback": True, "timestampCol": "ts", "timeBins": 2, "userDrift": True,
                         "backend": "local", "coldStartStrategy": "biases", "ratingRange": [1.0, 5.0]}).fit(frame)
    path = str(tmp_path / "als")
    model.save(path)
    loaded = MaskedALSModel.load(path)
    for a, b in zip(_params(model), _params(loaded)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.implicitVectors, loaded.implicitVectors)
    assert loaded.userIds.equals(model.userIds) and loaded.itemIds.equals(model.itemIds)
    assert loaded.history == model.history and loaded.uid == model.uid and loaded.getTimestampCol() == "ts"
    assert loaded.getColdStartStrategy() == "biases" and loaded.getRatingRange() == [1.0, 5.0]
    a = sorted(model.transform(frame).collect())
    b = sorted(loaded.transform(frame).collect())
    assert [r.prediction for r in a] == pytest.approx([r.prediction for r in b], rel=1e-12)
    recs = lambda m: sorted((r.user, [x.item for x in r.recommendations]) for r in m.recommendForAllUsers(2).collect())  # noqa: E731
    assert recs(model) == recs(loaded)
    files = [p.name for p in (tmp_path / "als").rglob("*")]
    assert not any(name.endswith((".pkl", ".pickle")) for name in files)
    est_path = str(tmp_path / "est")
    MaskedALS(rank=4, timeBins=3).save(est_path)
    assert MaskedALS.load(est_path).getRank() == 4


def test_load_rejects_other_directories(spark, tmp_path):
    with pytest.raises(ValueError, match="not a saved sparknmf model"):
        MaskedALSModel.load(str(tmp_path / "nowhere"))
    NMF(k=2).save(str(tmp_path / "nmf"))
    with pytest.raises(ValueError, match="not a 'sparknmf.MaskedALSModel'"):
        MaskedALSModel.load(str(tmp_path / "nmf"))


def test_warm_start_continues_from_the_loaded_factors(spark, ratings, tmp_path):
    est = MaskedALS(**{**FAST, "implicitFeedback": True, "implicitRegParam": 1.0, "backend": "local"})
    model = est.fit(ratings)
    model.save(str(tmp_path / "m"))
    loaded = MaskedALSModel.load(str(tmp_path / "m"))
    same = est.copy({est.maxIter: 0}).fitFrom(ratings, loaded)
    for a, b in zip(_params(model), _params(same)):
        np.testing.assert_allclose(a, b, atol=1e-12)
    longer = est.copy({est.maxIter: 10}).fit(ratings)
    resumed = est.fitFrom(ratings, loaded)  # 5 + 5 iterations
    for a, b in zip(_params(longer), _params(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    # a new user starts fresh; known ones keep their rows
    extra = spark.createDataFrame([("zz-new", 100, 4.0)], "user string, item long, rating double")
    grown = est.copy({est.maxIter: 0}).fitFrom(ratings.unionByName(extra), loaded)
    assert grown.userIds.to_pylist()[-1] == "zz-new"
    np.testing.assert_allclose(grown.userParams[:-1], model.userParams, atol=1e-12)
    with pytest.raises(ValueError, match="initial model has rank 2"):
        est.copy({est.rank: 3}).fitFrom(ratings, loaded)


@pytest.mark.parametrize("rows, kwargs, message", [
    ([(None, 1, 4.0), ("a", 2, 3.0)], {}, r"1 null ids in column 'user'"),
    ([("a", None, 4.0), ("a", 2, 3.0)], {}, r"1 null ids in column 'item'"),
    ([("a", 1, float("nan")), ("a", 2, 3.0)], {}, r"1 null, NaN or infinite ratings, e.g. \(user='a', item=1"),
    ([("a", 1, float("inf")), ("b", 2, 3.0)], {}, "NaN or infinite ratings"),
    ([("a", 1, None), ("b", 2, 3.0)], {}, "null, NaN or infinite ratings"),
    ([("a", 1, 4.0), ("a", 1, 3.0), ("b", 2, 1.0)], {}, r"1 duplicate \(user, item\) pairs, e.g. \(user='a', item=1\)"),
    ([("a", 1, 4.0), ("b", 2, 6.0)], {"ratingRange": [1.0, 5.0]},
     r"ratings outside the declared ratingRange \[1.0, 5.0\], e.g. \(user='b'"),
    ([("a", 1, 4.0)], {"ratingCol": "stars"}, r"unknown column\(s\) \['stars'\]"),
])
def test_bad_input_rejected_before_fitting(spark, rows, kwargs, message):
    frame = spark.createDataFrame(rows, "user string, item long, rating double")
    with pytest.raises(InvalidInputError, match=message):
        MaskedALS(**{**FAST, **kwargs}).fit(frame)


def test_bad_params_and_frames(spark, ratings):
    empty = ratings.limit(0)
    with pytest.raises(InvalidInputError, match="is empty"):
        MaskedALS(**FAST).fit(empty)
    with pytest.raises(ValueError, match=r"invalid rank=0; it must be an integer >= 1"):
        MaskedALS(rank=0).fit(ratings)
    with pytest.raises(ValueError, match="coldStartStrategy='zero'"):
        MaskedALS(coldStartStrategy="zero").fit(ratings)
    with pytest.raises(ValueError, match="timeBins need"):
        MaskedALS(timeBins=4).fit(ratings)
    with pytest.raises(ValueError, match="ratingRange"):
        MaskedALS(ratingRange=[5.0, 1.0]).fit(ratings)
    text = ratings.withColumn("rating", ratings.rating.cast("string"))
    with pytest.raises(InvalidInputError, match="column 'rating' must be numeric"):
        MaskedALS(**FAST).fit(text)
    weights = spark.createDataFrame([("a", 1, 4.0, -1.0)], "user string, item long, rating double, w double")
    with pytest.raises(InvalidInputError, match="negative weights in column 'w'"):
        MaskedALS(**FAST, weightCol="w").fit(weights)
    with pytest.raises(ValueError, match="is empty: fit a MaskedALS"):
        MaskedALSModel().userParams
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MaskedALS(**{**FAST, "maxIter": 1, "backend": "local"}, checkpointInterval=5).fit(ratings)
    assert any("checkpointInterval is ignored without checkpointDir" in str(w.message) for w in caught)


def test_duplicate_policies(spark):
    frame = spark.createDataFrame([("a", 1, 2.0, 10), ("a", 1, 4.0, 20), ("b", 2, 1.0, 5), ("b", 1, 5.0, 5)],
                                  "user string, item long, rating double, ts long")
    for policy, value in (("mean", 3.0), ("last", 4.0)):
        est = MaskedALS(**{**FAST, "maxIter": 1, "backend": "local"}, duplicates=policy, timestampCol="ts")
        blocks = est.ingest(frame)
        assert blocks.nnz == 3
        assert blocks.mu == pytest.approx((value + 1.0 + 5.0) / 3)


def test_top_n_is_used_blockwise_by_recommendations():
    # the kernel behind the DataFrame methods: chunks merge to the unchunked answer
    rng = np.random.default_rng(0)
    Q, T = rng.normal(size=(5, 2)), rng.normal(size=(50, 2))
    a = top_n(Q, T, 7, chunk=4)
    b = top_n(Q, T, 7, chunk=100)
    np.testing.assert_array_equal(a[0], b[0])
