"""Long runs without a checkpoint directory: nothing grows with the iteration count.

Run by tests/reliability/test_long_runs.py in a background subprocess (its own SparkSession, so the driver
heap and the cached RDDs it samples are this run's alone, and its ~5 minutes overlap the rest of the suite).

Bounds checked here (the factors live on the driver between half-steps, and every half-step is one Spark job built
afresh from the cached blocks):

* the query plan of a half-step is the same at the last iteration as at the first (no lineage to cut, so no
  StackOverflowError however long the fit);
* the cached data are the input blocks only: the number of persisted RDDs is the same at every sampled iteration,
  and back to what it was before the fit afterwards;
* the driver's Python heap (tracemalloc) grows by less than ``HEAP_BOUND`` between the first sample and the last:
  the driver holds the factors ((n + m)·k numbers), their Grams and one float of history per iteration.

NMF runs 500 iterations on Spark with one job per iteration, and again on resident tasks (one job for the whole fit,
sparknmf.engine.resident: its plan is built once).  MaskedALS runs 100 iterations on Spark with two jobs per iteration
(500 would take ~8 minutes of this shared 2-core machine's test budget), 100 on resident tasks and 500 on the
driver backend.
"""

import gc
import re
import tracemalloc

import numpy as np
import pytest

from sparknmf import MaskedALS
from sparknmf.datasets import planted_ratings
from sparknmf.decomposition.factorize import factorize
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.validation import as_matrix

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]
HEAP_BOUND = 1 << 20  # bytes


class Monitor:
    """Samples, every ``every`` iterations (a fit callback), what must not grow; records every half-step's plan."""

    def __init__(self, spark, monkeypatch, every):
        self.spark, self.every, self.samples, self.plans = spark, every, [], []
        frame_class = type(spark.range(1))  # the session's concrete DataFrame (classic), not the base class
        original = frame_class.mapInArrow

        def recording(frame, *args, **kwargs):
            out = original(frame, *args, **kwargs)
            # the plan's shape: expression ids (name#123) count up across the session, so they are dropped
            self.plans.append(re.sub(r"#\d+", "#", out._jdf.queryExecution().analyzed().treeString()))
            return out

        monkeypatch.setattr(frame_class, "mapInArrow", recording)
        self.cached_before = self.cached()
        tracemalloc.start()

    def cached(self):
        return self.spark.sparkContext._jsc.getPersistentRDDs().size()

    def __call__(self, iteration, elapsed, objective):
        if iteration % self.every == 0:
            gc.collect()  # count what is held, not garbage (py4j proxies and frames in cycles) awaiting collection
            self.samples.append((iteration, self.cached(), tracemalloc.get_traced_memory()[0]))

    def check(self, iterations, spark_jobs=True, ingest=0):
        """``ingest``: how many of the first plans are the ingest's (the fit's half-step plans follow them)."""
        tracemalloc.stop()
        assert self.samples[-1][0] == iterations
        assert len({cached for _, cached, _ in self.samples}) == 1, f"cached RDDs changed: {self.samples}"
        growth = self.samples[-1][2] - self.samples[0][2]
        assert growth < HEAP_BOUND, f"the driver heap grew by {growth} bytes: {self.samples}"
        assert bool(self.plans) == spark_jobs, f"{len(self.plans)} Spark plans recorded"
        fit_plans = self.plans[ingest:]
        assert set(fit_plans[-4:]) <= set(fit_plans[:4]), "the half-step plans grew"
        assert self.cached() == self.cached_before, "cached blocks outlived the fit"


@pytest.mark.parametrize("execution", ["jobs", "resident"])
def test_nmf_500_iterations_on_spark(spark, monkeypatch, execution):
    V = as_matrix(np.random.default_rng(13).random((12, 8)))
    monitor = Monitor(spark, monkeypatch, every=50)
    block = BlockMatrix.from_array(spark, V, (1, 1))  # one task per job: the cheapest 500 jobs
    block.execution = execution
    try:
        # a random start: NNDSVD (init="auto") would add its own products before the half-steps
        fit = factorize(block, 2, algorithm="hals", init="random", max_iter=500, tol=0, callback=monitor)
    finally:
        block.unpersist()
    assert fit.n_iter == 500 and len(fit.history) == 501 and np.isfinite(fit.W).all()
    monitor.check(500)
    assert len(monitor.plans) == (1 if execution == "resident" else 501)


@pytest.fixture(scope="module")
def ratings(spark):
    frame = spark.createDataFrame(planted_ratings(40, 30, 4, density=0.3, noise=0.5, seed=0)[0]).cache()
    frame.count()
    yield frame
    frame.unpersist()


@pytest.mark.parametrize("backend, execution, iterations", [("spark", "jobs", 100), ("spark", "resident", 100),
                                                             ("local", "auto", 500)])
def test_masked_als_long_runs(spark, monkeypatch, ratings, backend, execution, iterations):
    monitor = Monitor(spark, monkeypatch, every=10 if backend == "spark" else 50)
    est = MaskedALS(rank=4, regParam=0.01, biasRegParam=0.1, implicitFeedback=False, maxIter=iterations, tol=0.0,
                    backend=backend, numUserBlocks=2, numItemBlocks=1, executionMode=execution)
    model = est.fitFrom(ratings, callback=monitor)
    assert model.nIter == iterations and np.isfinite(model.userParams).all()
    assert all(b <= a * (1 + 1e-9) for a, b in zip(model.history, model.history[1:]))
    # the ingest's plans (its pieces and, on Spark, two per side for the id indexing), then a plan per half-step (jobs)
    # or the one resident job of the fit
    ingest = len(monitor.plans) - {"jobs": 2 * iterations, "resident": 1}.get(execution, 0)
    assert backend != "spark" or 1 <= ingest <= 5, f"{len(monitor.plans)} plans for {iterations} iterations"
    monitor.check(iterations, spark_jobs=backend == "spark", ingest=ingest if backend == "spark" else 0)
