"""Weighted NMF on Spark local[2]: cost of an iteration, and recovery of missing entries.

    python bench/weighted.py [--rows 20000] [--cols 2000] [--rank 20] [--iters 4] [--recover-rows 20000]

1. Seconds per iteration on a dense n×m matrix with per-entry uncertainties
   (s_ij = 0.05 + 0.1·v_ij, heteroscedastic as in PMF), k = 20, of the two
   weighted solvers -- exact weighted ANLS (``bpp``) and weighted
   multiplicative updates (``lee``) -- against the unweighted ANLS
   iteration on the same matrix (the peer, measured in the same run).  The
   median of the iterations after the first is reported; the one-off
   distribution of V into cached blocks is timed apart.
2. Recovery: a planted non-negative rank-k matrix (factors with half their
   entries zero) with 50% of its entries missing (coordinates of the observed half as a DataFrame, ``missing =
   "missing"``); the time until the relative error on the missing entries
   falls below 1e-3 (checked after every iteration from the current factors
   on the driver), with the iterations it took.

Every figure is printed as measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def _per_iteration(backend, k, algorithm, iters):
    """Median seconds per iteration (after the first) of a fit with ``iters`` iterations."""
    from sparknmf.decomposition.factorize import factorize

    stamps = []
    factorize(backend, k, algorithm=algorithm, max_iter=iters, tol=0.0, seed=0,
              callback=lambda iteration, elapsed, objective: stamps.append(elapsed))
    return statistics.median(np.diff(stamps)) if len(stamps) > 1 else stamps[0]


def iteration_costs(spark, n, m, k, iters):
    from sparknmf.engine.matrix import BlockMatrix
    from sparknmf.kernels.weighted import WeightedBlock

    rng = np.random.default_rng(0)
    V = rng.random((n, k)) @ rng.random((k, m)) + 0.01 * rng.random((n, m))
    S = 0.05 + 0.1 * V
    print(f"1. dense {n}×{m}, k={k}, {iters} iterations each, Spark local[2]")
    rows = {}
    for name, data in (("unweighted ANLS (bpp)", V), ("weighted", WeightedBlock.dense(V, 1.0 / S ** 2))):
        start = time.perf_counter()
        block = BlockMatrix.from_array(spark, data)
        print(f"   distribute {name.split()[0]} V: {time.perf_counter() - start:.1f} s (grid {block.grid})")
        try:
            algorithms = ["bpp"] if name.startswith("unweighted") else ["bpp", "lee"]
            for algorithm in algorithms:
                label = (name if name.startswith("unweighted")
                         else f"weighted {'ANLS (bpp)' if algorithm == 'bpp' else 'MU (lee)'}")
                rows[label] = _per_iteration(block, k, algorithm, iters)
        finally:
            block.unpersist()
    peer = rows["unweighted ANLS (bpp)"]
    for label, seconds in rows.items():
        print(f"   {label:<24} {seconds:7.2f} s/iteration   ratio to unweighted ANLS {seconds / peer:5.2f}")


def recovery(spark, n, m, k, max_seconds):
    import pyarrow as pa

    from sparknmf.decomposition.factorize import factorize
    from sparknmf.engine.ingest import from_coordinates

    rng = np.random.default_rng(1)
    # parts-like factors, half their entries zero (uniform dense factors are so correlated that any
    # alternating method crawls: ~300 iterations instead of ~20 at 2000×400, rank 10)
    W = rng.random((n, k)) * (rng.random((n, k)) < 0.5)
    H = rng.random((k, m)) * (rng.random((k, m)) < 0.5)
    observed = rng.random((n, m)) < 0.5
    rows, cols = np.nonzero(observed)
    V = W @ H
    frame = spark.createDataFrame(pa.table({"row": rows, "col": cols, "value": V[rows, cols]}))
    unobserved = ~observed
    truth = np.linalg.norm(V[unobserved])
    reached = {}

    print(f"2. recovery: planted {n}×{m} rank {k}, 50% missing ({rows.size} observed), weighted ANLS on Spark")
    start = time.perf_counter()

    def stop_check(iteration, W_now, H_now):
        error = np.linalg.norm((W_now @ H_now - V)[unobserved]) / truth
        if error < 1e-3:
            reached["t"], reached["iter"] = time.perf_counter() - start, iteration
        return error < 1e-3

    block = from_coordinates(frame, missing="missing")
    ingest = time.perf_counter() - start
    try:
        fit = factorize(block, k, max_iter=100_000, tol=0.0, time_limit=max_seconds, stop_check=stop_check)
    finally:
        block.unpersist()
    if reached:
        print(f"   relative error on missing entries < 1e-3 after {reached['iter']} iterations, {reached['t']:.1f} s "
              f"(ingest of the coordinates {ingest:.1f} s, then {(reached['t'] - ingest) / reached['iter']:.1f} s "
              f"per iteration, grid {block.grid})")
    else:
        print(f"   not reached within {max_seconds:.0f} s ({fit.n_iter} iterations)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--cols", type=int, default=2000)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--recover-rows", type=int, default=20000)
    parser.add_argument("--recover-cols", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--part", choices=["all", "iterations", "recovery"], default="all")
    args = parser.parse_args()

    os.environ.setdefault("SPARKNMF_DRIVER_MEMORY", "8g")
    from sparknmf.engine.session import get_session

    spark = get_session("local[2]")
    if args.part in ("all", "iterations"):
        iteration_costs(spark, args.rows, args.cols, args.rank, args.iters)
    if args.part in ("all", "recovery"):
        recovery(spark, args.recover_rows, args.recover_cols, args.rank, args.max_seconds)


if __name__ == "__main__":
    main()
