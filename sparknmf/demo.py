"""Demo: factorize a generated matrix on the embedded Spark session.

    python -m sparknmf.demo

Builds a 300×200 matrix with a planted rank-5 non-negative factorization,
hands it to Spark as a DataFrame of coordinates, fits ``NMF(k=5)`` with
ANLS-BPP and prints the objective per iteration and the relative error.
No network, no data download.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np


def main(argv=None) -> int:
    import pyarrow as pa

    from sparknmf import NMF
    from sparknmf.datasets import planted_nmf
    from sparknmf.engine.session import get_session

    logging.basicConfig(level=logging.WARNING)
    V, _, _ = planted_nmf(300, 200, 5, noise=0.01, seed=0)
    spark = get_session()
    rows, cols = np.nonzero(V)
    frame = spark.createDataFrame(pa.table({"row": rows, "col": cols, "value": V[rows, cols]}))
    print(f"V: {V.shape[0]}x{V.shape[1]}, {rows.size} entries, Spark {spark.version} at {spark.conf.get('spark.master')}")
    start = time.perf_counter()
    model = NMF(k=5, algorithm="bpp", init="nndsvd", maxIter=100, tol=1e-4).fitWith(
        frame, callback=lambda i, t, f: print(f"  iteration {i:3d}  objective {f:12.6f}  {t:6.2f}s")
    )
    error = np.linalg.norm(V - model.W @ model.H) / np.linalg.norm(V)
    print(f"k=5 fit in {time.perf_counter() - start:.1f}s, {model.nIter} iterations, relative error {error:.4f}")
    print(f"W {model.W.shape}, H {model.H.shape}; first row of W: {np.round(model.W[0], 3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
