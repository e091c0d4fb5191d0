"""Job inputs: dense text files, and DataFrame inputs collected to the driver in the Estimators' id order."""

import numpy as np
import pyarrow as pa
import pytest

from sparknmf.datasets import read_dense_text
from sparknmf.errors import InvalidInputError
from sparknmf.pipeline.inputs import MatrixInput


def test_dense_text_with_header_row_names_and_labels(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("name,a,class,b\nr1,1,x,2\n\nr2,3.5,y,0\n")
    text = read_dense_text(path, delimiter=",", header=True, row_names=True, label_column="class")
    np.testing.assert_array_equal(text.matrix, [[1, 2], [3.5, 0]])
    assert text.row_names == ["r1", "r2"] and text.col_names == ["a", "b"] and text.labels == ["x", "y"]
    by_position = read_dense_text(path, delimiter=",", header=True, row_names=True, label_column="3")
    assert by_position.labels == ["x", "y"]
    plain = tmp_path / "v.tsv"
    plain.write_text("1\t2\n3\t4\n")
    assert read_dense_text(plain).matrix.shape == (2, 2) and read_dense_text(plain).row_names is None


@pytest.mark.parametrize("content, kwargs, message", [
    ("1\t2\n3\n", {}, r"line 2 has 1 fields, expected 2"),
    ("1\tx\n", {}, r"line 1, field 2: non-numeric value 'x'"),
    ("1\t-2\n", {}, r"has 1 negative entries"),
    ("a\tb\n1\t2\n", {"header": True, "label_column": "c"}, r"no column named 'c'"),
    ("1\t2\n", {"label_column": "5"}, r"label column 5 is outside the 2 fields"),
    ("\n\n", {}, r"no data lines"),
])
def test_bad_dense_text_names_the_line(tmp_path, content, kwargs, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        read_dense_text(path, **kwargs)


@pytest.mark.spark
def test_dataframes_are_collected_in_sorted_id_order(spark):
    coords = spark.createDataFrame(pa.table({"r": ["b", "a", "b"], "c": [20, 10, 10], "v": [1.0, 2.0, 3.0]}))
    data = MatrixInput(coords, {"rowCol": "r", "colCol": "c", "valueCol": "v"}).to_driver()
    assert data.row_ids == ["a", "b"] and data.col_ids == [10, 20]
    np.testing.assert_array_equal(data.data.toarray(), [[2, 0], [3, 1]])
    duplicate = spark.createDataFrame(pa.table({"r": ["a", "a"], "c": [1, 1], "v": [1.0, 2.0]}))
    with pytest.raises(InvalidInputError, match="duplicate coordinates"):
        MatrixInput(duplicate, {"rowCol": "r", "colCol": "c", "valueCol": "v"}).to_driver()
    vectors = spark.createDataFrame(pa.table({"id": ["s2", "s1"], "f": pa.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])}))
    data = MatrixInput(vectors, {"featuresCol": "f", "idCol": "id"}).to_driver()
    assert data.col_ids == ["s1", "s2"]  # samples are the columns of V
    np.testing.assert_array_equal(data.data.toarray(), [[0, 1], [3, 0], [0, 2]])


@pytest.mark.spark
def test_holdout_split_is_a_stable_seeded_hash(spark):
    from sparknmf.pipeline.inputs import holdout_split

    frame = spark.range(2000).selectExpr("id % 97 as user", "id as item", "1.0 as rating")
    train, held = holdout_split(frame, 0.25, 3, ("user", "item"))
    held_items = {r["item"] for r in held.collect()}
    assert train.count() + len(held_items) == 2000 and 400 < len(held_items) < 600
    shuffled = frame.repartition(7).orderBy("rating")  # another partitioning and order: the same split
    assert {r["item"] for r in holdout_split(shuffled, 0.25, 3, ("user", "item"))[1].collect()} == held_items
    assert {r["item"] for r in holdout_split(frame, 0.25, 4, ("user", "item"))[1].collect()} != held_items
    with pytest.raises(ValueError, match=r"held-out fraction must be in \(0, 1\)"):
        holdout_split(frame, 1.0, 3, ("user", "item"))


def test_content_digest_follows_the_bytes(tmp_path):
    from sparknmf.pipeline.inputs import content_digest

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "part-0.parquet").write_bytes(b"abc")
    (tmp_path / "t.csv").write_text("1,2,3\n")
    first = content_digest(str(tmp_path / "d"), str(tmp_path / "t.csv"))
    assert first == content_digest(str(tmp_path / "d"), str(tmp_path / "t.csv"), "")
    (tmp_path / "t.csv").write_text("1,2,4\n")
    assert content_digest(str(tmp_path / "d"), str(tmp_path / "t.csv")) != first
    assert content_digest("hdfs://namenode/ratings") is None
