"""Driver of tests/test_als_executors.py's capped-driver test: MaskedALS with the defaults on a local[2] session
whose spark.driver.maxResultSize is too small for the parameters.

Usage: python tests/_als_capped.py OUT_DIR  (writes OUT_DIR/model and OUT_DIR/report.json)
"""

import json
import os
import sys

import pyarrow as pa
from pyspark.sql import SparkSession

from sparknmf import MaskedALS
from sparknmf.datasets import planted_ratings

USERS, ITEMS, RANK = 20_000, 400, 10  # (n + m)·(k + 2)·8 ≈ 1.9 MiB of parameters against a 0.5 MiB budget
PAD = "#" * 100  # user ids of ~105 bytes: ≈ 2.1 MB of distinct ids, beyond the 1 MiB cap if collected


def ratings(spark):
    """The planted ratings with long string user ids ("10:###…" sorts before "9:###…": not the numbers' order)."""
    from pyspark.sql import functions as F

    table, _ = planted_ratings(USERS, ITEMS, 3, density=0.01, noise=0.3, seed=4)
    frame = spark.createDataFrame(table)
    return frame.select(F.concat(F.col("user").cast("string"), F.lit(":" + PAD)).alias("user"), "item", "rating")


def main(out):
    spark = (SparkSession.builder.master("local[2]").appName("sparknmf-capped")
             .config("spark.driver.maxResultSize", "1m").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    frame = ratings(spark).cache()
    est = MaskedALS(rank=RANK, maxIter=2, tol=0.0, implicitFeedback=False, numUserBlocks=2, numItemBlocks=2)
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
    report["recommended"] = model.recommendForAllUsers(5).count()
    report["predicted"] = model.transform(frame).count()
    model.save(os.path.join(out, "model"))
    with open(os.path.join(out, "report.json"), "w") as handle:
        json.dump(report, handle)
    spark.stop()


if __name__ == "__main__":
    pa.set_cpu_count(1)
    main(sys.argv[1])
