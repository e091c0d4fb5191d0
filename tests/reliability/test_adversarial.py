"""Adversarial inputs (issue 21): each was a wrong answer returned without error, or a raw Spark/Arrow/Python
error; each must now be a ValueError / InvalidInputError naming the parameter, column or file, the value and
what is allowed -- before any Spark job when the problem is visible without reading the data.

docs/reliability.md, "Adversarial inputs", has the table (input -> before -> now).
"""

import importlib
import json
import math
import re

import numpy as np
import pytest
from _spark_jobs import spark_jobs

from sparknmf import NMF, InvalidInputError, MaskedALS, MaskedALSModel, NMFModel
from sparknmf.params import Interval
from sparknmf.pipeline.jobconf import ConfError, Option, load_conf

pytestmark = [pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


def recommend_job():
    return importlib.import_module("jobs.recommend")


# ------------------------------------------------------------------------ 1. NaN / inf Params and conf keys
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_interval_refuses_nan_and_infinity(value):
    assert not Interval(0)(value) and not Interval()(value) and not Interval(0, 1)(value)
    assert Interval(0)(0.0) and Interval(0, 1)(1) and Interval(integer=True)(10**400)
    assert Interval(0, math.inf)(math.inf) and not Interval(0, math.inf)(math.nan)  # an explicit infinite bound
    assert Interval(0).describe(value) == "a finite number >= 0" and Interval(0).describe(-1.0) == "a number >= 0"


@pytest.mark.parametrize("params, match", [
    ({"tol": math.nan}, r"MaskedALS: invalid tol=nan; it must be a finite number >= 0"),
    ({"regParam": math.inf}, r"MaskedALS: invalid regParam=inf; it must be a finite number >= 0"),
    ({"initStd": math.nan}, r"MaskedALS: invalid initStd=nan; it must be a finite number > 0"),
    ({"driftExponent": -math.inf}, r"invalid driftExponent=-inf; it must be a finite number >= 0"),
])
def test_nan_and_infinite_als_params_are_refused_before_any_job(params, match):
    with pytest.raises(ValueError, match=match):
        MaskedALS(**params).fit(None)  # the Params are checked before the data is looked at


@pytest.mark.parametrize("params, match", [
    ({"tol": math.nan}, r"NMF: invalid tol=nan; it must be a finite number >= 0"),
    ({"eta": math.nan}, r"NMF: invalid eta=nan; it must be a finite number"),
    ({"timeLimit": math.inf}, r"NMF: invalid timeLimit=inf; it must be a finite number >= 0"),
])
def test_nan_and_infinite_nmf_params_are_refused(params, match):
    with pytest.raises(ValueError, match=match):
        NMF(k=1, maxIter=1, **params).fit(np.ones((2, 2)))


@pytest.mark.parametrize("override, message", [
    ("gate.rmse_margin=nan", "gate.rmse_margin must be a finite number >= 0, got nan"),
    ("gate.ndcg_margin=nan", "gate.ndcg_margin must be a finite number >= 0, got nan"),
    ("gate.rmse_margin=inf", "gate.rmse_margin must be a finite number >= 0, got inf"),
    ("holdout.relevant=nan", "holdout.relevant must be a finite number, got nan"),
    ("als.tol=nan", "als.tol must be a finite number >= 0, got nan"),
    ("als.rating_range=[1.0, nan]", "als.rating_range must be [] or [low, high] of two finite numbers with low < high"),
])
def test_recommend_job_refuses_nan_margins_before_any_work(tmp_path, capsys, override, message):
    """A NaN margin disabled the metric gate and a worse model was published with exit 0."""
    (tmp_path / "ratings.parquet").mkdir()
    path = tmp_path / "r.toml"
    path.write_text(f'[input]\npath = "{tmp_path / "ratings.parquet"}"\n[publish]\nroot = "{tmp_path / "pub"}"\n')
    assert recommend_job().main([str(path), "--set", override]) == 2  # EXIT_INVALID: the configuration's code
    assert f"--set {override}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "pub").exists()


def test_nan_margin_in_a_conf_file_is_refused(tmp_path):
    schema = recommend_job().SCHEMA
    path = tmp_path / "r.toml"
    path.write_text('[input]\npath = "x"\n[publish]\nroot = "p"\n[gate]\nrmse_margin = nan\n')
    with pytest.raises(ConfError, match=rf"{path}: gate.rmse_margin must be a finite number >= 0, got nan"):
        load_conf(schema, [path])
    schema = {"s": {"x": Option("float", 0.0, check=Interval(0, math.inf)), "t": Option("table", {})}}
    assert load_conf(schema, [], ["s.x=inf"])["s"]["x"] == math.inf  # an infinite bound admits infinity
    with pytest.raises(ConfError, match=r"s.x must be a finite number >= 0 and <= inf, got nan"):
        load_conf(schema, [], ["s.x=nan"])
    with pytest.raises(ConfError, match=r"s.t must be a table of name = string, finite number or boolean"):
        load_conf(schema, [], ["s.t.y=-inf"])


def test_utf8_byte_order_mark_in_a_conf_file_is_skipped(tmp_path):
    """A BOM (Windows editors) was a TOML syntax error at line 1, column 1."""
    path = tmp_path / "r.toml"
    path.write_bytes('\ufeff[s]\nx = 2.5\n'.encode())
    assert load_conf({"s": {"x": Option("float", 0.0)}}, [path])["s"]["x"] == 2.5
    path.write_bytes(b"\xef\xbb\xbf[s]\nx = \xe9\n")
    with pytest.raises(ConfError, match=rf"{path}: not valid UTF-8"):
        load_conf({"s": {"x": Option("float", 0.0)}}, [path])


# ------------------------------------------------------------------------------- MaskedALS fixtures
def _als(**params):
    return MaskedALS(**{"rank": 1, "maxIter": 2, "implicitFeedback": False, "backend": "local",
                        "regParam": 0.1, "biasRegParam": 0.1, **params})


RATINGS = [("u1", "1", 4.0, 0.0), ("u1", "01", 2.0, 86400.0), ("u2", "1", 5.0, 2 * 86400.0),
           ("u2", "2", 3.0, 3 * 86400.0), ("u3", "01", 1.0, 4 * 86400.0), ("u3", "2", 4.0, 5 * 86400.0)]
RATINGS_DDL = "user string, item string, rating double, t double"


@pytest.fixture(scope="module")
def als_model(spark):
    """A model trained on string item ids, "1" and "01" among them."""
    return _als().fit(spark.createDataFrame(RATINGS, RATINGS_DDL))


# ------------------------------------------------------------------------------- 2. NaN / inf timestamps
@pytest.mark.spark
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_infinite_timestamp_is_bad_input(spark, bad):
    """One NaN timestamp made the day range (x, nan): every rating fell in time bin 0."""
    rows = RATINGS + [("u4", "2", 3.0, bad)]
    with pytest.raises(InvalidInputError, match=r"MaskedALS \(input ratings\) has 1 null, NaN or infinite "
                                                r"timestamps in column 't', e.g. \(user='u4', item='2', rating=3.0\)"):
        _als(timestampCol="t", timeBins=3).fit(spark.createDataFrame(rows, RATINGS_DDL))


@pytest.mark.spark
def test_a_missing_time_is_predicted_at_the_last_training_day(spark):
    model = _als(timestampCol="t", timeBins=3).fit(spark.createDataFrame(RATINGS, RATINGS_DDL))
    query = spark.createDataFrame([("u1", "2", 0.0, math.nan), ("u2", "01", 0.0, None)], RATINGS_DDL)
    missing = [r.prediction for r in model.transform(query).orderBy("user").collect()]
    last = [r.prediction for r in model.transform(query.drop("t")).orderBy("user").collect()]
    assert np.all(np.isfinite(missing)) and missing == pytest.approx(last)


@pytest.mark.spark
def test_a_time_column_of_text_is_refused_by_transform(spark):
    model = _als(timestampCol="t", timeBins=3).fit(spark.createDataFrame(RATINGS, RATINGS_DDL))
    query = spark.createDataFrame([("u1", "2", "yesterday")], "user string, item string, t string")
    with spark_jobs(spark) as jobs, pytest.raises(
            InvalidInputError, match=r"MaskedALSModel.transform: column 't' must be numeric seconds or a timestamp, "
                                     r"got string"):
        model.transform(query)
    assert jobs == []


# ------------------------------------------------------------------------------- 3. NMFModel.transform input
@pytest.fixture(scope="module")
def nmf_model():
    return NMF(k=1, maxIter=5).fit(np.array([[1.0, 2.0], [2.0, 4.0], [1.0, 1.0]]))


@pytest.mark.spark
@pytest.mark.parametrize("value, problem", [(math.nan, r"1 null, NaN or infinite entries, e.g. nan"),
                                            (math.inf, r"1 null, NaN or infinite entries, e.g. inf"),
                                            (-1.0, r"1 negative entries, e.g. -1.0")])
def test_nmf_transform_of_vectors_refuses_what_numpy_refuses(spark, nmf_model, value, problem):
    from pyspark.ml.linalg import Vectors

    with pytest.raises(InvalidInputError, match=r"NaN or infinite|negative"):
        nmf_model.transform(np.array([[1.0], [value], [1.0]]))  # the numpy path
    arrays = spark.createDataFrame([([1.0, 2.0, 1.0],), ([1.0, value, 1.0],)], "features array<double>")
    with pytest.raises(InvalidInputError,
                       match=rf"NMFModel.transform \(column 'features'\) has {problem} at feature 1"):
        nmf_model.transform(arrays)
    vectors = spark.createDataFrame([(Vectors.dense([1.0, 2.0, 1.0]),), (Vectors.sparse(3, [1], [value]),)],
                                    ["features"])
    with pytest.raises(InvalidInputError, match=rf"has {problem} at feature 1"):
        nmf_model.transform(vectors)
    good = nmf_model.transform(arrays.limit(1)).first().coefficients
    assert np.allclose(good, nmf_model.transform(np.array([[1.0], [2.0], [1.0]]))[:, 0])


@pytest.mark.spark
@pytest.mark.parametrize("value, problem", [(math.nan, r"1 null, NaN or infinite entries, e.g. nan"),
                                            (None, r"1 null, NaN or infinite entries, e.g. nan"),
                                            (math.inf, r"1 null, NaN or infinite entries, e.g. inf"),
                                            (-0.5, r"1 negative entries, e.g. -0.5")])
def test_nmf_transform_of_coordinates_refuses_bad_values(spark, nmf_model, value, problem):
    coords = spark.createDataFrame([(0, "s", 1.0), (1, "s", value), (2, "t", 1.0)],
                                   "row long, col string, value double")
    with pytest.raises(InvalidInputError, match=rf"NMFModel.transform \(column 'value'\) has {problem} at "
                                                r"\(row=1, col='s'\)"):
        nmf_model.transform(coords)


@pytest.mark.spark
def test_nmf_transform_refuses_wrong_sizes_and_types(spark, nmf_model):
    short = spark.createDataFrame([([1.0, 2.0],)], "features array<double>")
    with pytest.raises(InvalidInputError, match=r"has 1 null vectors or vectors of another size, e.g. size 2"):
        nmf_model.transform(short)
    with spark_jobs(spark) as jobs, pytest.raises(InvalidInputError, match=r"must hold vectors or arrays of numbers"):
        nmf_model.transform(spark.createDataFrame([("a",)], "features string"))
    assert jobs == []


# ------------------------------------------------------------------------------- 4. id types of transform / subsets
@pytest.mark.spark
def test_ids_of_another_type_than_the_trained_ones_are_refused(spark, als_model):
    """int ids on a model trained on "1" and "01": one row came back as two with different predictions."""
    ints = spark.createDataFrame([("u1", 1)], "user string, item int")
    message = (r"column 'item' holds ids of type int, but the model was trained on ids of type string; ids are "
               r"matched exactly")
    with spark_jobs(spark) as jobs:
        with pytest.raises(InvalidInputError, match=rf"MaskedALSModel.transform: {message}"):
            als_model.transform(ints)
        with pytest.raises(InvalidInputError, match=r"recommendForItemSubset: column 'item' holds ids of type int"):
            als_model.recommendForItemSubset(ints, 2)
        with pytest.raises(InvalidInputError, match=rf"recommendations \(exclude\): {message}"):
            als_model.recommendForAllUsers(2, exclude=ints)
        with pytest.raises(InvalidInputError, match=r"\(candidates\): the candidates must be ids of the model's "
                                                    r"type string"):
            als_model.recommendForAllUsers(2, candidates=[1])
    assert jobs == []  # refused from the schema alone
    users = spark.createDataFrame([(1,)], "user bigint")
    with pytest.raises(InvalidInputError, match=r"recommendForUserSubset: column 'user' holds ids of type bigint"):
        als_model.recommendForUserSubset(users, 2)
    same = als_model.transform(spark.createDataFrame([("u1", "1"), ("u1", "01")], "user string, item string"))
    assert same.count() == 2 and len({r.prediction for r in same.collect()}) == 2


@pytest.mark.spark
def test_integer_ids_of_another_width_match_exactly(spark):
    rows = [(1, 10, 4.0), (1, 11, 2.0), (2, 10, 5.0), (2, 12, 3.0), (3, 11, 1.0), (3, 12, 4.0)]
    model = _als().fit(spark.createDataFrame(rows, "user bigint, item bigint, rating double"))
    narrow = spark.createDataFrame([(r[0], r[1]) for r in rows], "user int, item smallint")
    wide = spark.createDataFrame([(r[0], r[1]) for r in rows], "user bigint, item bigint")
    assert (sorted(tuple(r) for r in model.transform(narrow).collect())
            == sorted(tuple(r) for r in model.transform(wide).collect()))
    subset = model.recommendForUserSubset(narrow, 2, candidates=spark.createDataFrame([(11,), (12,)], "item int"))
    assert {r.user for r in subset.collect()} == {1, 2, 3}
    assert {x.item for r in subset.collect() for x in r.recommendations} <= {11, 12}


# ------------------------------------------------------------------------------- raw errors of MaskedALS inputs
@pytest.mark.spark
@pytest.mark.parametrize("kind, value", [("array<int>", [1]), ("struct<a:int>", (1,)), ("map<string,int>", {"a": 1})])
def test_complex_id_columns_are_refused_before_any_job(spark, kind, value):
    """An array, struct or map id column was an ArrowNotImplementedError ('unique' has no kernel)."""
    frame = spark.createDataFrame([(value, 1, 4.0)], f"user {kind}, item long, rating double")
    with spark_jobs(spark) as jobs, pytest.raises(
            InvalidInputError, match=rf"id column 'user' has type {re.escape(kind)}; ids must be one value of an "
                                     r"atomic type \(string, integer"):
        _als().fit(frame)
    assert jobs == []


@pytest.mark.spark
def test_the_same_column_for_users_and_items_is_refused(spark, als_model):
    frame = spark.createDataFrame([(1, 4.0)], "user long, rating double")
    with spark_jobs(spark) as jobs:
        with pytest.raises(ValueError, match=r"MaskedALS \(input ratings\): userCol and itemCol are both 'user'; "
                                             r"each must name its own column"):
            _als(itemCol="user").fit(frame)
        with pytest.raises(ValueError, match=r"ratingCol and timestampCol are both 'rating'"):
            _als(timestampCol="rating").fit(frame)
        with pytest.raises(ValueError, match=r"MaskedALSModel.transform: userCol and itemCol are both 'user'"):
            als_model.copy({als_model.itemCol: "user"}).transform(frame)
        with pytest.raises(ValueError, match=r"recommendForUsers: userCol and itemCol are both 'item'"):
            als_model.copy({als_model.userCol: "item"}).recommendForAllUsers(2)
    assert jobs == []


@pytest.mark.spark
def test_backticks_and_dots_in_column_names_are_names(spark):
    """A backtick in a column name was an AnalysisException (INVALID_ATTRIBUTE_NAME_SYNTAX)."""
    from sparknmf.ratings.ingest import column_ref

    plain = spark.createDataFrame(RATINGS, RATINGS_DDL)
    odd = plain.toDF("we`ird", "it.em", "rat`ing", "t.t")
    params = {"timestampCol": "t", "timeBins": 2, "duplicates": "last"}
    expected = _als(**params).fit(plain)
    model = _als(userCol="we`ird", itemCol="it.em", ratingCol="rat`ing", **{**params, "timestampCol": "t.t"}).fit(odd)
    assert model.globalMean == pytest.approx(expected.globalMean)
    assert np.allclose(model.userParams, expected.userParams) and np.allclose(model.itemParams, expected.itemParams)
    predicted = sorted(tuple(r) for r in model.transform(odd).collect())
    assert [p[-1] for p in predicted] == pytest.approx(
        [p[-1] for p in sorted(tuple(r) for r in expected.transform(plain).collect())])
    recs = model.recommendForUserSubset(odd, 1, exclude=odd.select(column_ref("we`ird"), column_ref("it.em"))).collect()
    assert recs[0].asDict().keys() == {"we`ird", "recommendations"}
    assert recs[0].recommendations[0].asDict().keys() == {"it.em", "rating"}
    assert _als(userCol="we`ird", itemCol="it.em", ratingCol="rat`ing", duplicates="mean").fit(odd).nIter == 2


# ------------------------------------------------------------------------------- 5. model Params on set and on load
@pytest.mark.spark
def test_rating_range_and_cold_start_strategy_are_checked_when_set(spark, als_model):
    """setRatingRange([5.0, 1.0]) on a fitted model made every prediction 1.0."""
    model = als_model.copy()
    message = (r"MaskedALSModel: invalid ratingRange=\[5.0, 1.0\]; it must be \[\] or \[low, high\] of two finite "
               r"numbers with low < high")
    with spark_jobs(spark) as jobs:
        with pytest.raises(ValueError, match=message):
            model.setRatingRange([5.0, 1.0])
        assert model.getRatingRange() == []  # refused before anything was set
        for bad in ([1.0, math.nan], [1.0, math.inf], [3.0]):
            with pytest.raises(ValueError, match=r"invalid ratingRange"):
                model.setRatingRange(bad)
        with pytest.raises(ValueError, match=message):
            model.copy({model.ratingRange: [5.0, 1.0]})
        with pytest.raises(ValueError, match=r"invalid coldStartStrategy='zero'; it must be one of \['nan', 'drop', "
                                             r"'biases'\]"):
            model.setColdStartStrategy("zero")
        model.set(model.ratingRange, [5.0, 1.0])  # Params.set bypasses the setters: checked before predicting
        with pytest.raises(ValueError, match=message):
            model.transform(spark.createDataFrame([("u1", "1")], "user string, item string"))
    assert jobs == []
    assert model.setRatingRange([1.0, 5.0]).getRatingRange() == [1.0, 5.0]
    with pytest.raises(ValueError, match=r"MaskedALS: invalid ratingRange=\[5.0, 1.0\]"):
        MaskedALS(ratingRange=[5.0, 1.0]).fit(None)


def _saved(model, tmp_path, name="model"):
    path = tmp_path / name
    model.write().overwrite().save(str(path))
    return path


def _edit_metadata(path, change):
    """Rewrite a saved model's metadata JSON line: ``change(dict) -> dict``, or a str to write as is."""
    part = next((path / "metadata").glob("part-*"))
    text = part.read_text()
    new = change(json.loads(text))
    part.write_text(new if isinstance(new, str) else json.dumps(new))
    for crc in (path / "metadata").glob(".*.crc"):
        crc.unlink()
    return str(path)


def _with_params(meta, **params):
    return {**meta, "paramMap": {**meta["paramMap"], **params}}


@pytest.mark.spark
@pytest.mark.parametrize("change, match", [
    (lambda m: {**m, "mu": math.nan}, r"metadata: mu=nan is not a finite number \(a fitted model has none\)"),
    (lambda m: {**m, "mu": "4.0"}, r"metadata: mu='4.0' is not a finite number"),
    (lambda m: {**m, "context": {**m["context"], "dayRange": [0.0, math.inf]}},
     r"metadata: context.dayRange\[1\]=inf is not a finite number"),
    (lambda m: {**m, "idTypes": ["string"]}, r"metadata: idTypes=\['string'\] must give the Spark type"),
    (lambda m: _with_params(m, ratingRange=[5.0, 1.0]), r"metadata: MaskedALSModel: invalid ratingRange=\[5.0, 1.0\]"),
    (lambda m: _with_params(m, coldStartStrategy="zero"),
     r"metadata: MaskedALSModel: invalid coldStartStrategy='zero'; it must be one of"),
    (lambda m: {**m, "defaultParamMap": {**m["defaultParamMap"], "coldStartStrategy": "zero"}},
     r"invalid coldStartStrategy='zero'"),
    (lambda m: {**m, "paramMap": [1]}, r"metadata: paramMap must be a JSON object of Param values"),
    (lambda m: {**m, "formatVersion": 0}, r"metadata: formatVersion=0 is not a format version \(an integer from 1 "
                                          r"to 1\)"),
    (lambda m: {**m, "formatVersion": True}, r"formatVersion=True is not a format version"),
    (lambda m: {**m, "formatVersion": "1"}, r"formatVersion='1' is not a format version"),
    (lambda m: {**m, "formatVersion": 2}, r"was written in format version 2; this sparknmf reads up to 1"),
    (lambda m: [m], r"metadata is malformed: expected a JSON object, found list"),
    (lambda m: {**m, "history": json.loads("[" * 40 + "]" * 40)}, r"metadata is nested more than 32 levels deep"),
    (lambda m: "[" * 100_000 + "]" * 100_000, r"metadata is nested more than 32 levels deep"),
])
def test_a_tampered_model_file_is_refused_on_load(spark, als_model, tmp_path, change, match):
    """A model whose mean was edited to NaN loaded and predicted NaN, although loading promises finite checks."""
    path = _edit_metadata(_saved(als_model, tmp_path), change)
    with pytest.raises(ValueError, match=rf"{re.escape(path)}"):
        MaskedALSModel.load(path)
    with pytest.raises(ValueError, match=match):
        MaskedALSModel.load(path)


@pytest.mark.spark
def test_an_untouched_model_file_still_loads(spark, als_model, tmp_path):
    loaded = MaskedALSModel.load(str(_saved(als_model.copy({als_model.ratingRange: [1.0, 5.0]}), tmp_path)))
    assert loaded.getRatingRange() == [1.0, 5.0] and loaded.globalMean == als_model.globalMean
    nmf_path = tmp_path / "nmf"
    NMF(k=1, maxIter=2).fit(np.ones((2, 2))).save(str(nmf_path))
    assert NMFModel.load(str(nmf_path)).rank == 1


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True])
def test_a_bad_seed_names_the_parameter_and_the_range(seed):
    """nmf(V, k, seed=-1) raised numpy's 'expected non-negative integer' without naming seed."""
    from sparknmf.analysis.clustering import multistart, nmf

    V = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\], got"):
        nmf(V, 2, seed=seed, max_iter=2)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\]"):
        multistart(V, 2, nrun=2, seed=seed, max_iter=2, mode="local")


@pytest.mark.spark
def test_nmf_estimator_with_a_negative_seed_names_seed(spark):
    with pytest.raises(ValueError, match=r"seed"):
        NMF(k=1, maxIter=2, seed=-1).fit(np.ones((2, 2)))


@pytest.mark.parametrize("algorithm", ["snmf/r", "snmf/l"])
def test_snmf_on_huge_values_asks_to_rescale(algorithm):
    """snmf/r on values like 1e300 raised a raw OverflowError from eta**2 in the penalty."""
    from sparknmf.analysis.clustering import nmf

    with pytest.raises(InvalidInputError, match=r"eta = 1e\+300 .*overflows.*rescale V"):
        nmf(np.full((4, 3), 1e300), 2, algorithm=algorithm, max_iter=3)


def test_float32_above_its_range_names_the_largest_value_and_the_maximum():
    """dtype='float32' with 1e39 overflowed to inf and the error advised a smaller k."""
    import scipy.sparse as sp

    from sparknmf.engine.validation import as_matrix

    V = np.ones((3, 3))
    V[1, 2] = 1e39
    for data in (V, sp.csr_matrix(V)):
        match = r"float32's maximum 3.40282e\+38 \(largest 1e\+39\).*dtype='float64'"
        with pytest.raises(InvalidInputError, match=match):
            as_matrix(data, dtype=np.float32)
    assert as_matrix(np.ones((2, 2)), dtype=np.float32).dtype == np.float32


@pytest.mark.spark
@pytest.mark.parametrize("make", ["coordinates", "vectors"])
def test_float32_above_its_range_in_a_dataframe_is_refused_before_the_fit(spark, make):
    """DataFrame input with dtype='float32' and 1e39 became inf in the blocks (the numpy path refused it)."""
    from sparknmf.engine.ingest import from_coordinates, from_vectors

    if make == "coordinates":
        frame = spark.createDataFrame([(0, 0, 1.0), (1, 1, 1e39), (2, 0, 2.0)], "row long, col long, value double")
        build = from_coordinates
    else:
        frame = spark.createDataFrame([([1.0, 1e39],), ([2.0, 0.0],)], "features array<double>")
        build = from_vectors
    match = r"float32's maximum 3.40282e\+38 \(largest 1e\+39\).*dtype='float64'"
    with pytest.raises(InvalidInputError, match=match):
        build(frame, dtype=np.float32)
    assert build(frame).stats["max"] == 1e39  # float64 keeps it


@pytest.mark.spark
def test_long_values_above_2_to_the_53_round_to_the_nearest_double(spark):
    """Arrow's safe cast raised ArrowInvalid mid-job for a long value above 2^53; numpy and Spark round it."""
    from sparknmf.engine.ingest import from_coordinates

    big = [2**53 + 1, 2**63 - 1]
    frame = spark.createDataFrame([(0, 0, big[0]), (1, 1, big[1]), (0, 1, 3)], "row long, col long, value long")
    V = from_coordinates(frame)
    assert V.stats["max"] == float(big[1]) and V.stats["sum"] == float(big[0]) + float(big[1]) + 3.0
    model = NMF(k=1, maxIter=2, tol=0.0).fit(frame)
    assert np.isfinite(model.W).all()


@pytest.mark.spark
@pytest.mark.parametrize("schema, rows, match", [
    ("features double", [(1.0,)], r"column 'features' must be a vector .* got double"),
    ("features array<string>", [(["1"],)], r"column 'features' must be a vector .* got array<string>"),
    ("features array<array<double>>", [([[1.0]],)], r"column 'features' must be a vector .* got array<array<double>>"),
    ("features array<double>", [(None,), ([1.0, 2.0],)], r"column 'features' has a null vector in its first row"),
])
def test_a_bad_features_column_names_the_column_and_its_type(spark, schema, rows, match):
    from sparknmf.engine.ingest import from_vectors

    with pytest.raises(InvalidInputError, match=match):
        from_vectors(spark.createDataFrame(rows, schema), "features")


@pytest.mark.spark
@pytest.mark.parametrize("name", ["m[1]", "m{a,b}", "m*", "m?"])
def test_a_model_path_with_glob_characters_is_refused(spark, tmp_path, name):
    """m[1] saved but could not be loaded back; loading m* picked up other models by glob."""
    model = NMF(k=1, maxIter=2).fit(np.ones((2, 2)))
    path = str(tmp_path / name)
    with pytest.raises(ValueError, match=r"contains the glob character\(s\)"):
        model.save(path)
    with pytest.raises(ValueError, match=rf"model path {re.escape(repr(path))} contains the glob"):
        NMFModel.load(path)
