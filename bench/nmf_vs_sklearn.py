"""sparknmf against scikit-learn's NMF, measured in the same run.

    python bench/nmf_vs_sklearn.py [--quick] [--skip-scaling | --scaling-only] [--repeat N] [--local-only]
                                   [--default-only] [--skip-dense]

1. Time to target: scikit-learn's coordinate-descent solver (``solver="cd"``,
   ``init="nndsvda"``, tol 1e-4) runs to convergence; its final objective
   ½‖V − WH‖² is the target.  sparknmf (local backend, and Spark on
   ``local[2]``, with resident tasks -- the default -- and with a Spark job
   per half-step) starts from the same NNDSVDa and the time until its
   objective first reaches the target is measured (initialisation included,
   and for resident tasks the start of their job; the one-off distribution
   of V into cached blocks and the first start of the Python workers are
   timed and printed apart, as data on a cluster already lives in Spark).  Data: AssociatedPress (k=20, from
   SPARKNMF_DATA) and a synthetic dense 20000×2000 matrix (k=30).
   Targets: local ≤ 0.5× and Spark ≤ 1.0× scikit-learn's time.
   The default call (issue 18): ``nmf(V, k)`` and ``NMF(k=k).fit(V)`` with no
   other option (numpy/scipy input: the local backend), and on Spark
   ``NMF(k=k).fit(df)`` from a coordinate DataFrame (AssociatedPress) or
   ``NMF(k=k, backend="spark").fit(V)`` (dense), timed from the call: the
   time to target end to end (validation, ingest, the start of the workers
   included) and of the loop alone; the call is abandoned at the target.
2. Scaling: seconds per iteration of ``hals`` on Spark local[2] and locally
   at 1M, 4M, 16M non-zeros (sparse synthetic, 50 per row), the growth
   exponent of time in nnz (target ≤ 1.1) and peak memory (RSS of a fresh
   process per point).

Every figure is printed as measured; ratios are against the peer in the same run.  Each
time to target is the median of ``--repeat`` runs (3), scikit-learn's too, with every run's time shown.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp

warnings.filterwarnings("ignore")


def _hwm_mb(pid="self") -> float:
    """Peak resident memory (VmHWM) of a process in MB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _peak_mb() -> tuple[float, float]:
    """(this Python driver's peak RSS, the sum of its child processes' peaks: Spark's JVM and workers)."""
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    pids, seen = [p.strip() for p in children.stdout.split() if p.strip()], set()
    while pids:  # walk the process tree below the driver
        pid = pids.pop()
        if pid in seen:
            continue
        seen.add(pid)
        more = subprocess.run(["ps", "-o", "pid=", "--ppid", pid], capture_output=True, text=True)
        pids.extend(p.strip() for p in more.stdout.split() if p.strip())
    return _hwm_mb(), sum(_hwm_mb(pid) for pid in seen)


def _sklearn(V, k):
    from sklearn.decomposition import NMF

    start = time.perf_counter()
    model = NMF(k, init="nndsvda", solver="cd", tol=1e-4, max_iter=2000, random_state=0)
    model.fit(V)
    return time.perf_counter() - start, model.reconstruction_err_**2 / 2, model.n_iter_


def _time_to_target(fit, target, max_iter):
    """Seconds from the call until the objective first reaches ``target`` (None if never)."""
    start = time.perf_counter()
    reached = {}

    def callback(iteration, elapsed, objective):
        if "t" not in reached and objective <= target * (1 + 1e-9):
            reached["t"], reached["iter"] = time.perf_counter() - start, iteration

    def stop(iteration, W, H):
        return "t" in reached

    result = fit(callback, stop, max_iter)
    return reached.get("t"), reached.get("iter"), result.objective


def _local(V, k, algorithm, target, max_iter):
    from sparknmf.decomposition.factorize import factorize
    from sparknmf.engine.local import LocalMatrix
    from sparknmf.engine.validation import as_matrix

    def fit(callback, stop, max_iter):
        return factorize(LocalMatrix(as_matrix(V)), k, algorithm=algorithm, init="nndsvda", max_iter=max_iter,
                         tol=0, callback=callback, stop_check=stop)

    return _time_to_target(fit, target, max_iter)


class _Reached(Exception):
    """Raised by the callback once the target is reached: the default call has no stop check."""


def _default_call(fit, target):
    """(seconds from the call to the target, loop seconds to it, iteration, fit or None) of a default call.

    The call is abandoned once its objective reaches the target (it would otherwise go on to its own ``tol``
    or ``maxIter``); a call that ends before the target returns its fit.
    """
    start = time.perf_counter()
    reached = {}

    def callback(iteration, elapsed, objective):
        if objective <= target * (1 + 1e-9):
            reached.update(t=time.perf_counter() - start, loop=elapsed, iter=iteration)
            raise _Reached

    try:
        result = fit(callback)
    except _Reached:
        result = None
    return reached.get("t"), reached.get("loop"), reached.get("iter"), result


def _default_calls(spark, name, V, k, target, sk_time, repeat):
    """nmf(V, k) and NMF(k=k).fit(V) locally, and NMF(k=k).fit on Spark, each with no other option."""
    import pandas as pd

    from sparknmf import NMF, nmf

    calls = [("nmf(V, k)", lambda cb: nmf(V, k, callback=cb)),
             ("NMF(k).fit(V)", lambda cb: NMF(k=k).fitWith(V, callback=cb).result)]
    if spark is not None:
        if sp.issparse(V):
            coo = V.tocoo()
            frame = spark.createDataFrame(pd.DataFrame({"row": coo.row.astype(np.int64),
                                                        "col": coo.col.astype(np.int64), "value": coo.data}))
            frame = frame.cache()
            frame.count()
            calls.append(("Spark NMF(k).fit(df)", lambda cb: NMF(k=k).fitWith(frame, callback=cb).result))
        else:
            calls.append(("Spark NMF(k, backend='spark').fit(V)",
                          lambda cb: NMF(k=k, backend="spark").fitWith(V, callback=cb).result))
    from sparknmf.kernels.seeding import resolve_init
    from sparknmf.kernels.updates import resolve_algorithm

    what = f"{resolve_algorithm('auto')} from {resolve_init('auto')}"
    for label, fit in calls:
        (seconds, loop, iters, result), times = _median_run(lambda: _default_call(fit, target), repeat)
        if seconds is None:
            print(f"   default {label:38s} ({what}): stopped at iteration {result.n_iter} ({result.stop_reason}) "
                  f"before the target (final {result.objective:.6g})")
        else:
            print(f"   default {label:38s} ({what}): {seconds:6.2f}s to target = {seconds / sk_time:.2f}x "
                  f"scikit-learn end to end, loop {loop:.2f}s = {loop / sk_time:.2f}x, iteration {iters}"
                  f"{_spread_text(times)}")


def _spark(spark, block, k, algorithm, target, max_iter, execution):
    """Time to target on a BlockMatrix already cached on Spark (its build is timed apart)."""
    from sparknmf.decomposition.factorize import factorize

    block.execution = execution

    def fit(callback, stop, max_iter):
        return factorize(block, k, algorithm=algorithm, init="nndsvda", max_iter=max_iter, tol=0,
                         callback=callback, stop_check=stop)

    return _time_to_target(fit, target, max_iter)


def _session():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "6g")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _median_run(measure, repeat):
    """``measure()`` -> (seconds or None, ...) run ``repeat`` times: the run with the median time, and all times."""
    runs = [measure() for _ in range(repeat)]
    times = [r[0] if r[0] is not None else float("inf") for r in runs]
    return runs[int(np.argsort(times)[(repeat - 1) // 2])], times


def _spread_text(times):
    return "" if len(times) == 1 else f"  (runs: {', '.join(f'{t:.2f}' for t in times)} s)"


def time_to_target(quick: bool, repeat: int, local_only: bool = False, default_only: bool = False,
                   skip_dense: bool = False):
    from sparknmf.datasets import data_dir, load_associated_press

    cases = []
    folder = data_dir(required=False)
    if folder is not None:
        cases.append(("AssociatedPress 2246x10473 (k=20)", load_associated_press(folder / "associated_press")[0], 20))
    else:
        print("AssociatedPress skipped: SPARKNMF_DATA is not set")
    rng = np.random.default_rng(0)
    n, m = (5000, 1000) if quick else (20000, 2000)
    dense = rng.random((n, 30)) @ rng.random((30, m)) + 0.1 * rng.random((n, m))
    if not skip_dense:
        cases.append((f"dense {n}x{m} (k=30)", dense, 30))
    from sparknmf.engine.matrix import BlockMatrix
    from sparknmf.engine.validation import as_matrix

    spark = None if local_only else _session()
    for name, V, k in cases:
        (sk_time, target, sk_iter), sk_times = _median_run(lambda: _sklearn(V, k), repeat)
        print(f"\n== {name}: scikit-learn cd {sk_time:.2f}s (median of {repeat}){_spread_text(sk_times)}, "
              f"{sk_iter} iterations, objective {target:.6g}")
        _default_calls(spark, name, V, k, target, sk_time, repeat)
        if default_only:
            continue
        if local_only:
            for algorithm in ("hals", "bpp"):
                (seconds, iters, final), times = _median_run(
                    functools.partial(_local, V, k, algorithm, target, 2000), repeat)
                print(f"   local            {algorithm:5s}: {seconds:7.2f}s to target at iteration {iters:4d}"
                      f"  = {seconds / sk_time:.2f}x scikit-learn{_spread_text(times)}")
            continue
        start = time.perf_counter()
        block = BlockMatrix.from_array(spark, as_matrix(V))
        block.multiply("W", np.zeros((V.shape[1], 1)))  # starts the Python workers, as any earlier job would
        print(f"   distributing V to Spark ({block.grid[0]}x{block.grid[1]} blocks in {block.partitions} cached "
              f"partitions) and starting the Python workers: {time.perf_counter() - start:.2f}s (not included below)")
        runs = [("local", None), ("spark", "resident"), ("spark", "jobs")]
        for backend, execution in runs:
            for algorithm in ("hals", "bpp"):
                if backend == "local":
                    measure = functools.partial(_local, V, k, algorithm, target, 2000)
                else:
                    measure = functools.partial(_spark, spark, block, k, algorithm, target, 300, execution)
                (seconds, iters, final), times = _median_run(measure, repeat)
                label = backend if execution is None else f"{backend} ({execution})"
                if seconds is None:
                    print(f"   {label:16s} {algorithm:5s}: did not reach the target (final {final:.6g})")
                else:
                    print(f"   {label:16s} {algorithm:5s}: {seconds:7.2f}s to target at iteration {iters:4d}"
                          f"  = {seconds / sk_time:.2f}x scikit-learn{_spread_text(times)}")
        block.unpersist()
    if spark is not None:
        spark.stop()


def _scaling_point(nnz: int, backend: str, iterations: int = 5):
    """Child process: seconds per iteration and peak RSS for one size."""
    from sparknmf.decomposition.factorize import factorize
    from sparknmf.engine.local import LocalMatrix
    from sparknmf.engine.matrix import BlockMatrix

    rng = np.random.default_rng(1)
    m, per_row = 20000, 50
    n = nnz // per_row
    cols = rng.integers(0, m, size=nnz)
    V = sp.csr_matrix((rng.random(nnz) + 0.1, cols, np.arange(0, nnz + 1, per_row)), shape=(n, m))
    V.sum_duplicates()
    if backend == "spark":
        spark = _session()
        matrix = BlockMatrix.from_array(spark, V)
    else:
        matrix = LocalMatrix(V)
    factorize(matrix, 20, algorithm="hals", max_iter=1, tol=0)  # warm up workers and caches
    start = time.perf_counter()
    fit = factorize(matrix, 20, algorithm="hals", max_iter=iterations, tol=0)
    per_iter = (time.perf_counter() - start) / (fit.n_iter + 1)
    driver, children = _peak_mb()
    print(json.dumps({"nnz": int(V.nnz), "per_iter": per_iter, "peak_mb": driver, "children_mb": children}))


def scaling(sizes):
    print("\n== scaling: hals, k=20, sparse synthetic (50 non-zeros per row, 20000 columns)")
    for backend in ("local", "spark"):
        points = []
        for nnz in sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(nnz), backend],
                                 capture_output=True, text=True, check=True)
            point = json.loads(out.stdout.strip().splitlines()[-1])
            points.append(point)
            print(f"   {backend:5s} nnz {point['nnz']:>10,d}: {point['per_iter']:.3f} s/iteration, "
                  f"peak RSS: Python driver {point['peak_mb']:.0f} MB, JVM + Python workers "
                  f"{point['children_mb']:.0f} MB")
        x = np.log([p["nnz"] for p in points])
        y = np.log([p["per_iter"] for p in points])
        print(f"   {backend:5s} growth exponent d log(time)/d log(nnz) = {np.polyfit(x, y, 1)[0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller dense case and scaling sizes")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--scaling-only", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="time-to-target runs per solver; the median is reported (default 3)")
    parser.add_argument("--local-only", action="store_true",
                        help="time to target without Spark: the default local calls and local hals/bpp")
    parser.add_argument("--default-only", action="store_true", help="only scikit-learn and the default calls")
    parser.add_argument("--skip-dense", action="store_true", help="AssociatedPress only")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _scaling_point(int(args.child[0]), args.child[1])
        return
    if not args.scaling_only:
        time_to_target(args.quick, args.repeat, args.local_only, args.default_only, args.skip_dense)
    if not args.skip_scaling:
        scaling([250_000, 1_000_000, 4_000_000] if args.quick else [1_000_000, 4_000_000, 16_000_000])


if __name__ == "__main__":
    main()
