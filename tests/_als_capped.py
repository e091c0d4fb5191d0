"""Driver of the capped-driver tests (tests/test_als_executors.py, tests/test_implicit_executors.py): MaskedALS with
the defaults on a local[2] session whose spark.driver.maxResultSize is too small for the parameters.

Usage: python tests/_als_capped.py OUT_DIR [implicit]  (writes OUT_DIR/model and OUT_DIR/report.json; ``implicit``:
the ratings as implicit events, ``implicitPrefs=True``)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from pyspark.sql import SparkSession

from sparknmf import MaskedALS
from sparknmf.datasets import planted_ratings

USERS, ITEMS, RANK = 20_000, 400, 10  # (n + m)·(k + 2)·8 ≈ 1.9 MiB of parameters against a 0.5 MiB budget
IMPLICIT_USERS = 8_000  # implicitPrefs: (n + m)·k·8 ≈ 0.64 MiB (no biases), a smaller run over the same budget
PAD = "#" * 100  # explicit run: user ids of ~105 bytes, ≈ 2.1 MB of distinct ids, beyond the 1 MiB cap if collected


def users(implicit: bool) -> int:
    """The run's number of users."""
    return IMPLICIT_USERS if implicit else USERS


def ratings(spark, implicit: bool = False):
    """The planted ratings; the explicit run's user ids are long strings ("10:###…" sorts before "9:###…")."""
    from pyspark.sql import functions as F

    table, _ = planted_ratings(users(implicit), ITEMS, 3, density=0.01, noise=0.3, seed=4)
    frame = spark.createDataFrame(table)
    if implicit:
        return frame
    return frame.select(F.concat(F.col("user").cast("string"), F.lit(":" + PAD)).alias("user"), "item", "rating")


def estimator(implicit: bool, **options) -> MaskedALS:
    """The estimator of the run: explicit ratings without SVD++, or the implicit preference model."""
    model = dict(implicitPrefs=True, alpha=2.0) if implicit else dict(implicitFeedback=False)
    return MaskedALS(rank=RANK, maxIter=2, tol=0.0, numUserBlocks=2, numItemBlocks=2, **model, **options)


def launch(out: Path, implicit: bool = False) -> dict:
    """Run this script in a fresh Python process on ``out`` and return its report (AssertionError on failure)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": f"{root}{os.pathsep}{root / 'tests'}"}
    args = [sys.executable, str(root / "tests" / "_als_capped.py"), str(out)] + (["implicit"] if implicit else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


def main(out, implicit):
    spark = (SparkSession.builder.master("local[2]").appName("sparknmf-capped")
             .config("spark.driver.maxResultSize", "1m").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    frame = ratings(spark, implicit).cache()
    est = estimator(implicit)
    report = {}
    try:  # what the driver placement's ingest did: collect the distinct ids
        frame.select("user").distinct().toArrow()
    except Exception as err:  # noqa: BLE001 - the JVM's error, whatever its class
        report["collect_ids"] = str(err)[:2000]
    try:
        est.copy({est.factorPlacement: "driver"}).fit(frame)
    except ValueError as err:
        report["driver"] = str(err)
    model = est.fit(frame)  # factorPlacement="auto", backend="auto", executionMode="auto"
    report["placement"] = model.placement
    recs = model.recommendForAllUsers(5)
    report["recommended"] = recs.count()
    if implicit:  # recommended pairs that are training events (filterRated: none), counted by the executors
        from pyspark.sql import functions as F

        pairs = recs.select("user", F.explode("recommendations").alias("r")).select("user", "r.item")
        report["seenRecommended"] = pairs.join(frame.select("user", "item"), ["user", "item"]).count()
    report["predicted"] = model.transform(frame).count()
    model.save(os.path.join(out, "model"))
    with open(os.path.join(out, "report.json"), "w") as handle:
        json.dump(report, handle)
    spark.stop()


if __name__ == "__main__":
    pa.set_cpu_count(1)
    main(sys.argv[1], sys.argv[2:] == ["implicit"])
