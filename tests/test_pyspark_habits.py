"""pyspark habits (issue 22, item 4): MLlib's regParam scale, implicitFeedback vs implicitPrefs, pyspark.ml
Pipeline / CrossValidator / TrainValidationSplit with RegressionEvaluator, fitMultiple ingesting a grid once,
and NMF's outputType for pyspark.ml stages.

Oracles: separate ``fit`` calls with the same Params and seed, our own ``rmse`` against MLlib's
RegressionEvaluator, the split TrainValidationSplit draws (reproduced from its seed), planted clusters.
"""

import math
import warnings
from multiprocessing.pool import ThreadPool

import numpy as np
import pyarrow as pa
import pytest

from sparknmf import NMF, MaskedALS, MaskedALSModel, NMFModel
from sparknmf.ratings.estimator import MLLIB_SCALE_RULE
from sparknmf.ratings.evaluation import rmse
from sparknmf.ratings.store import RatingBlocks

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


def _ratings(spark, users=20, items=15, per_user=12, seed=0):
    """``per_user`` ratings 1..5 of each user, from a rank-2 signal plus noise."""
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(users), per_user)
    i = np.concatenate([rng.choice(items, per_user, replace=False) for _ in range(users)])
    a, b = rng.normal(size=(users, 2)), rng.normal(size=(items, 2))
    r = np.clip(np.round(3 + np.sum(a[u] * b[i], axis=1) + rng.normal(0, 0.3, u.size)), 1, 5)
    return spark.createDataFrame(pa.table({"user": u, "item": i, "rating": r}))


def _als(**params):
    base = dict(rank=2, maxIter=3, implicitFeedback=False, backend="local", seed=3)
    return MaskedALS(**{**base, **params})


@pytest.fixture(scope="module")
def ratings(spark):
    return _ratings(spark).cache()


@pytest.fixture(scope="module")
def blocks(ratings):
    stored = _als().ingest(ratings)
    yield stored
    stored.unpersist()


@pytest.fixture
def counted(monkeypatch):
    """Counts of MaskedALS.ingest calls and RatingBlocks.unpersist calls."""
    calls = {"ingest": 0, "unpersist": 0}
    ingest, unpersist = MaskedALS.ingest, RatingBlocks.unpersist

    def counting_ingest(self, dataset):
        calls["ingest"] += 1
        return ingest(self, dataset)

    def counting_unpersist(self):
        calls["unpersist"] += 1
        return unpersist(self)

    monkeypatch.setattr(MaskedALS, "ingest", counting_ingest)
    monkeypatch.setattr(RatingBlocks, "unpersist", counting_unpersist)
    return calls


def _same_model(a, b):
    for name in ("userParams", "itemParams"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-12, err_msg=name)
    assert a.userIds.equals(b.userIds) and a.itemIds.equals(b.itemIds)


# ---------------------------------------------------------------- a) regParam on MLlib's scale
def _scale_warnings(record):
    return [str(w.message) for w in record if "looks MLlib-scaled" in str(w.message)]


def test_mllib_scaled_regparam_warns_with_the_equivalent_on_our_scale(blocks):
    n, m = blocks.shape
    mean = 2 * blocks.nnz / (n + m)  # 2·240/35 = 13.7 ratings per user and item
    assert mean >= MLLIB_SCALE_RULE[1]
    with pytest.warns(UserWarning, match="looks MLlib-scaled") as record:
        _als(regParam=0.1, maxIter=1).fitBlocks(blocks)
    (message,) = _scale_warnings(record)
    assert "regParam=0.1 looks MLlib-scaled" in message
    assert f"about regParam={0.1 * mean:.3g} on our scale" in message
    assert "regularization='weighted'" in message


@pytest.mark.parametrize("params", [dict(regParam=12.0), dict(regParam=1.0), dict(regParam=0.0),
                                    dict(regParam=0.1, regularization="weighted"),
                                    dict(regParam=0.1, implicitPrefs=True)],
                         ids=["default-scale", "at-the-limit", "zero", "weighted", "implicitPrefs"])
def test_ordinary_regparam_does_not_warn(blocks, params):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _als(maxIter=1, **params).fitBlocks(blocks)
    assert _scale_warnings(record) == []


def test_small_regparam_on_sparse_ratings_does_not_warn(spark):
    sparse = _ratings(spark, users=20, items=15, per_user=3)  # 2·60/35 = 3.4 ratings per row
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _als(regParam=0.1, maxIter=1).fit(sparse)
    assert _scale_warnings(record) == []


def test_param_docs_say_what_the_names_mean_against_mllib():
    als = MaskedALS()
    assert "NOT MLlib's scale" in als.regParam.doc and "regularization='weighted'" in als.regParam.doc
    assert "NOT MLlib's implicitPrefs" in als.implicitFeedback.doc


# ---------------------------------------------------------------- b) implicitFeedback is not implicitPrefs
def test_implicit_feedback_with_implicit_prefs_is_an_error_naming_the_confusion(ratings):
    with pytest.raises(ValueError, match="implicitFeedback is SVD\\+\\+ on explicit ratings .*not a switch for "
                                         "implicit data: MLlib's implicitPrefs is implicitPrefs here"):
        MaskedALS(implicitPrefs=True, implicitFeedback=True).fit(ratings)
    with pytest.raises(ValueError, match="implicitFeedback=True with alpha=40.0: those set the confidence of "
                                         "implicitPrefs"):
        MaskedALS(implicitFeedback=True, alpha=40.0).fit(ratings)


def test_confidence_params_without_implicit_prefs_warn_that_they_are_ignored(blocks):
    with pytest.warns(UserWarning, match="alpha=40.0, confidence='log' ignored: they apply to implicitPrefs=True "
                                         "only .*not MLlib's implicitPrefs"):
        _als(alpha=40.0, confidence="log", maxIter=1).fitBlocks(blocks)


def test_implicit_prefs_turns_the_svdpp_terms_off(blocks):
    model = MaskedALS(implicitPrefs=True, rank=2, maxIter=1).fitBlocks(blocks)  # implicitFeedback left unset
    assert model.implicitVectors is None


# ---------------------------------------------------------------- c) Pipeline, tuning, RegressionEvaluator
def test_pipeline_with_regression_evaluator_and_save_load(spark, ratings, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import SQLTransformer

    train, test = ratings.randomSplit([0.8, 0.2], seed=2)
    pipeline = Pipeline(stages=[SQLTransformer(statement="SELECT user, item, rating FROM __THIS__"),
                                _als(coldStartStrategy="drop")])
    model = pipeline.fit(train)
    predictions = model.transform(test)
    value = RegressionEvaluator(labelCol="rating", predictionCol="prediction", metricName="rmse").evaluate(predictions)
    assert math.isfinite(value) and value == pytest.approx(rmse(predictions), rel=1e-12)
    model.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert isinstance(loaded.stages[1], MaskedALSModel)
    _same_model(loaded.stages[1], model.stages[1])


def test_train_validation_split_ingests_once_and_matches_separate_fits(spark, ratings, counted):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit
    from pyspark.sql import functions as F

    als = _als(coldStartStrategy="drop")
    grid = ParamGridBuilder().addGrid(als.rank, [1, 2]).addGrid(als.regParam, [10.0]).build()
    evaluator = RegressionEvaluator(labelCol="rating")
    tvs = TrainValidationSplit(estimator=als, estimatorParamMaps=grid, evaluator=evaluator, trainRatio=0.75,
                               parallelism=2, seed=7)
    fitted = tvs.fit(ratings)
    assert counted["ingest"] == 2  # the whole grid, then the best point on all the data
    assert counted["unpersist"] == 2
    # the oracle: TrainValidationSplit's split, reproduced from its seed, and one separate fit per point
    drawn = ratings.select("*", F.rand(7).alias(tvs.uid + "_rand"))
    condition = drawn[tvs.uid + "_rand"] >= 0.75
    train, validation = drawn.filter(~condition), drawn.filter(condition)
    expected = [rmse(als.fit(train, params).transform(validation)) for params in grid]
    np.testing.assert_allclose(fitted.validationMetrics, expected, rtol=1e-10)
    best = int(np.argmin(expected))
    _same_model(fitted.bestModel, als.fit(ratings, grid[best]))


def test_cross_validator_ingests_once_per_fold(spark, ratings, counted):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    als = _als(coldStartStrategy="drop")
    grid = ParamGridBuilder().addGrid(als.regParam, [1.0, 5.0, 50.0]).build()
    cv = CrossValidator(estimator=als, estimatorParamMaps=grid, evaluator=RegressionEvaluator(labelCol="rating"),
                        numFolds=2, parallelism=2, seed=5)
    fitted = cv.fit(ratings)
    assert counted["ingest"] == 3  # one per fold, then the best point on all the data
    assert len(fitted.avgMetrics) == 3 and all(math.isfinite(v) for v in fitted.avgMetrics)
    _same_model(fitted.bestModel, als.fit(ratings, grid[int(np.argmin(fitted.avgMetrics))]))


# ---------------------------------------------------------------- d) fitMultiple
def test_fit_multiple_ingests_once_per_group_and_equals_separate_fits(ratings, counted):
    als = _als()
    maps = [{als.rank: 1}, {als.numUserBlocks: 2, als.regParam: 3.0}, {als.rank: 2, als.regParam: 5.0},
            {als.numUserBlocks: 2}]
    with ThreadPool(2) as pool:  # as CrossValidator(parallelism=2) does: next() from two threads
        iterator = als.fitMultiple(ratings, maps)
        produced = pool.map(lambda _: next(iterator), range(len(maps)))
    with pytest.raises(StopIteration):
        next(iterator)
    assert sorted(index for index, _ in produced) == [0, 1, 2, 3]
    assert counted["ingest"] == 2 and counted["unpersist"] == 2  # numUserBlocks 0 and 2: two sets of blocks
    for index, model in produced:
        _same_model(model, als.fit(ratings, maps[index]))


def test_fit_multiple_checks_every_point_before_any_work(ratings, counted):
    als = _als()
    with pytest.raises(ValueError, match="invalid regParam=-1.0"):
        als.fitMultiple(ratings, [{als.regParam: 1.0}, {als.regParam: -1.0}])
    assert counted["ingest"] == 0


# ---------------------------------------------------------------- e) NMF outputType
def _clustered_vectors(spark):
    """40 samples on 6 features, two planted groups (first or last three features)."""
    from pyspark.ml.linalg import Vectors

    rng = np.random.default_rng(1)
    rows = []
    for s in range(40):
        group = s % 2
        x = rng.uniform(0.0, 0.1, 6)
        x[3 * group: 3 * group + 3] += rng.uniform(1.0, 2.0, 3)
        rows.append((s, group, Vectors.dense(x)))
    return spark.createDataFrame(rows, ["id", "group", "features"])


def test_nmf_vector_output_chains_into_kmeans_in_a_pipeline(spark, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.linalg import VectorUDT

    frame = _clustered_vectors(spark)
    pipeline = Pipeline(stages=[NMF(k=2, outputType="vector", seed=0, maxIter=30),
                                KMeans(k=2, featuresCol="coefficients", predictionCol="cluster", seed=1)])
    model = pipeline.fit(frame)
    out = model.transform(frame)
    assert isinstance(out.schema["coefficients"].dataType, VectorUDT)
    rows = out.orderBy("id").collect()
    clusters, groups = [r.cluster for r in rows], [r.group for r in rows]
    assert clusters == groups or clusters == [1 - g for g in groups]  # the planted groups, up to the label
    arrays = model.stages[0].copy({model.stages[0].outputType: "array"}).transform(frame).orderBy("id").collect()
    np.testing.assert_allclose([list(r.coefficients) for r in arrays], [r.coefficients.toArray() for r in rows])
    model.write().overwrite().save(str(tmp_path / "nmf-kmeans"))
    loaded = PipelineModel.load(str(tmp_path / "nmf-kmeans"))
    assert loaded.stages[0].getOutputType() == "vector"
    assert [r.cluster for r in loaded.transform(frame).orderBy("id").collect()] == clusters


def test_output_type_on_coordinates_save_load_and_bad_values(spark, tmp_path):
    from pyspark.ml.linalg import VectorUDT

    frame = spark.createDataFrame([("d1", "a", 2.0), ("d1", "b", 1.0), ("d2", "b", 3.0), ("d2", "a", 0.5)],
                                  "row string, col string, value double")
    model = NMF(k=1, outputType="vector").fit(frame)
    projected = model.transform(frame)
    assert isinstance(projected.schema["coefficients"].dataType, VectorUDT)
    assert projected.count() == 2
    model.save(str(tmp_path / "model"))
    assert NMFModel.load(str(tmp_path / "model")).getOutputType() == "vector"
    NMF(k=1, outputType="vector").save(str(tmp_path / "estimator"))
    assert NMF.load(str(tmp_path / "estimator")).getOutputType() == "vector"
    assert NMF().getOutputType() == NMFModel().getOutputType() == "array"
    with pytest.raises(ValueError, match=r"NMF: invalid outputType='dense'; it must be one of \['array', 'vector'\]"):
        NMF(k=1, outputType="dense").fit(frame)
    with pytest.raises(ValueError, match=r"NMFModel: invalid outputType='dense'"):
        model.copy({model.outputType: "dense"}).transform(frame)
