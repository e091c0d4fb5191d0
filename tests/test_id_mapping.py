"""Ids indexed in Spark without collecting them (issue 16, the ids item; sparknmf.engine.id_index).

Oracle: the driver's mapping, the distinct ids sorted by Arrow (``distinct_ids`` / the local backend), which
the executors' sort-based dense rank must reproduce id for id.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_als import FAST

from sparknmf import InvalidInputError, MaskedALS
from sparknmf.engine.id_index import IdIndex, index_ids
from sparknmf.engine.ingest import count_ids as ingest_count_ids
from sparknmf.engine.ingest import distinct_ids

pytestmark = pytest.mark.spark

CASES = {
    # "10" < "9" < "a" as strings; non-ASCII sorts by its UTF-8 bytes; an empty string and a space
    "strings": pa.array(["9", "10", "100", "a", "B", "é", "", "a b", "zz", "ü", "Z", "09"] * 3),
    # negative, beyond 2^32 and 2^53: 10 < 9 never as numbers
    "integers": pa.array([9, 10, 100, -1, -1000, 2**40, 2**53 + 1, 0, 7, 10] * 2, pa.int64()),
    "doubles": pa.array([1.5, float("nan"), -0.5, 3.0, 1e300, -1e-300, 1.5]),
    "dates": pa.array(np.array(["2024-03-01", "1999-12-31", "2024-02-29"], "datetime64[D]")),
    "binary": pa.array([b"\xff", b"\x00\x01", b"\x00", b"a"], pa.binary()),
}


def _mapping(index: IdIndex):
    table = index.frame.toArrow()
    order = np.argsort(table.column("index").to_numpy())
    return table.column("index").to_numpy()[order], table.column("id").take(pa.array(order)).combine_chunks()


def _same(a: pa.Array, b: pa.Array):
    """Equal values in equal order (NaN equals NaN)."""
    assert a.type == b.type
    np.testing.assert_array_equal(a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False))


@pytest.mark.parametrize("case", sorted(CASES))
def test_mapping_equals_the_drivers_sorted_ids(spark, case):
    ids = CASES[case]
    frame = spark.createDataFrame(pa.table({"the.id": ids, "value": pa.array(np.arange(len(ids)), pa.int64())}))
    unique = pc.unique(ids)
    expected = unique.take(pc.sort_indices(unique))  # the driver's rule: distinct ids sorted by Arrow
    driver = distinct_ids(frame.withColumnRenamed("the.id", "id"), "id", "test")  # NMF's driver ingest
    _same(driver, expected.cast(driver.type))
    index = index_ids(frame, "the.id", "test")
    positions, found = _mapping(index)
    assert index.count == len(expected)
    np.testing.assert_array_equal(positions, np.arange(len(expected)))  # dense: 0..count-1, each once
    _same(found, driver)
    _same(index.collect(), found)
    index.release()


def test_more_partitions_than_ids_and_one_id(spark):
    """Empty partitions count zero rows; a single id gets index 0."""
    frame = spark.createDataFrame(pa.table({"id": pa.array([5, 3, 5, 3, 1], pa.int64())})).repartition(7)
    with _shuffle_partitions(spark, 16):
        index = index_ids(frame, "id", "test")
        one = index_ids(frame.filter("id = 5"), "id", "test")
    assert _mapping(index)[1].to_pylist() == [1, 3, 5] and index.count == 3
    assert _mapping(one)[1].to_pylist() == [5] and one.count == 1


def test_null_ids_are_refused(spark):
    frame = spark.createDataFrame([("a", 1.0), (None, 2.0), ("b", 3.0)], "user string, rating double")
    with pytest.raises(InvalidInputError, match="test: column 'user' has null ids"):
        index_ids(frame, "user", "test")


class _shuffle_partitions:
    def __init__(self, spark, count):
        self.spark, self.count = spark, count

    def __enter__(self):
        self.previous = self.spark.conf.get("spark.sql.shuffle.partitions")
        self.spark.conf.set("spark.sql.shuffle.partitions", str(self.count))

    def __exit__(self, *exc):
        self.spark.conf.set("spark.sql.shuffle.partitions", self.previous)


def test_indexing_launches_few_jobs_and_collects_only_counts(spark, monkeypatch):
    """Four jobs (the sort's sample, the distinct and sort shuffles, the counts that materialise the checkpoint),
    and the counts are one row per partition: nothing else is collected (the ids stay in the checkpoint)."""
    sc = spark.sparkContext
    frame = spark.createDataFrame(pa.table({"id": pa.array([f"id-{x:05d}" for x in range(2000)] * 2)}))
    sc.setJobGroup("sparknmf-id-index", "index ids")
    try:
        index = index_ids(frame, "id", "test")
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    jobs = sc.statusTracker().getJobIdsForGroup("sparknmf-id-index")
    assert len(jobs) <= 4, jobs
    assert index.count == 2000
    received = []
    original = type(index.frame).toArrow

    def recording(self):
        table = original(self)
        received.append(table.num_rows)
        return table

    monkeypatch.setattr(type(index.frame), "toArrow", recording)
    again = index_ids(frame, "id", "test")
    # one row per partition (at most spark.sql.shuffle.partitions=4, tests/conftest.py), not 2000 ids
    assert len(received) == 1 and 1 <= received[0] <= 4 and again.count == 2000


def _als_frame(spark):
    """Ratings whose user ids sort differently as strings and as numbers, and negative integer item ids."""
    rng = np.random.default_rng(3)
    users = [str(u) for u in (9, 10, 100, 11, 2, 20, 1000, 3)]
    items = [-5, 7, 70, -50, 0, 8]
    pairs = [(u, i) for u in users for i in items if rng.random() < 0.6] + [(u, items[n % 6]) for n, u in
                                                                            enumerate(users)]
    pairs = sorted(set(pairs))
    table = pa.table({"user": [u for u, _ in pairs], "item": pa.array([i for _, i in pairs], pa.int64()),
                      "rating": pa.array(np.round(rng.uniform(1, 5, len(pairs))))})
    return spark.createDataFrame(table)


def test_executors_fit_equals_the_local_driver_fit_without_collecting_ids(spark, monkeypatch):
    """The executors placement indexes ids in Spark (the collecting paths are patched to raise) and gives the
    parameters of a driver fit whose ids were sorted by Arrow on the driver (backend='local')."""
    from sparknmf.engine import id_index
    from sparknmf.ratings import ingest

    frame = _als_frame(spark).cache()
    est = MaskedALS(**{**FAST, "maxIter": 3, "numUserBlocks": 3, "numItemBlocks": 2})
    driver = est.copy({est.backend: "local", est.factorPlacement: "driver"}).fit(frame)

    def refuse(*args, **kwargs):
        raise AssertionError("ids collected to the driver")

    monkeypatch.setattr(ingest, "_local_ids", refuse)
    monkeypatch.setattr(id_index.IdIndex, "collect", refuse)
    executors = est.copy({est.backend: "spark", est.factorPlacement: "executors"}).fit(frame)
    monkeypatch.undo()
    assert executors.placement == "executors"
    np.testing.assert_allclose(executors.userParams, driver.userParams, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(executors.itemParams, driver.itemParams, rtol=1e-10, atol=1e-12)
    assert executors.userIds.equals(driver.userIds) and executors.itemIds.equals(driver.itemIds)
    assert driver.userIds.to_pylist()[:3] == ["10", "100", "1000"]
    a = {r.id: r.features for r in driver.userFactors.collect()}
    b = {r.id: r.features for r in executors.userFactors.collect()}
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-10, abs=1e-12)


def test_duplicates_named_by_their_ids_with_ids_in_spark(spark):
    frame = spark.createDataFrame([("10", 1, 1.0), ("9", 2, 2.0), ("9", 2, 3.0)], "user string, item long, "
                                  "rating double")
    est = MaskedALS(**{**FAST, "backend": "spark", "factorPlacement": "executors"})
    with pytest.raises(InvalidInputError, match=r"1 duplicate \(user, item\) pairs, e.g. \(user='9', item=2\)"):
        est.fit(frame)


def _nmf_coordinates(spark):
    """V (7×5) as string row ids that sort differently as strings and numbers, integer column ids with gaps."""
    rng = np.random.default_rng(5)
    V = rng.random((7, 5)) * (rng.random((7, 5)) < 0.7)
    V[np.arange(5), np.arange(5)] += 1.0  # every row and column has an entry
    rows, cols = np.nonzero(V)
    row_ids, col_ids = ["9", "10", "100", "a", "B", "11", "2"], [30, -4, 7, 1000, 8]
    table = pa.table({"row": [row_ids[i] for i in rows], "col": pa.array([col_ids[j] for j in cols], pa.int64()),
                      "value": V[rows, cols]})
    return spark.createDataFrame(table)


def _refuse_collecting_ids(monkeypatch):
    from sparknmf.engine import id_index, ingest

    def refuse(*args, **kwargs):
        raise AssertionError("ids collected to the driver")

    for name in ("distinct_ids", "distinct_id_pair"):
        monkeypatch.setattr(ingest, name, refuse)
    monkeypatch.setattr(id_index.IdIndex, "collect", refuse)


def _by_id(frame):
    return {row.id: np.array(row.features) for row in frame.collect()}


def _assert_same_rows(got, want):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12)


def test_nmf_executors_fit_ranks_ids_in_spark_and_equals_the_driver_fit(spark, monkeypatch, tmp_path):
    """NMF on coordinates with the factors in the executors: ids ranked there (collecting patched to raise), the
    factors, rowFactors/colFactors, transform, complete, save and load equal a driver fit, id for id."""
    from sparknmf import NMF, NMFModel

    frame = _nmf_coordinates(spark).cache()
    est = NMF(k=2, algorithm="hals", init="random", maxIter=4, tol=0.0, seed=1)
    driver = est.copy({est.factorPlacement: "driver"}).fit(frame)
    _refuse_collecting_ids(monkeypatch)
    model = est.copy({est.factorPlacement: "executors"}).fit(frame)
    assert model.placement == "executors" and isinstance(model.rowIds, IdIndex) and isinstance(model.colIds, IdIndex)
    _assert_same_rows(_by_id(model.rowFactors), _by_id(driver.rowFactors))
    _assert_same_rows(_by_id(model.colFactors), _by_id(driver.colFactors))
    got, want = (m.transform(frame).sort("col").toArrow() for m in (model, driver))  # (col, coefficients)
    assert got.column("col").to_pylist() == want.column("col").to_pylist()
    np.testing.assert_allclose(np.array(got.column("coefficients").to_pylist()),
                               np.array(want.column("coefficients").to_pylist()), rtol=1e-8, atol=1e-12)
    pairs = spark.createDataFrame([("a", 7), ("100", -4), ("zz", 7)], "row string, col long")
    got, want = (m.complete(pairs).sort("row", "col").toArrow() for m in (model, driver))
    np.testing.assert_allclose(np.array(got.column("prediction").to_pylist(), float),
                               np.array(want.column("prediction").to_pylist(), float), rtol=1e-10)  # NaN for "zz"
    path = str(tmp_path / "nmf-executors")
    model.save(path)
    loaded = NMFModel.load(path)
    assert loaded.placement == "executors" and isinstance(loaded.rowIds, IdIndex)
    _assert_same_rows(_by_id(loaded.rowFactors), _by_id(driver.rowFactors))
    monkeypatch.undo()
    assert loaded.rowIds.collect().equals(driver.rowIds) and model.colIds.collect().equals(driver.colIds)
    frame.unpersist()


def test_nmf_executors_fit_of_vectors_ranks_sample_ids_in_spark(spark, monkeypatch):
    from pyspark.ml.linalg import Vectors

    from sparknmf import NMF

    rng = np.random.default_rng(2)
    V = rng.random((4, 6)) + 0.1
    ids = ["s10", "s9", "s100", "x", "a", "s2"]
    frame = spark.createDataFrame([(ids[j], Vectors.dense(V[:, j])) for j in range(6)], ["sample", "features"])
    est = NMF(k=2, algorithm="bpp", init="random", maxIter=3, tol=0.0, idCol="sample")
    driver = est.copy({est.factorPlacement: "driver"}).fit(frame)
    _refuse_collecting_ids(monkeypatch)
    model = est.copy({est.factorPlacement: "executors"}).fit(frame)
    assert isinstance(model.colIds, IdIndex)
    _assert_same_rows(_by_id(model.colFactors), _by_id(driver.colFactors))
    _assert_same_rows(_by_id(model.rowFactors), _by_id(driver.rowFactors))


def test_nmf_placement_is_decided_from_counts_before_any_id_is_collected(spark, monkeypatch):
    """A forced driver placement beyond the budget is a ValueError raised after counting the ids (one job,
    counts only), before they are collected."""
    from sparknmf import NMF
    from sparknmf.engine import placement as placement_module

    frame = _nmf_coordinates(spark)
    _refuse_collecting_ids(monkeypatch)
    monkeypatch.setattr(placement_module, "driver_budget", lambda spark: (100.0, "spark.driver.maxResultSize"))
    with pytest.raises(ValueError, match=r"factorPlacement='driver'.*12 rows"):
        NMF(k=2, init="random", factorPlacement="driver").fit(frame)


def test_masked_als_on_spark_with_the_driver_placement_counts_then_collects_ids(spark, monkeypatch):
    """backend='spark' with the parameters on the driver: the ids are counted, then collected (never ranked in
    Spark first), and the fit equals the local one."""
    from sparknmf.ratings import ingest

    frame = _als_frame(spark).cache()
    est = MaskedALS(**{**FAST, "maxIter": 2, "numUserBlocks": 2, "numItemBlocks": 2})
    local = est.copy({est.backend: "local"}).fit(frame)

    def refuse(*args, **kwargs):
        raise AssertionError("ids ranked in Spark for a driver placement")

    monkeypatch.setattr(ingest, "index_ids", refuse)
    counted = []
    monkeypatch.setattr(ingest, "count_ids", lambda *a, **k: counted.append(1) or ingest_count_ids(*a, **k))
    model = est.copy({est.backend: "spark"}).fit(frame)
    assert model.placement == "driver" and counted == [1]
    np.testing.assert_allclose(model.userParams, local.userParams, rtol=1e-10, atol=1e-12)
    assert model.userIds.equals(local.userIds)
    frame.unpersist()
