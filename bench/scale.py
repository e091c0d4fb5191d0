"""Factor placement at scale (issue 16): what reaches the driver, seconds per iteration against MLlib, driver memory.

1. **Bytes that reach the driver per iteration**, for ``factorPlacement="driver"`` and ``"executors"``, as the
   number of users grows (``--users``, default 1M and 4M; 16M with ``--users 1000000 4000000 16000000`` and
   memory to match), rank 50, synthetic power-law ratings (``--per-user`` ratings per user on average, at
   least 1, over ``--items`` items).  MaskedALS runs on Spark's tasks (``backend="spark"``,
   ``executionMode="jobs"``), so every byte a task returns to the driver is a task result: the figure is the
   sum of the stages' ``resultSize`` (Spark's REST API), taken as the slope between a fit of ``--iters``
   and one of ``2 × --iters`` iterations (ingest and the final model cancel out), and also summed over the
   jobs the fits name as iteration steps; ``--one-fit`` runs only the first fit and keeps the latter (the
   16M-user point, where a second fit costs most of an hour).
2. **Seconds per iteration** of the executors placement against MLlib ALS on the same ratings (``--speed-ratings``,
   default 8M), rank 10 and 50, both as the slope between ``--iters`` and ``2 × --iters`` iterations; also the
   driver placement (MaskedALS's default backend) on the same data.  Like with like: no biases, no implicit
   vectors, ALS-WR regularization λ = 0.1 for both.
3. **Peak driver memory** of both placements at the largest size of part 1: the Python driver process (where
   the driver placement keeps the factors) and the whole process tree (in local mode the JVM runs the tasks).

Usage::

    PYTHONPATH=$PWD python bench/scale.py                          # parts 1-3 at the default sizes
    PYTHONPATH=$PWD python bench/scale.py --part bytes --users 250000 1000000 --iters 2
    PYTHONPATH=$PWD python bench/scale.py --part speed --speed-ratings 1000000 --ranks 10

Figures are printed as JSON lines (and written to bench/results/scale_<part>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from als_vs_mllib import PeakMemory, synthetic_ratings  # noqa: E402  (bench/ is not a package)


def session(memory, max_result):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("sparknmf-scale")
             .config("spark.driver.memory", memory).config("spark.driver.maxResultSize", max_result)
             .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "4")
             .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1").config("spark.executorEnv.OMP_NUM_THREADS", "1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="scale-ckpt-"))
    return spark


def result_bytes(spark) -> int:
    """Total task result bytes of every stage so far (Spark's REST API: what tasks returned to the driver)."""
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages?status=complete"
    return sum(stage["resultSize"] for stage in json.load(urllib.request.urlopen(url)))


def iteration_figures(spark, first_job: int):
    """(result bytes, seconds) of the jobs since ``first_job`` that Spark's UI names as iteration steps.

    The fits name their jobs (``describe_jobs``: "... iter N, update users"): the sum over those jobs
    is what the iterations alone cost, without the ingest and the final model, from a single fit.
    """
    from datetime import datetime

    sc = spark.sparkContext
    base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"
    jobs = [job for job in json.load(urllib.request.urlopen(f"{base}/jobs"))
            if job["jobId"] >= first_job and " iter " in job.get("description", "")]
    stages = {stage["stageId"]: stage for stage in json.load(urllib.request.urlopen(f"{base}/stages?status=complete"))}

    def when(text):
        return datetime.strptime(text.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()

    result = sum(stages[i]["resultSize"] for i in {i for job in jobs for i in job["stageIds"]} if i in stages)
    seconds = sum(when(job["completionTime"]) - when(job["submissionTime"]) for job in jobs)
    return result, seconds


def next_job(spark) -> int:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    return 1 + max((job["jobId"] for job in json.load(urllib.request.urlopen(url))), default=-1)


def ours(rank, iters, **params):
    from sparknmf import MaskedALS

    return MaskedALS(rank=rank, maxIter=iters, regParam=0.1, regularization="weighted", biases=False,
                     implicitFeedback=False, tol=0.0, seed=0, **params)


def mllib(rank, iters):
    from pyspark.ml.recommendation import ALS

    return ALS(rank=rank, maxIter=iters, regParam=0.1, userCol="user", itemCol="item", ratingCol="rating", seed=0)


def measured(spark, fit):
    """(seconds, result bytes, peak Python driver RSS, peak process-tree RSS) of ``fit()``."""
    before = result_bytes(spark)
    start = time.perf_counter()
    with PeakMemory(tree=False) as driver, PeakMemory() as tree:
        fit()
    return time.perf_counter() - start, result_bytes(spark) - before, driver.peak, tree.peak


def ratings(spark, folder, users, items, total):
    folder = Path(folder)
    if not (folder / "train.parquet").exists():
        synthetic_ratings(folder, users=users, items=items, total=total, least=1, test=0.0)
    train = spark.read.parquet(str(folder / "train.parquet")).cache()
    return train, train.count()


def warm_up(spark, train, rank, placements):
    """One short fit of each kind on a 1 % sample: JIT, Python workers, Arrow paths."""
    sample = train.sample(fraction=0.01, seed=0).cache()
    for placement in placements:
        if placement == "mllib":
            mllib(rank, 1).fit(sample)
        else:
            ours(rank, 1, factorPlacement=placement, backend="spark", executionMode="jobs").fit(sample)
    sample.unpersist()


def part_bytes(spark, args, results):
    rows = []
    for number, users in enumerate(args.users):
        train, count = ratings(spark, Path(args.data) / f"users-{users}", users, args.items, users * args.per_user)
        if not number:
            warm_up(spark, train, args.rank, args.placements)
        row = {"users": users, "items": args.items, "ratings": count, "rank": args.rank}
        for placement in args.placements:
            figures = []
            for iters in (args.iters,) if args.one_fit else (args.iters, 2 * args.iters):
                est = ours(args.rank, iters, backend="spark", executionMode="jobs", factorPlacement=placement)
                first = next_job(spark)
                figures.append((*measured(spark, lambda est=est: est.fit(train)), *iteration_figures(spark, first)))
            *_, driver, tree, jobs_bytes, jobs_seconds = figures[-1]
            row.update({f"{placement}_iteration_jobs_mib_per_iter": jobs_bytes / len(figures) / args.iters / 2**20,
                        f"{placement}_iteration_jobs_s_per_iter": jobs_seconds / len(figures) / args.iters,
                        f"{placement}_driver_rss_gib": driver / 2**30, f"{placement}_tree_rss_gib": tree / 2**30})
            if not args.one_fit:  # the slope between the two fits: the cross-check of the jobs' accounting
                (t1, b1, *_), (t2, b2, *_) = figures
                row.update({f"{placement}_driver_mib_per_iter": (b2 - b1) / args.iters / 2**20,
                            f"{placement}_s_per_iter": (t2 - t1) / args.iters})
        row["factor_mib"] = (users + args.items) * args.rank * 8 / 2**20
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
        train.unpersist()
    results["bytes"] = rows


def part_speed(spark, args, results):
    users = max(1, args.speed_ratings // 60)  # MovieLens-like activity: about 60 ratings per user
    train, count = ratings(spark, Path(args.data) / f"speed-{args.speed_ratings}", users, max(1000, users // 5),
                           args.speed_ratings)
    warm_up(spark, train, args.ranks[0], ("mllib", "executors"))
    rows = []
    for rank in args.ranks:
        row = {"ratings": count, "users": users, "rank": rank}
        runs = {"mllib": lambda iters: mllib(rank, iters),
                "executors": lambda iters: ours(rank, iters, factorPlacement="executors", backend="spark",
                                                executionMode="jobs"),
                "driver": lambda iters: ours(rank, iters, factorPlacement="driver"),
                "auto": lambda iters: ours(rank, iters)}
        for name, make in runs.items():
            t1, t2 = (measured(spark, lambda est=make(iters): est.fit(train))[0] for iters in (args.iters,
                                                                                               2 * args.iters))
            row[f"{name}_s_per_iter"] = (t2 - t1) / args.iters
        for name in ("executors", "driver", "auto"):
            row[f"{name}_ratio"] = row[f"{name}_s_per_iter"] / row["mllib_s_per_iter"]
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    train.unpersist()
    results["speed"] = rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("bytes", "speed", "all"), default="all")
    parser.add_argument("--users", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--per-user", type=int, default=2, help="part 1: ratings per user on average")
    parser.add_argument("--rank", type=int, default=50, help="part 1's rank")
    parser.add_argument("--placements", nargs="+", choices=("driver", "executors"), default=["driver", "executors"],
                        help="part 1's placements (the driver placement of 16M users at rank 50 needs a 13 GB driver)")
    parser.add_argument("--one-fit", action="store_true",
                        help="part 1: a single fit of --iters iterations, figures from its iteration jobs alone "
                             "(for sizes where a second fit costs too long)")
    parser.add_argument("--speed-ratings", type=int, default=8_000_000)
    parser.add_argument("--ranks", type=int, nargs="+", default=[10, 50], help="part 2's ranks")
    parser.add_argument("--iters", type=int, default=3, help="iterations of the shorter fit of each pair")
    parser.add_argument("--memory", default="12g", help="spark.driver.memory")
    parser.add_argument("--max-result", default="8g", help="spark.driver.maxResultSize (the driver placement's)")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "sparknmf-scale"),
                        help="folder for the synthetic Parquet files (reused when present)")
    args = parser.parse_args()
    spark = session(args.memory, args.max_result)
    results = {"args": vars(args), "spark": spark.version}
    if args.part in ("bytes", "all"):
        part_bytes(spark, args, results)
    if args.part in ("speed", "all"):
        part_speed(spark, args, results)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scale_{args.part}.json").write_text(json.dumps(results, indent=2, default=str))
    spark.stop()


if __name__ == "__main__":
    main()
