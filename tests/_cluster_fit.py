"""Driver of tests/test_cluster.py: fit NMF on a standalone cluster, save the factors.

Usage: python tests/_cluster_fit.py spark://127.0.0.1:PORT OUT.npz
"""

import sys
import time

import numpy as np
from pyspark.sql import SparkSession

from sparknmf import NMF


def main(master, out):
    spark = (SparkSession.builder.master(master).appName("sparknmf-cluster-test")
             .config("spark.pyspark.python", sys.executable).config("spark.executor.memory", "512m")
             .config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    status = spark.sparkContext._jsc.sc()
    deadline = time.time() + 180  # executors register asynchronously; wait for both workers' executors
    while status.getExecutorMemoryStatus().size() - 1 < 2 and time.time() < deadline:
        time.sleep(0.5)
    executors = status.getExecutorMemoryStatus().size() - 1  # minus the driver
    V = np.load(out.replace(".npz", ".input.npy"), allow_pickle=False)
    model = NMF(k=3, maxIter=4, tol=0, seed=5, backend="spark", numRowBlocks=2, numColBlocks=2).fit(V)
    np.savez(out, W=model.W, H=model.H, history=np.array(model.history), executors=executors)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
