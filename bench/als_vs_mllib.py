"""MaskedALS against MLlib ALS, both in the same run on one local[2] session.

1. MovieLens 100K, splits u1-u5 (needs SPARKNMF_DATA): RMSE and fit time of MLlib ALS and of MaskedALS with
   its documented defaults.  MLlib runs at the same rank and number of iterations with its default
   regParam 0.1, a checkpoint directory and coldStartStrategy="drop"; MaskedALS predicts μ + known biases for
   the few test items absent from a training split ("biases"), and is also scored on MLlib's subset.  Fit
   times include each library's own input preparation; one warm-up fit of each runs first.
2. Synthetic ratings shaped like MovieLens 20M (138K users × 27K items, power-law activity, 9M training
   ratings, 1M test ratings, from a planted rank-10 model plus noise), rank 10 and rank 50, 10 iterations,
   no biases, ALS-WR regularization λ = 0.1 for both (like with like): fit time, ours / MLlib, test RMSE
   and the peak resident memory of the whole process tree (JVM, Python driver and workers) during the fit,
   after one warm-up fit of each on a 1 % sample.
   MaskedALS runs twice: with its default backend="auto" (on this local master the ratings are collected,
   and the blocks built and fitted on the driver, one thread per core), and with backend="spark" (blocks
   stored in Spark, the loop on resident tasks).  Each time is split into ingest and loop; the Spark loop
   is timed again on the same blocks with every factor row shipped to every task instead of only the rows
   its blocks refer to (routing off), and with --with-jobs with a Spark job per half-step; the factor bytes
   sent per iteration are printed.

Usage::

    SPARKNMF_DATA=../shared/data PYTHONPATH=$PWD python bench/als_vs_mllib.py            # both parts
    python bench/als_vs_mllib.py --part synthetic --scale 0.1 --ranks 10                 # a smaller run
    python bench/als_vs_mllib.py --part synthetic --data /tmp/als-synthetic              # keep / reuse the data

Figures are printed (and written to bench/results/als_vs_mllib.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def session(memory):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("als-vs-mllib")
             .config("spark.driver.memory", memory).config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "4")
             .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1").config("spark.executorEnv.OMP_NUM_THREADS", "1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="als-ckpt-"))
    return spark


class PeakMemory:
    """Samples the resident memory of this process and all its descendants (JVM, Python workers).

    With ``tree=False``, of this process alone (the Python driver).
    """

    def __init__(self, interval=0.2, tree=True):
        self.interval, self.tree, self.peak, self._stop = interval, tree, 0, threading.Event()

    def _tree_rss(self):
        children = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            if not self.tree:
                break
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def rmse_of(predictions):
    from pyspark.sql import functions as F

    return predictions.agg(F.sqrt(F.avg((F.col("prediction") - F.col("rating")) ** 2))).first()[0]


def timed(fit):
    start = time.perf_counter()
    with PeakMemory() as memory:
        model = fit()
    return model, time.perf_counter() - start, memory.peak / 2**30


def movielens(spark, results):
    from pyspark.ml.recommendation import ALS

    from sparknmf import MaskedALS
    from sparknmf.datasets import data_dir, load_movielens_100k

    ours = MaskedALS(coldStartStrategy="biases", ratingRange=[1.0, 5.0])
    mllib = ALS(rank=ours.getRank(), maxIter=ours.getMaxIter(), regParam=0.1, userCol="user", itemCol="item",
                ratingCol="rating", coldStartStrategy="drop", seed=0)
    folder = data_dir() / "ml-100k"
    rows = []
    for split in ("u1", "u1", "u2", "u3", "u4", "u5"):  # the first u1 is the warm-up
        train, test = (spark.createDataFrame(t).cache() for t in load_movielens_100k(split, folder))
        train.count(), test.count()
        m_model, m_time, _ = timed(lambda: mllib.fit(train))
        o_model, o_time, _ = timed(lambda: ours.fit(train))
        m_pred = m_model.transform(test)
        row = {"split": split, "mllib_rmse": rmse_of(m_pred), "mllib_fit_s": m_time,
               "ours_rmse": rmse_of(o_model.transform(test)), "ours_fit_s": o_time,
               "ours_rmse_on_mllib_subset": rmse_of(o_model.transform(m_pred.select("user", "item", "rating")))}
        train.unpersist(), test.unpersist()
        if rows:  # not the warm-up
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    rows = rows[1:]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "split"}
    print("MovieLens 100K u1-u5 mean:", json.dumps({k: round(v, 4) for k, v in mean.items()}), flush=True)
    results["movielens"] = {"splits": rows, "mean": mean,
                            "ours_params": {p.name: v for p, v in ours.extractParamMap().items()},
                            "mllib": {"rank": ours.getRank(), "maxIter": ours.getMaxIter(), "regParam": 0.1}}


def synthetic_ratings(path, scale=1.0, seed=0, *, users=None, items=None, total=None, least=20, test=0.1):
    """Power-law users and items, a planted rank-10 model, ratings rounded to 0.5 stars in [0.5, 5].

    MovieLens 20M's shape times ``scale`` (138K users, 27K items, 10M ratings), or ``users`` × ``items`` with
    about ``total`` ratings; every user rates at least ``least`` items; a ``test`` fraction is held out.
    Writes ``train.parquet`` and ``test.parquet`` under ``path``; returns (train, test, users, items).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)  # --data may name a folder that does not exist yet
    rng = np.random.default_rng(seed)
    n, m = users or int(138_000 * scale) or 1, items or int(27_000 * scale) or 1
    total = total or int(10_000_000 * scale)
    activity = rng.pareto(1.2, n) + 1.0
    counts = np.maximum(least, np.round(activity / activity.sum() * total)).astype(np.int64)
    counts = np.minimum(counts, m // 2)
    popularity = (np.arange(1, m + 1, dtype=np.float64)) ** -0.9
    popularity = rng.permutation(popularity / popularity.sum())
    key = np.zeros(0, np.int64)
    for _ in range(8):  # draw, keep distinct pairs, top up each user's deficit
        have = np.bincount(key // m, minlength=n)
        users = np.repeat(np.arange(n), np.maximum(counts - have, 0))
        if not users.size:
            break
        key = np.unique(np.r_[key, users.astype(np.int64) * m + rng.choice(m, size=users.size, p=popularity)])
    users, items = key // m, key % m
    W, H = rng.normal(0, 0.5, (n, 10)), rng.normal(0, 0.5, (m, 10))
    r = 3.5 + np.einsum("nk,nk->n", W[users], H[items]) + rng.normal(0, 0.8, users.size)
    r = np.clip(np.round(r * 2) / 2, 0.5, 5.0)
    held = rng.random(users.size) < test
    for name, mask in (("train", ~held), ("test", held)):
        pq.write_table(pa.table({"user": pa.array(users[mask], pa.int32()), "item": pa.array(items[mask], pa.int32()),
                                 "rating": pa.array(r[mask], pa.float32())}), path / f"{name}.parquet")
    return int((~held).sum()), int(held.sum()), n, m


def synthetic(spark, results, scale, ranks, data=None, with_jobs=False):
    from pyspark.ml.recommendation import ALS

    from sparknmf import MaskedALS

    folder = Path(data) if data else Path(tempfile.mkdtemp(prefix="als-synthetic-"))
    start = time.perf_counter()
    if not (folder / "train.parquet").exists():
        synthetic_ratings(folder, scale)
    train = spark.read.parquet(str(folder / "train.parquet")).cache()
    test = spark.read.parquet(str(folder / "test.parquet")).cache()
    n_train, n_test = train.count(), test.count()
    n, m = (train.select(c).distinct().count() for c in ("user", "item"))
    print(f"synthetic ({folder}): {n_train} training and {n_test} test ratings, {n} users × {m} items "
          f"(ready in {time.perf_counter() - start:.0f} s)", flush=True)
    # one warm-up fit of each (as in the MovieLens part), on a 1 % sample: JIT, Python workers, Arrow paths
    sample = train.sample(fraction=0.01, seed=0).cache()
    sample.count()
    ALS(rank=ranks[0], maxIter=2, userCol="user", itemCol="item", ratingCol="rating", seed=0).fit(sample)
    for backend in ("auto", "spark"):
        MaskedALS(rank=ranks[0], maxIter=2, biases=False, implicitFeedback=False, backend=backend).fit(sample)
    sample.unpersist()
    rows = []
    for rank in ranks:
        mllib = ALS(rank=rank, maxIter=10, regParam=0.1, userCol="user", itemCol="item", ratingCol="rating",
                    coldStartStrategy="drop", seed=0)
        ours = MaskedALS(rank=rank, maxIter=10, regParam=0.1, regularization="weighted", biases=False,
                         implicitFeedback=False, tol=0.0, coldStartStrategy="drop")
        m_model, m_time, m_mem = timed(lambda: mllib.fit(train))
        m_rmse = rmse_of(m_model.transform(test))
        row = {"rank": rank, "mllib_fit_s": m_time, "mllib_rmse": m_rmse, "mllib_peak_rss_gib": m_mem}
        # ours with its default backend="auto" (on this local master: the driver's threads), then on Spark's tasks
        for label, backend in (("ours", "auto"), ("spark", "spark")):
            stages = {}

            def fit(est=ours.copy({ours.backend: backend})):  # est.fit(train) in its two stages: ingest, then fit
                start = time.perf_counter()
                stages["blocks"] = blocks = est.ingest(train)
                stages["ingest_s"] = time.perf_counter() - start
                return est.fitBlocks(blocks)

            model, seconds, peak = timed(fit)
            blocks = stages["blocks"]
            row.update({f"{label}_backend": "driver" if blocks.local is not None else "spark",
                        f"{label}_fit_s": seconds, f"{label}_ratio": seconds / m_time,
                        f"{label}_rmse": rmse_of(model.transform(test)), f"{label}_peak_rss_gib": peak,
                        f"{label}_ingest_s": stages["ingest_s"], f"{label}_loop_s": seconds - stages["ingest_s"]})
            if blocks.local is not None:
                continue
            row["routed_mib_per_iteration"] = blocks.shipped_bytes / 2**20 / 10
            # the same loop on the same Spark blocks: every factor row to every task, a job per half-step
            for name, mode, route in [("whole", "resident", False)] + ([("jobs", "jobs", True)] if with_jobs else []):
                blocks.route_factors, blocks.shipped_bytes = route, 0
                start = time.perf_counter()
                ours.copy({ours.backend: backend, ours.executionMode: mode}).fitBlocks(blocks)
                row[f"{name}_loop_s"] = time.perf_counter() - start
                if mode == "resident":
                    row[f"{name}_mib_per_iteration"] = blocks.shipped_bytes / 2**20 / 10
            blocks.unpersist()
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    results["synthetic"] = {"train": n_train, "test": n_test, "users": n, "items": m, "scale": scale, "runs": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("movielens", "synthetic", "all"), default="all")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic size relative to 9M training ratings")
    parser.add_argument("--ranks", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--memory", default="8g", help="spark.driver.memory")
    parser.add_argument("--data", help="folder for the synthetic train/test Parquet files (reused when present)")
    parser.add_argument("--with-jobs", action="store_true",
                        help="synthetic: also time the loop with a job per half-step")
    args = parser.parse_args()
    spark = session(args.memory)
    results = {"args": vars(args), "spark": spark.version}
    if args.part in ("movielens", "all"):
        movielens(spark, results)
    if args.part in ("synthetic", "all"):
        synthetic(spark, results, args.scale, args.ranks, args.data, args.with_jobs)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "als_vs_mllib.json").write_text(json.dumps(results, indent=2, default=str))
    spark.stop()


if __name__ == "__main__":
    main()
