"""The Spark backend against the local one, DataFrame inputs, persistence, bad input.

Runs in a classic session, and again in a Spark Connect session through
tests/test_connect.py (``--spark-session=connect``).
"""

import json

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from sparknmf import NMF, InvalidInputError, NMFModel, nmf
from sparknmf.decomposition.factorize import factorize
from sparknmf.engine.local import LocalMatrix
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.validation import as_matrix

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


def _matrix(seed=0, shape=(24, 18), density=0.7):
    rng = np.random.default_rng(seed)
    return rng.random(shape) * (rng.random(shape) < density)


def _same(a, b, tol=1e-8):
    np.testing.assert_allclose(a.W, b.W, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.H, b.H, rtol=tol, atol=tol)
    assert a.history == pytest.approx(b.history, rel=tol)


@pytest.mark.parametrize("grid", [(1, 1), (3, 1), (1, 2), (2, 3)])
@pytest.mark.parametrize("algorithm", ["bpp", "brunet"])
def test_spark_equals_local_on_every_grid(spark, grid, algorithm):
    V = as_matrix(sp.csr_matrix(_matrix()))
    local = factorize(LocalMatrix(V), 3, algorithm=algorithm, max_iter=4, tol=0, seed=1)
    block = BlockMatrix.from_array(spark, V, grid)
    try:
        assert block.grid == grid
        _same(local, factorize(block, 3, algorithm=algorithm, max_iter=4, tol=0, seed=1))
    finally:
        block.unpersist()


@pytest.mark.parametrize("algorithm", ["hals", "lee", "snmf/r", "snmf/l"])
def test_spark_equals_local_for_every_rule(spark, algorithm):
    V = as_matrix(_matrix(1))
    local = factorize(LocalMatrix(V), 3, algorithm=algorithm, max_iter=4, tol=0, seed=2)
    block = BlockMatrix.from_array(spark, V, (2, 1))
    try:
        _same(local, factorize(block, 3, algorithm=algorithm, max_iter=4, tol=0, seed=2))
    finally:
        block.unpersist()


def test_reduction_paths_and_joined_factors_agree(spark, monkeypatch):
    """Grouped reduction (large X) and joined factors (large factors) give the same fit (a job per half-step)."""
    V = as_matrix(_matrix(2))
    local = factorize(LocalMatrix(V), 3, max_iter=3, tol=0, init="nndsvd")
    block = BlockMatrix.from_array(spark, V, (2, 2))
    block.execution = "jobs"
    try:
        monkeypatch.setattr(BlockMatrix, "driver_reduce_rows", 0)
        monkeypatch.setattr(BlockMatrix, "broadcast_bytes", 0)
        _same(local, factorize(block, 3, max_iter=3, tol=0, init="nndsvd"))
    finally:
        block.unpersist()


def test_estimator_on_numpy_spark_backend_equals_function(spark):
    V = _matrix(3)
    model = NMF(k=3, maxIter=5, tol=0, backend="spark", numRowBlocks=2, seed=4).fit(V)
    ref = nmf(V, 3, max_iter=5, tol=0, seed=4)
    _same(model.result, ref)
    assert model.rowIds is None and model.colIds is None


def _coordinates(spark, V, row_ids, col_ids):
    rows, cols = np.nonzero(V)
    table = pa.table({"term": [row_ids[i] for i in rows], "doc": [col_ids[j] for j in cols],
                      "count": V[rows, cols]})
    return spark.createDataFrame(table)


def test_coordinates_with_string_ids(spark):
    V = _matrix(4)
    row_ids = [f"r{i:03d}" for i in range(V.shape[0])]
    col_ids = [f"c{j:03d}" for j in range(V.shape[1])]
    frame = _coordinates(spark, V, row_ids, col_ids)
    model = NMF(k=3, maxIter=5, tol=0, rowCol="term", colCol="doc", valueCol="count", numRowBlocks=2).fit(frame)
    _same(model.result, nmf(V, 3, max_iter=5, tol=0))
    assert model.rowIds.to_pylist() == row_ids and model.colIds.to_pylist() == col_ids
    rows = {r["id"]: r["features"] for r in model.rowFactors.collect()}
    np.testing.assert_allclose(rows["r005"], model.W[5])
    cols = {r["id"]: r["features"] for r in model.colFactors.collect()}
    np.testing.assert_allclose(cols["c007"], model.H[:, 7])


def test_vector_column_samples_are_columns(spark):
    from pyspark.ml.linalg import Vectors

    V = _matrix(5, shape=(6, 10))
    rows = []
    for j in range(V.shape[1]):
        column = V[:, j]
        vec = Vectors.sparse(6, {i: v for i, v in enumerate(column) if v}) if j % 2 else Vectors.dense(column)
        rows.append((f"s{j}", vec))
    frame = spark.createDataFrame(rows, ["sample", "features"])
    model = NMF(k=2, maxIter=5, tol=0, idCol="sample").fit(frame)
    _same(model.result, nmf(V, 2, max_iter=5, tol=0))
    assert model.colIds.to_pylist() == [f"s{j}" for j in range(10)]
    out = {r["sample"]: r["coefficients"] for r in model.transform(frame).collect()}
    np.testing.assert_allclose(out["s3"], model.project(V[:, [3]])[:, 0], atol=1e-10)


def test_array_column_and_generated_ids(spark):
    V = _matrix(6, shape=(5, 8))
    frame = spark.createDataFrame([(list(map(float, V[:, j])),) for j in range(8)], "features array<double>")
    model = NMF(k=2, maxIter=3, tol=0).fit(frame)
    assert model.W.shape == (5, 2) and model.H.shape == (2, 8)
    assert len(model.colIds) == 8


def test_transform_coordinates_matches_projection(spark):
    V = _matrix(7)
    model = NMF(k=3, maxIter=20).fit(V)
    new = _matrix(8, shape=(24, 4))
    frame = _coordinates(spark, new, list(range(24)), ["a", "b", "c", "d"])
    frame = frame.withColumnRenamed("term", "row").withColumnRenamed("doc", "col").withColumnRenamed("count", "value")
    out = {r["col"]: r["coefficients"] for r in model.transform(frame).collect()}
    expected = model.project(new)
    for j, name in enumerate("abcd"):
        np.testing.assert_allclose(out[name], expected[:, j], atol=1e-10)


def test_project_is_exact_nnls():
    import scipy.optimize

    V = _matrix(9)
    model = NMF(k=3, maxIter=30).fit(V)
    H = model.transform(V)
    for j in range(V.shape[1]):
        ref, _ = scipy.optimize.nnls(model.W, V[:, j])
        np.testing.assert_allclose(H[:, j], ref, atol=1e-9)


def test_model_save_load_round_trip(spark, tmp_path):
    V = _matrix(10)
    frame = _coordinates(spark, V, [f"g{i}" for i in range(24)], list(range(100, 118)))
    model = NMF(k=3, maxIter=4, tol=0, rowCol="term", colCol="doc", valueCol="count", seed=9).fit(frame)
    path = str(tmp_path / "model")
    model.save(path)
    loaded = NMFModel.load(path)
    np.testing.assert_array_equal(loaded.W, model.W)
    np.testing.assert_array_equal(loaded.H, model.H)
    assert loaded.history == model.history and loaded.nIter == 4 and loaded.uid == model.uid
    assert loaded.rowIds.to_pylist() == model.rowIds.to_pylist()
    assert loaded.colIds.to_pylist() == list(range(100, 118))
    assert loaded.getRowCol() == "term" and loaded.getOutputCol() == "coefficients"
    with pytest.raises(Exception):
        model.save(path)  # exists, no overwrite: refused, files untouched
    model.write().overwrite().save(path)
    assert NMFModel.load(path).objective == model.objective


def test_estimator_save_load_and_empty_constructors(tmp_path):
    est = NMF(k=5, algorithm="snmf/r", beta=0.2, maxIter=7)
    path = str(tmp_path / "est")
    est.save(path)
    loaded = NMF.load(path)
    assert (loaded.getK(), loaded.getAlgorithm(), loaded.getBeta(), loaded.getMaxIter()) == (5, "snmf/r", 0.2, 7)
    assert loaded.uid == est.uid
    assert NMFModel().hasParam("featuresCol") and NMF().getK() == 2
    with pytest.raises(ValueError, match="is empty"):
        NMFModel().W


def test_load_rejects_wrong_class_missing_dir_and_newer_format(tmp_path, spark):
    est_path = str(tmp_path / "est")
    NMF(k=3).save(est_path)
    with pytest.raises(ValueError, match="not a 'sparknmf.NMFModel'"):
        NMFModel.load(est_path)
    with pytest.raises(ValueError, match="not a saved sparknmf model"):
        NMFModel.load(str(tmp_path / "nowhere"))
    model = NMF(k=2, maxIter=2).fit(_matrix(11))
    path = str(tmp_path / "model")
    model.save(path)
    meta_dir = tmp_path / "model" / "metadata"
    part = next(p for p in meta_dir.iterdir() if p.name.startswith("part-"))
    meta = json.loads(part.read_text())
    meta["formatVersion"] = 99
    part.write_text(json.dumps(meta))
    for crc in meta_dir.glob(".*.crc"):
        crc.unlink()
    with pytest.raises(ValueError, match="format version 99"):
        NMFModel.load(path)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("a", "x", 1.0), ("b", "y", -2.0)], r"1 entries with a negative value, e.g. -2.0 at \(row='b', col='y'\)"),
        ([("a", "x", 1.0), ("b", "y", float("nan"))], "NaN/inf value"),
        ([("a", "x", 1.0), ("b", "y", float("inf"))], "NaN/inf value"),
        ([("a", "x", 1.0), ("b", "y", None)], "null or NaN/inf value"),
        ([("a", "x", 1.0), ("a", "x", 2.0)], r"duplicate coordinate, e.g. .* at \(row='a', col='x'\)"),
        ([("a", "x", 1.0), (None, "y", 2.0)], "column 'row' has null ids"),
    ],
)
def test_bad_coordinates_rejected(spark, rows, message):
    frame = spark.createDataFrame(rows, "row string, col string, value double")
    with pytest.raises(InvalidInputError, match=message):
        NMF(k=1).fit(frame)


def test_duplicates_summed_when_asked(spark):
    frame = spark.createDataFrame([("a", "x", 1.0), ("a", "x", 2.0), ("b", "y", 1.0)],
                                  "row string, col string, value double")
    model = NMF(k=2, duplicates="sum", maxIter=200, tol=1e-12, init="nndsvd").fit(frame)
    np.testing.assert_allclose(model.W @ model.H, [[3.0, 0.0], [0.0, 1.0]], atol=1e-6)


def test_bad_frames_rejected(spark):
    frame = spark.createDataFrame([("a", "x", 1.0)], "row string, col string, value double")
    with pytest.raises(InvalidInputError, match=r"unknown column\(s\) \['value2'\]"):
        NMF(k=1, valueCol="value2").fit(frame)
    text = spark.createDataFrame([("a", "x", "1")], "row string, col string, value string")
    with pytest.raises(InvalidInputError, match="column 'value' must be numeric"):
        NMF(k=1).fit(text)
    with pytest.raises(InvalidInputError, match="is empty"):
        NMF(k=1).fit(frame.limit(0))
    with pytest.raises(ValueError, match=r"k=3 is out of range.*min\(n, m\) = 1"):
        NMF(k=3).fit(frame)
    vectors = spark.createDataFrame([([1.0, 2.0],), ([1.0],)], "features array<double>")
    with pytest.raises(InvalidInputError, match="vector size other than 2"):
        NMF(k=1).fit(vectors)


def test_nndsvd_on_spark_equals_local(spark):
    V = as_matrix(_matrix(12))
    block = BlockMatrix.from_array(spark, V, (2, 1))
    try:
        _same(factorize(LocalMatrix(V), 3, init="nndsvda", max_iter=2, tol=0),
              factorize(block, 3, init="nndsvda", max_iter=2, tol=0))
    finally:
        block.unpersist()


@pytest.mark.parametrize("grid, passes", [((2, 1), 1 + 5), ((1, 2), 5 + 1), ((2, 2), 2 * 5 + 1)])
def test_one_pass_over_v_per_iteration_when_a_side_is_fused(spark, monkeypatch, grid, passes):
    """Row- (column-) partitioned layouts carry the other side's cross product: one pass over V (a Spark job, or a
    request to the resident tasks) per iteration."""
    V = as_matrix(_matrix(14))
    block = BlockMatrix.from_array(spark, V, grid)
    calls = []
    original = BlockMatrix._map

    def counting(self, *args):
        calls.append(args[0])
        return original(self, *args)

    monkeypatch.setattr(BlockMatrix, "_map", counting)
    try:
        fit = factorize(block, 3, init="random", max_iter=5, tol=0)  # no SVD passes
    finally:
        block.unpersist()
    assert len(calls) == passes
    _same(fit, factorize(LocalMatrix(V), 3, init="random", max_iter=5, tol=0))


def test_resume_from_checkpoint_on_spark(spark, tmp_path):
    V = _matrix(15)
    args = dict(k=3, tol=0.0, backend="spark", numRowBlocks=2, checkpointInterval=2, checkpointDir=str(tmp_path))
    NMF(maxIter=3, **args).fit(V)  # the "crashed" run: its checkpoint holds iteration 2
    resumed = NMF(maxIter=5, **args).fitWith(V, resume=True)
    _same(resumed.result, nmf(V, 3, max_iter=5, tol=0))
    with pytest.raises(ValueError, match="needs checkpointDir"):
        NMF(k=3).fitWith(V, resume=True)


def test_job_descriptions_set_and_restored(spark):
    from sparknmf.engine.session import describe_jobs

    seen = []
    with describe_jobs(spark, "sparknmf: iter 7, update H"):
        seen.append(spark.conf.get("spark.job.description"))
    assert seen == ["sparknmf: iter 7, update H"]
    assert spark.conf.get("spark.job.description", None) is None


def test_float32_blocks_from_coordinates(spark):
    V = _matrix(16)
    frame = _coordinates(spark, V, list(range(24)), list(range(18)))
    args = dict(k=3, maxIter=10, tol=0.0, rowCol="term", colCol="doc", valueCol="count")
    single = NMF(dtype="float32", **args).fit(frame)
    assert single.W.dtype == np.float32
    assert single.objective == pytest.approx(NMF(**args).fit(frame).objective, rel=1e-4)


def test_rank_checked_before_blocks_are_built(spark, monkeypatch):
    import sparknmf.engine.ingest

    frame = _coordinates(spark, _matrix(17, shape=(3, 5)), list(range(3)), list(range(5)))
    monkeypatch.setattr(sparknmf.engine.ingest, "_finish", lambda *a, **k: pytest.fail("blocks were built"))
    with pytest.raises(ValueError, match="k=4 is out of range"):
        NMF(k=4, rowCol="term", colCol="doc", valueCol="count").fit(frame)


@pytest.mark.parametrize("row_ids", [
    [3, 1, 2, 5, 4, 7, 6],                      # a contiguous run: indexed by subtraction
    [30, 10, 20, 50, 40, 70, 61],               # gaps: a broadcast join
    ["r3", "r1", "r2", "r5", "r4", "r7", "r6"],  # strings, and columns of another type: distinct ids in two jobs
])
def test_ingest_maps_ids_to_sorted_positions(spark, row_ids):
    from sparknmf.engine.ingest import from_coordinates

    V = _matrix(6, shape=(7, 5), density=1.0)
    col_ids = [2, 0, 1, 4, 3]
    block = from_coordinates(_coordinates(spark, V, row_ids, col_ids), "term", "doc", "count", grid=(2, 2))
    try:
        assert block.row_ids.to_pylist() == sorted(row_ids) and block.col_ids.to_pylist() == sorted(col_ids)
        expected = V[np.argsort(row_ids)][:, np.argsort(col_ids)]
        np.testing.assert_array_equal(block.multiply("W", np.eye(5)), expected)
    finally:
        block.unpersist()
