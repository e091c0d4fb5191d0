"""Driver of tests/test_cluster.py: fit NMF on a standalone cluster, save the factors.

Usage: python tests/_cluster_fit.py spark://127.0.0.1:PORT OUT.npz
"""

import sys

import numpy as np
from _cluster import cluster_session

from sparknmf import NMF


def main(master, out):
    spark, executors = cluster_session(master, "sparknmf-cluster-test")
    V = np.load(out.replace(".npz", ".input.npy"), allow_pickle=False)
    model = NMF(k=3, maxIter=4, tol=0, seed=5, backend="spark", numRowBlocks=2, numColBlocks=2).fit(V)
    np.savez(out, W=model.W, H=model.H, history=np.array(model.history), executors=executors)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
