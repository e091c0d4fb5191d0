"""Child of the scale tests (tests/test_scale.py, issue 16): fits whose factors exceed a capped driver.

Usage: python tests/_scale.py MODE OUT_DIR [MASTER]; writes OUT_DIR/report.json (and, for ``cluster``, the data
and the saved models).  Modes:

- ``local``: ``local[2]`` with ``spark.driver.maxResultSize=16m``; NMF and MaskedALS with the defaults
  (``factorPlacement="auto"``) on :func:`coordinates` (80 MB of factors at k = 50), in each ``executionMode``;
  ``recommendForAllUsers(5)`` for MaskedALS.
- ``connect``: the same on a local Spark Connect server started with the cap.
- ``cluster``: the standalone ``MASTER`` (tests/_cluster.py) with the cap; NMF and MaskedALS fits,
  ``recommendForAllUsers(10)``, save, load, transform; the coordinates and both models are written to OUT_DIR.
- ``reference``: ``local[2]`` without the cap; the ``cluster`` run's estimators with ``factorPlacement="driver"``
  on its coordinates, compared with the models it saved (largest relative differences in the report).
- ``long``: ``local[1]``, 500 NMF iterations with ``factorPlacement="executors"`` and no checkpoint directory;
  the plan of the final factors against that after 2 iterations.
"""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

CAP = "16m"
HEAP = "3g"  # local sessions: executors' memory, beyond the budget's share (a quarter: 768 MB > CAP / 2)
ROWS, COLS, RANK, PER_ROW = 200_000, 2_000, 50, 2  # (n + m)·k·8 = 80.8 MB of NMF factors (the issue's matrix)
CLUSTER_ROWS = 170_000  # (n + m)·k·8 = 68.8 MB: at least 64 MB on two 512 MB executors
MODES = ("jobs", "resident")
ROOT = Path(__file__).resolve().parents[1]


def coordinates(rows: int, cols: int = COLS, per_row: int = PER_ROW, seed: int = 16) -> pa.Table:
    """``per_row`` entries in each row of a ``rows`` × ``cols`` sparse matrix, every column hit: ``(row, col, value)``.

    Ids are indices (NMF's coordinate input); the same table, renamed, is MaskedALS's ratings.
    """
    rng = np.random.default_rng(seed)
    row = np.repeat(np.arange(rows, dtype=np.int64), per_row)
    col = rng.integers(0, cols, row.size)
    col[::per_row] = np.arange(rows) % cols  # every column has entries
    keep = np.unique(row * cols + col, return_index=True)[1]  # no repeated pair
    return pa.table({"row": row[keep], "col": col[keep].astype(np.int64),
                     "value": np.round(rng.uniform(1, 5, keep.size), 1)})


def ratings(frame):
    """The coordinates as MaskedALS's ``(user, item, rating)``."""
    return frame.withColumnsRenamed({"row": "user", "col": "item", "value": "rating"})


def nmf(**options):
    from sparknmf import NMF

    return NMF(k=RANK, maxIter=1, tol=0.0, init="random", **options)


def als(**options):
    from sparknmf import MaskedALS

    return MaskedALS(rank=RANK, maxIter=1, tol=0.0, backend="spark", **options)


def session(kind: str, master: str = "local[2]", cap: bool = True):
    """A classic or Connect session (the cap on the driver, or on the Connect server)."""
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.appName(f"sparknmf-scale-{kind}").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4").config("spark.ui.showConsoleProgress", "false"))
    if cap:
        builder = builder.config("spark.driver.maxResultSize", CAP)
    if not master.startswith("spark://"):  # local: the driver's JVM is the executor (1g runs out at SVD++'s 165 MB)
        builder = builder.config("spark.driver.memory", HEAP)
    if kind == "connect":
        os.environ["SPARK_TESTING"] = "1"  # an ephemeral port for the local Connect server
        return builder.remote(master).getOrCreate()
    if master.startswith("spark://"):
        builder = builder.config("spark.pyspark.python", sys.executable).config("spark.executor.memory", "512m")
    spark = builder.master(master).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _timed(report, name, action):
    start = time.perf_counter()
    value = action()
    report.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
    return value


def run_defaults(spark, report):
    """(a), (c): NMF and MaskedALS with the defaults in each execution mode; recommendForAllUsers(5)."""
    frame = spark.createDataFrame(coordinates(ROWS)).cache()
    report["entries"] = frame.count()
    for mode in MODES:
        model = _timed(report, f"nmf-{mode}", lambda: nmf(executionMode=mode).fit(frame))
        report[f"nmf-{mode}"] = {"placement": model.placement, "objective": model.history[-1]}
        model = _timed(report, f"als-{mode}", lambda: als(executionMode=mode).fit(ratings(frame)))
        report[f"als-{mode}"] = {"placement": model.placement, "objective": model.history[-1],
                                 "recommended": _timed(report, f"recommend-{mode}", lambda: _lengths(model, 5))}


def run_cluster(spark, out, report):
    """(b): fits, recommendations, save, load and transform on the cluster; data and models written to ``out``."""
    from sparknmf import MaskedALSModel, NMFModel

    frame = spark.createDataFrame(coordinates(CLUSTER_ROWS))
    frame.write.parquet(str(out / "coordinates"))
    frame = spark.read.parquet(str(out / "coordinates")).cache()
    grid = dict(numRowBlocks=4, numColBlocks=2)
    model = _timed(report, "nmf", lambda: nmf(**grid).fit(frame))
    model.save(str(out / "nmf"))
    loaded = NMFModel.load(str(out / "nmf"))
    report["nmf"] = {"placement": model.placement, "loaded": loaded.placement, **_projected(loaded, frame)}
    blocks = dict(numUserBlocks=4, numItemBlocks=2)
    model = _timed(report, "als", lambda: als(implicitFeedback=False, **blocks).fit(ratings(frame)))
    lengths = _timed(report, "recommend", lambda: _lengths(model, 10))
    model.save(str(out / "als"))
    loaded = MaskedALSModel.load(str(out / "als"))
    predicted = loaded.transform(ratings(frame)).selectExpr("count(*) AS n", "sum(prediction) AS total").first()
    report["als"] = {"placement": model.placement, "loaded": loaded.placement, "transformed": int(predicted["n"]),
                     "prediction_sum": float(predicted["total"]),
                     "recommended": lengths}


def _lengths(model, count: int) -> dict:
    """``recommendForAllUsers(count)``, computed: ``{list length: users}``."""
    recs = model.recommendForAllUsers(count).selectExpr("size(recommendations) AS n").groupBy("n").count()
    return {int(row["n"]): int(row["count"]) for row in recs.collect()}


def _projected(model, frame) -> dict:
    """NMF's ``transform`` of the coordinates: one row per column (sample), and the sum of its coefficients."""
    out = model.transform(frame).selectExpr("count(*) AS n", "sum(aggregate(coefficients, 0D, (a, x) -> a + x)) AS s")
    row = out.first()
    return {"transformed": int(row["n"]), "coefficient_sum": float(row["s"])}


def _relative(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300))


def run_reference(spark, out, report):
    """The cluster run's fits with ``factorPlacement="driver"`` on an uncapped session, against its saved models."""
    from sparknmf import MaskedALSModel, NMFModel

    frame = spark.read.parquet(str(out / "coordinates"))
    driver = nmf(numRowBlocks=4, numColBlocks=2, factorPlacement="driver").fit(frame)
    saved = NMFModel.load(str(out / "nmf"))
    report["nmf"] = {"W": _relative(saved.W, driver.W), "H": _relative(saved.H, driver.H),
                     "history": _relative(saved.history, driver.history), "placement": driver.placement,
                     **_projected(driver, frame)}
    driver = als(implicitFeedback=False, numUserBlocks=4, numItemBlocks=2, factorPlacement="driver").fit(
        ratings(frame))
    saved = MaskedALSModel.load(str(out / "als"))
    predicted = driver.transform(ratings(frame)).selectExpr("sum(prediction) AS total").first()
    report["als"] = {side: _relative(saved.parameters(side), driver.parameters(side)) for side in ("user", "item")}
    report["als"].update(placement=driver.placement, prediction_sum=float(predicted["total"]),
                         ids=bool(saved.userIds.equals(driver.userIds)))


def run_long(spark, report, iterations=500):
    """(d): the plan of the factors after ``iterations`` executors-placement iterations equals that after 2."""
    from sparknmf.decomposition.factorize import factorize
    from sparknmf.engine.matrix import BlockMatrix

    V = np.random.default_rng(0).random((12, 10))
    backend = BlockMatrix.from_array(spark, V, (2, 1))
    plans = {}
    for count in (2, iterations):
        result = _timed(report, f"iterations-{count}", lambda: factorize(
            backend, 2, algorithm="hals", init="random", max_iter=count, tol=0, placement="executors"))
        plans[count] = [_plan(X.frame) for X in result.factors]
        report[f"n_iter-{count}"] = result.n_iter
        report[f"finite-{count}"] = bool(np.isfinite(result.history).all())
        for X in result.factors:
            X.release()
    report["plans_equal"] = plans[2] == plans[iterations]
    report["plan_lines"] = [len(plan.splitlines()) for plan in plans[iterations]]
    report["checkpoint_dir"] = spark.sparkContext.getCheckpointDir()


def _plan(frame) -> str:
    """The frame's plan without expression ids and RDD numbers (they count up across the session)."""
    import contextlib
    import io

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        frame.explain(True)
    return "\n".join(line for line in text.getvalue().splitlines() if "#" not in line and "RDD" not in line)


def launch(mode: str, out: Path, *extra, env=None, timeout=1500):
    """Run this script in a fresh Python process (in ``env``, default this one's); ``(completed process, report)``.

    The report is None when the child wrote none (its stderr says why).
    """
    env = {**(env or os.environ), "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "_scale.py"), mode, str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=timeout)
    path = out / f"{mode}.json"
    return done, (json.loads(path.read_text()) if path.exists() else None)


def check_defaults(done, report):
    """What (a) and (c) require of a ``local`` or ``connect`` report: every fit in the executors, every user
    recommended 5 items, and both execution modes with the same objective (the same jobs run)."""
    import pytest

    assert report is not None, done.stderr[-3000:]
    assert report["cap"] == CAP and report["entries"] > ROWS
    for mode in MODES:
        assert report[f"nmf-{mode}"]["placement"] == "executors", report
        assert report[f"als-{mode}"]["placement"] == "executors", report
        assert report[f"als-{mode}"]["recommended"] == {"5": ROWS}, report
        assert np.isfinite(report[f"nmf-{mode}"]["objective"]) and np.isfinite(report[f"als-{mode}"]["objective"])
    for name in ("nmf", "als"):
        assert report[f"{name}-resident"]["objective"] == pytest.approx(report[f"{name}-jobs"]["objective"], rel=1e-10)


def main(mode, out, master=None):
    out = Path(out)
    start = time.perf_counter()
    warnings.simplefilter("ignore")  # ConvergenceWarning at maxIter=1, the placement's resident warning
    report = {}
    if mode in ("local", "connect"):
        spark = session(mode)
        report["cap"] = spark.conf.get("spark.driver.maxResultSize")
        run_defaults(spark, report)
    elif mode == "cluster":
        spark = session("classic", master)
        run_cluster(spark, out, report)
    elif mode == "reference":
        spark = session("classic", cap=False)
        run_reference(spark, out, report)
    elif mode == "long":
        spark = session("classic", "local[1]")
        run_long(spark, report)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    report["wall"] = round(time.perf_counter() - start, 1)
    (out / f"{mode}.json").write_text(json.dumps(report))
    spark.stop()


if __name__ == "__main__":
    pa.set_cpu_count(1)
    main(*sys.argv[1:])
