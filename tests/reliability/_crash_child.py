"""Child of test_driver_crash.py: a fit with a checkpoint directory, crashed or resumed.

Usage: python _crash_child.py crash nmf|als WORKDIR   -- fit; at iteration 5 touch WORKDIR/ready-<kind>, then hang
       python _crash_child.py resume WORKDIR          -- resume both fits, then run both uninterrupted; save fits.npz

NMF runs on the Spark backend (checkpoint every 3 iterations), MaskedALS with implicit feedback on the driver
backend (every 2 iterations); the checkpoint logic is the driver's either way.
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession

from sparknmf import NMF, MaskedALS
from sparknmf.datasets import planted_nmf, planted_ratings

HANG_AT = 5


def estimators(workdir, checkpoints=True):
    nmf_dir, als_dir = (str(workdir / "nmf"), str(workdir / "als")) if checkpoints else ("", "")
    return {
        "nmf": NMF(k=3, maxIter=9, tol=0.0, seed=3, backend="spark", numRowBlocks=2, checkpointDir=nmf_dir,
                   checkpointInterval=3),
        "als": MaskedALS(rank=3, regParam=0.5, implicitRegParam=1.0, maxIter=8, tol=0.0, seed=3, backend="local",
                         checkpointDir=als_dir, checkpointInterval=2),
    }


def fit(kind, estimator, data, callback=None, resume=False):
    if kind == "nmf":
        model = estimator.fitWith(data, callback=callback, resume=resume)
        return model.W, model.H, model.history
    model = estimator.fitFrom(data, callback=callback, resume=resume)
    return model.userParams, model.itemParams, model.history


def main(mode, *args):
    spark = (SparkSession.builder.master("local[2]").appName("sparknmf-driver-crash")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("OFF")
    data = {"nmf": planted_nmf(30, 24, 3, noise=0.05, seed=1)[0],
            "als": spark.createDataFrame(planted_ratings(25, 18, 3, density=0.4, noise=0.1, seed=2)[0])}
    warnings.simplefilter("ignore")
    if mode == "crash":
        kind, workdir = args[0], Path(args[1])

        def hang(iteration, elapsed, objective):
            if iteration == HANG_AT:
                (workdir / f"ready-{kind}").touch()
                time.sleep(3600)  # until the test's SIGKILL

        fit(kind, estimators(workdir)[kind], data[kind], callback=hang)
        sys.exit("the fit was not killed")
    workdir = Path(args[0])
    out = {}
    for kind in ("nmf", "als"):
        for name, est, resume in (("resumed", estimators(workdir)[kind], True),
                                  ("uninterrupted", estimators(workdir, checkpoints=False)[kind], False)):
            a, b, history = fit(kind, est, data[kind], resume=resume)
            out.update({f"{kind}_{name}_a": a, f"{kind}_{name}_b": b, f"{kind}_{name}_history": np.array(history)})
    np.savez(workdir / "fits.npz", **out)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
