"""The recommendation refresh job: publish, idempotent reruns, warm start, metric gate, a full disk, rollback."""

import errno
import importlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from sparknmf import MaskedALSModel
from sparknmf.datasets import planted_ratings
from sparknmf.pipeline.publish import Publication

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


def job():
    return importlib.import_module("jobs.recommend")


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    """Planted ratings of 40 users × 25 items: day 1, and day 2 with more ratings."""
    folder = tmp_path_factory.mktemp("ratings")
    table, _ = planted_ratings(40, 25, 2, density=0.5, noise=0.1, seed=4)
    day1 = table.take(np.flatnonzero(np.random.default_rng(0).random(table.num_rows) < 0.8))
    pq.write_table(day1, folder / "day1.parquet")
    pq.write_table(table, folder / "day2.parquet")
    return folder


def conf(tmp_path, ratings, day=1, **sections):
    text = f"""[input]\npath = "{ratings / f'day{day}.parquet'}"\n[holdout]\nfraction = 0.2\nrelevant = 3.0
[als]\nrank = 2\nreg_param = 0.1\nbias_reg_param = 0.1\nimplicit_feedback = false\nmax_iter = 10
[recommend]\ntop_n = 5\n[gate]\nrmse_margin = 0.05\nndcg_margin = 0.2
[publish]\nroot = "{tmp_path / 'pub'}"\nkeep = 3\n"""
    path = tmp_path / f"day{day}.toml"
    path.write_text(text)
    return str(path)


def last_run(tmp_path):
    return json.loads((tmp_path / "pub" / "last_run.json").read_text())


def current_recommendations(spark, tmp_path):
    version = Publication(tmp_path / "pub").current()
    frame = spark.read.parquet(str(version.path / "recommendations"))
    return version.name, sorted((r["user"], [(x["item"], round(x["rating"], 5)) for x in r["recommendations"]])
                                for r in frame.collect())


def test_publish_rerun_warm_start_gate_crash_and_rollback(spark, tmp_path, ratings, capsys, monkeypatch):
    day1 = conf(tmp_path, ratings, 1)
    # first run: trains, evaluates, publishes v000001
    assert job().main([day1]) == 0
    summary = last_run(tmp_path)
    assert summary["status"] == "published" and summary["current"] == "v000001"
    assert summary["metrics"]["published"] is None and summary["warm_start"] is None
    assert summary["cold_start"] == "nothing is published yet"
    spread = float(np.std(pq.read_table(ratings / "day1.parquet").column("rating").to_numpy()))
    assert 0 < summary["metrics"]["new"]["rmse"] < 0.5 * spread  # far better than predicting the mean
    assert 0 < summary["metrics"]["new"]["ndcg"] <= 1
    assert set(summary["timings"]) == {"read ratings", "fit", "evaluate", "publish"}
    name, recs = current_recommendations(spark, tmp_path)
    assert name == "v000001" and len(recs) == summary["counts"]["users"] == 40
    assert all(len(items) == 5 for _, items in recs)

    # the same input and configuration again: nothing to do, the same publication
    assert job().main([day1]) == 0
    assert last_run(tmp_path)["status"] == "unchanged"
    assert current_recommendations(spark, tmp_path) == (name, recs)

    # day 2, no iterations: the model is the published one (warm start), carried to the known ids
    assert job().main([conf(tmp_path, ratings, 2), "--set", "als.max_iter=0"]) == 0
    summary = last_run(tmp_path)
    assert summary["warm_start"] == "v000001" and summary["current"] == "v000002" and summary["cold_start"] is None
    pub = Publication(tmp_path / "pub")
    first = MaskedALSModel.load(str(pub.versions_dir / "v000001" / "model"))
    second = MaskedALSModel.load(str(pub.current().path / "model"))
    np.testing.assert_array_equal(first.userIds.to_numpy(), second.userIds.to_numpy())
    np.testing.assert_allclose(second.userParams, first.userParams)

    # the metric gate: a much worse model (huge regularisation) is refused, exit code 3, nothing switched;
    # another rank cannot start from the published model
    assert job().main([conf(tmp_path, ratings, 2), "--set", "als.reg_param=1000.0", "--set", "als.rank=3"]) == 3
    err = capsys.readouterr().err
    assert "recommend: refused: held-out rmse" in err and "more than the margin 0.05" in err
    assert "v000002 stays published" in err
    summary = last_run(tmp_path)
    assert summary["status"] == "refused" and summary["current"] == pub.current().name == "v000002"
    assert summary["warm_start"] is None
    assert summary["cold_start"] == "the model of v000002 has other parameters (rank 2 -> 3)"
    assert summary["metrics"]["new"]["rmse"] > summary["metrics"]["published"]["rmse"] + 0.05

    # a full disk between writing the new version and switching CURRENT leaves v000002 readable: exit 1,
    # the record says why
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Publication, "_switch", full)
        assert job().main([conf(tmp_path, ratings, 2)]) == 1
    assert "recommend: failed: the disk is full: [Errno 28] No space left on device" in capsys.readouterr().err
    assert current_recommendations(spark, tmp_path)[0] == "v000002"
    assert (pub.versions_dir / "v000003").exists()  # the orphan, never read
    assert last_run(tmp_path)["status"] == "failed"
    assert last_run(tmp_path)["error"] == "OSError: [Errno 28] No space left on device"
    assert not (tmp_path / "pub" / "LOCK").exists()
    assert job().main([conf(tmp_path, ratings, 2)]) == 0  # the rerun publishes and removes the orphan
    name4, recs4 = current_recommendations(spark, tmp_path)
    assert name4 == "v000004" and not (pub.versions_dir / "v000003").exists()
    assert pub.history() == ["v000001", "v000002", "v000004"]

    # rollback, twice, then nothing left to roll back to
    assert job().main([day1, "--rollback"]) == 0
    assert pub.current().name == "v000002" and last_run(tmp_path)["status"] == "rolled back"
    assert job().main([day1, "--rollback"]) == 0
    assert current_recommendations(spark, tmp_path) == (name, recs)
    assert job().main([day1, "--rollback"]) == 1
    assert "no previous version to roll back to" in capsys.readouterr().err
    assert last_run(tmp_path)["status"] == "failed" and last_run(tmp_path)["action"] == "rollback"

    # the same input and configuration as v000004 give the same recommendations (seeded, deterministic)
    assert job().main([conf(tmp_path, ratings, 2)]) == 0
    assert current_recommendations(spark, tmp_path)[1] == recs4


def test_bad_configuration_is_reported_before_any_work(tmp_path, capsys):
    path = tmp_path / "r.toml"
    path.write_text(f'[input]\npath = "{tmp_path / "nope.parquet"}"\n[publish]\nroot = "{tmp_path / "pub"}"\n')
    assert job().main([str(path)]) == 2
    assert f"{path}: input.path = '{tmp_path / 'nope.parquet'}': no such file or folder" in capsys.readouterr().err
    assert job().main([str(path), "--set", "gate.metrics=['mae']"]) == 2
    assert "gate.metrics must contain only values among ['rmse', 'ndcg']" in capsys.readouterr().err
    assert job().main([str(path), "--set", "publish.keep=1"]) == 2
    assert "--set publish.keep=1: publish.keep must be an integer >= 2, got 1" in capsys.readouterr().err
    assert job().main([str(path), "--set", "holdout.fraction=1"]) == 2
    assert "holdout.fraction must be a number > 0 and < 1, got 1.0" in capsys.readouterr().err
    (tmp_path / "nope.parquet").mkdir()
    assert job().main([str(path), "--set", "als.cold_start_strategy='nan'"]) == 2
    assert ("--set als.cold_start_strategy='nan': als.cold_start_strategy = 'nan': the held-out RMSE needs a "
            "prediction for every held-out rating") in capsys.readouterr().err
    assert not (tmp_path / "pub").exists()


def test_implicit_refresh_gates_on_ndcg_and_never_recommends_training_events(spark, tmp_path, ratings, capsys):
    """Issue 17: als.implicit_prefs = true; biases, SVD++ and the rating range stay off unless set (an error)."""
    path = tmp_path / "implicit.toml"
    path.write_text(f"""[input]\npath = "{ratings / 'day1.parquet'}"\n[holdout]\nfraction = 0.2
[als]\nimplicit_prefs = true\nalpha = 2.0\nrank = 2\nreg_param = 0.1\nmax_iter = 5
[recommend]\ntop_n = 3\n[gate]\nmetrics = ["ndcg"]\n[publish]\nroot = "{tmp_path / 'pub'}"\n""")
    assert job().main([str(path)]) == 0
    summary = last_run(tmp_path)
    metrics = summary["metrics"]["new"]
    assert summary["status"] == "published" and "rmse" not in metrics
    assert 0 < metrics["ndcg"] <= 1 and 0 <= metrics["map"] <= 1 and 0.5 < metrics["auc"] <= 1
    version = Publication(tmp_path / "pub").current()
    model = MaskedALSModel.load(str(version.path / "model"))
    assert model.implicitPrefs and model.userParams.shape[1] == 2
    seen = model.seenPairs
    users, items = model.userIds.to_pylist(), model.itemIds.to_pylist()
    for row in spark.read.parquet(str(version.path / "recommendations")).collect():
        u = users.index(row["user"])
        assert not any(seen[u, items.index(x["item"])] for x in row["recommendations"])
    capsys.readouterr()
    assert job().main([str(path), "--set", "gate.metrics=['rmse', 'ndcg']"]) == 2
    assert "gate.metrics = ['rmse', 'ndcg']: implicit data (als.implicit_prefs = true) has no held-out RMSE" in (
        capsys.readouterr().err)
    assert job().main([str(path), "--set", "als.biases=true"]) == 2
    assert "als.implicit_prefs = True: MaskedALS: implicitPrefs=True cannot be combined with biases=True" in (
        capsys.readouterr().err)
