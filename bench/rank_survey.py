"""Rank survey benchmark: runs as Spark tasks on local[2] against the same survey run sequentially.

For each dataset, ``rank_survey(V, ks, nrun=30)`` (with its randomised-data
baseline, so 2 × len(ks) × 30 runs) is timed twice, each in a fresh child
process so that peak memory is measured per mode:

* ``sequential``: ``mode="local"``, every run one after another in one Python
  process, no Spark, with BLAS at one thread as in a task (the child's
  ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are 1; with
  ``--blas-default`` they are left as they are);
* ``tasks``: ``mode="tasks"`` on a ``local[2]`` session, each run a local
  factorisation inside a Spark task (session start-up and Python worker
  warm-up excluded from the time).

Datasets: a dense 5000×40 matrix with four planted clusters of 10 samples
(``block_diagonal``), k = 2..6; iris (4 measurements × 150 flowers,
samples are columns), k = 2..4 (k cannot exceed min(n, m) = 4).  Printed:
wall time, runs per second, and the peak resident memory of the driver's
Python process (``ru_maxrss``) with its value before the survey.

Run: ``SPARKNMF_DATA=../shared/data PYTHONPATH=$PWD python bench/rank_survey.py``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

NRUN = 30
SETTINGS = {"algorithm": "bpp", "max_iter": 200, "tol": 1e-4}


def _dataset(name):
    from sparknmf.datasets import block_diagonal, load_iris

    if name == "dense5000x40":
        V, labels = block_diagonal((10, 10, 10, 10), features=5000, seed=0)
        return V, labels, [2, 3, 4, 5, 6]
    X, species = load_iris()
    return X.T, species, [2, 3, 4]


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name, mode):
    """Run one survey and print one JSON line of figures."""
    import warnings

    from sparknmf import rank_survey

    warnings.simplefilter("ignore")
    V, labels, ks = _dataset(name)
    spark = None
    if mode == "tasks":
        from sparknmf.engine.session import get_session

        spark = get_session("local[2]")
        spark.sparkContext.setLogLevel("ERROR")
        rank_survey(V, ks[:1], nrun=4, labels=labels, mode="tasks", spark=spark, **SETTINGS)  # warm the workers
    before = _rss_mb()
    start = time.perf_counter()
    survey = rank_survey(V, ks, nrun=NRUN, labels=labels, mode="local" if mode == "sequential" else "tasks",
                         spark=spark, **SETTINGS)
    wall = time.perf_counter() - start
    runs = len(survey) * NRUN
    print(json.dumps({"dataset": name, "mode": mode, "shape": list(V.shape), "ks": ks, "runs": runs,
                      "wall": wall, "runs_per_s": runs / wall, "rss_before_mb": before, "rss_peak_mb": _rss_mb(),
                      "cophenetic": survey.column("cophenetic"),
                      "cophenetic_random": survey.column("cophenetic", "randomized")}))


def main(blas_default=False):
    results = []
    for name in ("dense5000x40", "iris"):
        for mode in ("sequential", "tasks"):
            env = dict(os.environ)
            if mode == "sequential" and not blas_default:
                env.update({var: "1" for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
            out = subprocess.run([sys.executable, __file__, "--child", name, mode], capture_output=True, text=True,
                                 check=True, env=env)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"rank survey, nrun={NRUN}, {SETTINGS}, original + randomised data; tasks on local[2]; "
          f"sequential BLAS threads: {'default' if blas_default else 1}")
    print(f"{'dataset':14} {'shape':10} {'ks':6} {'mode':11} {'runs':>5} {'wall s':>8} {'runs/s':>8} "
          f"{'speed-up':>8} {'driver RSS MB (before -> peak)':>31}")
    for r in results:
        seq = next(s for s in results if s["dataset"] == r["dataset"] and s["mode"] == "sequential")
        shape = "x".join(map(str, r["shape"]))
        ks = f"{r['ks'][0]}..{r['ks'][-1]}"
        print(f"{r['dataset']:14} {shape:10} {ks:6} {r['mode']:11} {r['runs']:5d} {r['wall']:8.2f} "
              f"{r['runs_per_s']:8.1f} {seq['wall'] / r['wall']:7.2f}x "
              f"{r['rss_before_mb']:14.0f} -> {r['rss_peak_mb']:.0f}")
    for r in results:
        if r["mode"] == "tasks":
            print(f"{r['dataset']}: cophenetic by k = {r['ks']}: original "
                  + ", ".join(f"{c:.4f}" for c in r["cophenetic"]) + "; randomised "
                  + ", ".join(f"{c:.4f}" for c in r["cophenetic_random"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("DATASET", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--blas-default", action="store_true", help="leave the sequential run's BLAS threads as set")
    args = parser.parse_args()
    child(*args.child) if args.child else main(args.blas_default)
