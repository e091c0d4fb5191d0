"""Staged outputs and versioned publications: atomic switch, hard crashes at every step, rollback, pruning, lock."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparknmf.pipeline.publish import Publication, PublishError, metric_gate
from sparknmf.pipeline.staging import StagedDirectory, write_json

ROOT = Path(__file__).resolve().parents[1]


def publish(pub, content, **meta):
    stage = pub.stage()
    (stage / "data.txt").write_text(content)
    return pub.commit(stage, {"content": content, **meta})


def readable(pub):
    """What a reader sees: the current version's data (must be complete)."""
    version = pub.current()
    return None if version is None else (version.path / "data.txt").read_text()


# ------------------------------------------------------------------------------------------ StagedDirectory
def test_staged_directory_appears_only_when_complete(tmp_path):
    out = StagedDirectory(tmp_path / "out")
    assert out.problem() is None
    stage = out.open()
    (stage / "a.txt").write_text("new")
    assert not (tmp_path / "out").exists() and stage.name.startswith(".out.staging-")
    out.commit()
    assert (tmp_path / "out" / "a.txt").read_text() == "new" and not stage.exists()


def test_existing_output_is_refused_or_replaced_last(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("old")
    assert "exists already (set output.overwrite = true" in StagedDirectory(tmp_path / "out").problem()
    out = StagedDirectory(tmp_path / "out", overwrite=True)
    assert out.problem() is None
    (out.open() / "a.txt").write_text("new")
    assert (tmp_path / "out" / "a.txt").read_text() == "old"  # untouched until commit
    out.discard()
    assert (tmp_path / "out" / "a.txt").read_text() == "old" and not out.stage.exists()
    out = StagedDirectory(tmp_path / "out", overwrite=True)
    (out.open() / "a.txt").write_text("new")
    out.commit()
    assert (tmp_path / "out" / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_output_renamed_aside_by_a_crash_is_put_back(tmp_path):
    aside = tmp_path / ".out.previous-abc"
    aside.mkdir()
    (aside / "a.txt").write_text("old")
    assert "exists already" in StagedDirectory(tmp_path / "out").problem()
    assert (tmp_path / "out" / "a.txt").read_text() == "old" and not aside.exists()


def test_output_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    assert StagedDirectory(tmp_path / "file" / "out").problem().endswith("is not a folder")


def test_write_json_replaces_atomically_and_writes_nan_as_null(tmp_path):
    import numpy as np

    path = write_json(tmp_path / "m.json", {"a": float("nan"), "b": np.float64(2.0), "c": [np.int64(1), float("inf")]})
    assert json.loads(path.read_text()) == {"a": None, "b": 2.0, "c": [1, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


# ------------------------------------------------------------------------------------------ Publication
def test_versions_history_keep_and_rollback(tmp_path):
    pub = Publication(tmp_path / "pub", keep=3)
    assert pub.current() is None and pub.history() == []
    for day in range(1, 6):
        version = publish(pub, f"day {day}")
        assert version.name == f"v00000{day}" and readable(pub) == f"day {day}"
    assert pub.history() == ["v000003", "v000004", "v000005"]
    assert sorted(p.name for p in pub.versions_dir.iterdir()) == ["v000003", "v000004", "v000005"]
    assert pub.current().meta["content"] == "day 5" and pub.current().meta["version"] == "v000005"
    assert pub.rollback().name == "v000004" and readable(pub) == "day 4"
    assert pub.history() == ["v000003", "v000004"] and not (pub.versions_dir / "v000005").exists()
    assert publish(pub, "day 6").name == "v000006"  # numbers are never reused
    pub.rollback()
    pub.rollback()
    assert readable(pub) == "day 3"
    with pytest.raises(PublishError, match=r"no previous version to roll back to \(history: \['v000003'\]\)"):
        pub.rollback()
    with pytest.raises(ValueError, match=r"keep must be an integer >= 2"):
        Publication(tmp_path, keep=1)


def test_failed_validation_switches_nothing(tmp_path):
    pub = Publication(tmp_path / "pub")
    publish(pub, "good")
    stage = pub.stage()
    (stage / "data.txt").write_text("bad")

    def validate(path):
        raise PublishError(f"{path} has 3 NaN")

    with pytest.raises(PublishError, match="has 3 NaN"):
        pub.commit(stage, {}, validate=validate)
    assert readable(pub) == "good" and pub.history() == ["v000001"]


def test_damaged_pointer_is_reported(tmp_path):
    pub = Publication(tmp_path)
    (tmp_path / "CURRENT").write_text("{not json")
    with pytest.raises(PublishError, match=r"CURRENT is damaged"):
        pub.current()


def test_lock_excludes_a_second_run_and_takes_over_a_dead_one(tmp_path):
    pub = Publication(tmp_path)
    with pub.lock():
        with pytest.raises(PublishError, match=r"is being refreshed by another run \(pid \d+ on .*\)"):
            with pub.lock():
                pass
    assert not (tmp_path / "LOCK").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / "LOCK").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with pub.lock():
        assert json.loads((tmp_path / "LOCK").read_text())["pid"] == os.getpid()


_CRASH = textwrap.dedent("""
    import os, sys
    from sparknmf.pipeline.publish import Publication
    pub = Publication(sys.argv[1], keep=3)
    pub.hooks[sys.argv[2]] = lambda: os._exit(9)          # a hard crash: no cleanup runs
    stage = pub.stage()
    (stage / "data.txt").write_text("new")
    pub.commit(stage, {"content": "new"})
""")


@pytest.mark.parametrize("point", ["staged", "moved", "pointer_written", "switched"])
def test_hard_crash_at_any_step_leaves_a_complete_publication(tmp_path, point):
    pub = Publication(tmp_path / "pub", keep=3)
    publish(pub, "old")
    done = subprocess.run([sys.executable, "-c", _CRASH, str(pub.root), point], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 9, done.stderr
    expected = "new" if point == "switched" else "old"
    assert readable(pub) == expected and pub.current().meta["content"] == expected
    # the next run cleans up and publishes normally, never reusing the orphan's number
    with pub.lock():
        pub.clean_staging()
        version = publish(pub, "next")
    assert readable(pub) == "next" and version.number == (3 if point in ("moved", "pointer_written") else
                                                           2 if point == "staged" else 3)
    assert sorted(p.name for p in pub.versions_dir.iterdir()) == pub.history()
    assert not list((pub.root / "staging").iterdir()) and not list(pub.root.glob(".CURRENT.*"))


# ------------------------------------------------------------------------------------------ metric gate
def test_metric_gate_compares_with_margins_in_the_right_direction():
    published = {"rmse": 0.90, "ndcg": 0.30}
    assert metric_gate({"rmse": 0.905, "ndcg": 0.29}, published, {"rmse": 0.01, "ndcg": 0.02}) == []
    reasons = metric_gate({"rmse": 0.95, "ndcg": 0.25}, published, {"rmse": 0.01, "ndcg": 0.02})
    assert reasons[0].startswith("held-out rmse 0.95 is higher than the published model's 0.9 by 0.05")
    assert "more than the margin 0.01" in reasons[0]
    assert reasons[1].startswith("held-out ndcg 0.25 is lower than the published model's 0.3 by 0.05")
    assert metric_gate({"rmse": 0.99}, None, {"rmse": 0.0}) == []           # nothing published yet
    assert metric_gate({"rmse": float("nan")}, published, {"rmse": 1.0})     # NaN never passes
    assert metric_gate({"rmse": 2.0}, published, {}) == []                   # no margin: no gate


@pytest.mark.spark
def test_validate_table_checks_rows_schema_and_values(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparknmf.pipeline.publish import validate_table

    recs = pa.array([[{"item": 1, "rating": 4.5}], [{"item": 2, "rating": float("nan")}, {"item": 3, "rating": 1.0}]],
                    pa.list_(pa.struct([("item", pa.int64()), ("rating", pa.float32())])))
    pq.write_table(pa.table({"user": [1, 2], "recommendations": recs}), tmp_path / "bad.parquet")
    pq.write_table(pa.table({"user": [1], "recommendations": recs[:1]}), tmp_path / "good.parquet")
    good = (tmp_path / "good.parquet").as_uri()
    schema = spark.read.parquet(good).schema
    validate_table(spark, good, schema=schema, rows=1, numeric=["recommendations.rating", "user"])
    with pytest.raises(PublishError, match=r"has 1 rows, expected 2"):
        validate_table(spark, good, schema=schema, rows=2)
    with pytest.raises(PublishError, match=r"has 1 null, NaN or infinite values in recommendations\.rating"):
        validate_table(spark, (tmp_path / "bad.parquet").as_uri(), schema=schema, rows=2,
                       numeric=["recommendations.rating"])
    from pyspark.sql.types import LongType, StructField, StructType

    with pytest.raises(PublishError, match=r"has schema struct<user:bigint,recommendations:.*expected struct<user"):
        validate_table(spark, good, schema=StructType([StructField("user", LongType())]), rows=1)
    with pytest.raises(PublishError, match=r"cannot be read"):
        validate_table(spark, (tmp_path / "none").as_uri(), schema=schema, rows=1)
