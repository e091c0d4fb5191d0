"""executionMode="resident" with the factors in the executors (issue 16): Spark jobs, one warning, same factors.

Resident tasks would receive every factor row through the driver's socket, which the executors placement
exists to avoid; so a fit whose factors are in the executors (forced, or chosen by ``auto``) runs its
half-steps as Spark jobs, warns once naming both Params, and gives the factors of the driver placement run
on resident tasks (bit for bit equal to jobs: tests/test_resident.py).  One fit per estimator and
placement: the other placement paths and implicitPrefs share this code (tests/test_placement.py,
tests/test_als_executors.py, tests/test_implicit_executors.py).
"""

import re
import warnings

import numpy as np
import pytest
from reliability._spark_jobs import spark_jobs
from test_als import FAST, _table
from test_placement import _V, _close, _coordinates

from sparknmf import NMF, MaskedALS
from sparknmf.engine import placement as placement_module

pytestmark = pytest.mark.spark

MESSAGE = r"executionMode='resident' with factorPlacement='executors'.*Spark jobs.*driver's socket"


def _fit_warned(estimator, frame, spark):
    """``(model, [UserWarning texts about the placement], [job descriptions])`` of one fit."""
    with warnings.catch_warnings(record=True) as caught, spark_jobs(spark) as jobs:
        warnings.simplefilter("always")
        model = estimator.fit(frame)
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning) and "executionMode" in
             str(w.message)]
    return model, texts, jobs


def _runs_jobs_not_resident_tasks(texts, jobs, chosen=""):
    assert len(texts) == 1, texts
    assert re.search(MESSAGE, texts[0]), texts[0]
    assert "factorPlacement" in texts[0] and "executionMode" in texts[0] and chosen in texts[0]
    assert not any("resident block tasks" in job for job in jobs), jobs
    assert any("update" in job for job in jobs), jobs  # a Spark job per half-step


def test_the_warning_names_both_params_and_the_choice():
    with pytest.warns(UserWarning, match=MESSAGE + ".*executionMode='jobs'") as caught:
        placement_module.warn_resident_runs_jobs("resident", "executors")
    assert "chosen by" not in str(caught[0].message)
    with pytest.warns(UserWarning, match=r"factorPlacement='executors' \(chosen by factorPlacement='auto'\)"):
        placement_module.warn_resident_runs_jobs("resident", "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("jobs", "auto"):
            placement_module.warn_resident_runs_jobs(mode, "executors")


def test_nmf_auto_beyond_the_budget_under_resident_runs_jobs_and_equals_the_driver(spark, monkeypatch):
    frame = _coordinates(spark, _V())
    options = dict(k=3, algorithm="hals", init="random", maxIter=2, tol=0.0, seed=4, numRowBlocks=2,
                   numColBlocks=2, executionMode="resident")
    driver, texts, jobs = _fit_warned(NMF(factorPlacement="driver", **options), frame, spark)
    assert not texts and any("resident block tasks" in job for job in jobs)  # the oracle ran resident tasks
    monkeypatch.setattr(placement_module, "driver_budget", lambda spark: (100.0, "spark.driver.maxResultSize"))
    executors, texts, jobs = _fit_warned(NMF(**options), frame, spark)  # factorPlacement="auto"
    _runs_jobs_not_resident_tasks(texts, jobs, chosen="chosen by factorPlacement='auto'")
    assert executors.placement == "executors"
    monkeypatch.undo()
    _close(executors.W, driver.W)
    _close(executors.H, driver.H)
    assert executors.history == pytest.approx(driver.history, rel=1e-10)


def test_als_forced_executors_under_resident_runs_jobs_and_equals_the_driver(spark):
    frame = spark.createDataFrame(_table(2, times=True))
    options = {**FAST, "maxIter": 2, "backend": "spark", "numUserBlocks": 3, "numItemBlocks": 2,
               "executionMode": "resident", "timestampCol": "ts", "timeBins": 2}
    driver, texts, jobs = _fit_warned(MaskedALS(**options, factorPlacement="driver"), frame, spark)
    assert not texts and any("resident block tasks" in job for job in jobs)
    executors, texts, jobs = _fit_warned(MaskedALS(**options, factorPlacement="executors"), frame, spark)
    _runs_jobs_not_resident_tasks(texts, jobs)
    assert executors.placement == "executors"
    for side in ("user", "item"):
        np.testing.assert_allclose(executors.parameters(side), driver.parameters(side), rtol=1e-10, atol=1e-12)
    assert executors.history == pytest.approx(driver.history, rel=1e-10)
