"""Child of test_task_failure.py: NMF and MaskedALS on ``local[2, 4]``, undisturbed and with one task failing.

Usage: python _task_failure_child.py FAULTS_DIR OUT.npz

Each fit runs in its own job group; the faulted ones arm a fault (sparknmf.engine.faults) from the fit's callback, so a
task fails in the middle of the fit.  Writes every fit's factors and history, and the number of failed tasks:
those Spark reports for the group's stages, plus the restarts of resident tasks (sparknmf.engine.resident; Spark then
retries the whole barrier stage, and its status tracker keeps only the last, successful, attempt).  NMF runs on
resident tasks (the default in a classic session) and, as ``nmfjobs``, with a Spark job per half-step.
"""

import logging
import os
import sys
import warnings

import numpy as np
from pyspark.sql import SparkSession

from sparknmf import NMF, MaskedALS
from sparknmf.datasets import planted_nmf, planted_ratings
from sparknmf.engine import faults


def failed_tasks(spark, group):
    tracker = spark.sparkContext.statusTracker()
    stages = [s for job in tracker.getJobIdsForGroup(group) for s in tracker.getJobInfo(job).stageIds]
    return sum(tracker.getStageInfo(s).numFailedTasks for s in stages)


class Restarts(logging.Handler):
    """Counts the resident tasks' restarts that sparknmf logs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += "waiting for restarted tasks" in record.getMessage()


def main(folder, out):
    os.environ[faults.ENV] = folder  # before the session starts: Python workers inherit it
    spark = (SparkSession.builder.master("local[2, 4]").appName("sparknmf-task-failure")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("OFF")
    V = planted_nmf(30, 24, 3, noise=0.05, seed=1)[0]
    ratings = spark.createDataFrame(planted_ratings(20, 15, 2, density=0.4, noise=0.1, seed=2)[0])
    als_estimator = MaskedALS(rank=2, regParam=0.5, implicitFeedback=False, maxIter=3, tol=0.0, seed=4,
                              backend="spark", numUserBlocks=2, numItemBlocks=2)
    blocks = als_estimator.ingest(ratings)
    results = {}

    def arm(when, stage, key, action):
        def callback(iteration, elapsed, objective):
            if iteration == when:
                faults.plant(folder, stage, key, action)
        return callback

    def nmf(callback, mode="auto"):
        model = NMF(k=3, maxIter=4, tol=0.0, seed=4, backend="spark", numRowBlocks=2, numColBlocks=2,
                    executionMode=mode).fitWith(V, callback=callback)
        return model.W, model.H, model.history

    def nmf_jobs(callback):
        return nmf(callback, "jobs")

    def als(callback):
        model = als_estimator.fitBlocks(blocks, callback=callback)
        return model.userParams, model.itemParams, model.history

    runs = {
        "nmf_ref": (nmf, None), "nmf_raise": (nmf, arm(2, "nmf-H", 1, "raise")),
        "nmf_exit": (nmf, arm(1, "nmf-W", 0, "exit")),
        "nmfjobs_raise": (nmf_jobs, arm(2, "nmf-H", 1, "raise")),
        "als_ref": (als, None), "als_raise": (als, arm(1, "als-user", 1, "raise")),
        "als_exit": (als, arm(2, "als-item", 0, "exit")),
    }
    restarts = Restarts()
    logging.getLogger("sparknmf").addHandler(restarts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (fit, callback) in runs.items():
            spark.sparkContext.setJobGroup(name, name)
            restarts.count = 0
            a, b, history = fit(callback)
            results.update({f"{name}_a": a, f"{name}_b": b, f"{name}_history": np.array(history),
                            f"{name}_failed": failed_tasks(spark, name) + restarts.count})
    results["armed_left"] = len(os.listdir(folder))
    np.savez(out, **results)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
