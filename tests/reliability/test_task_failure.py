"""Task failures: a task that raises, or whose Python worker dies, once mid-fit is retried by Spark and the fit
ends with exactly the undisturbed run's factors (NMF on resident tasks and with a job per half-step, MaskedALS;
same seed).  Resident tasks are restarted together (a barrier stage) and the interrupted request is sent again.

The fits run on ``local[2, 4]`` (local mode retries a task only when given a failure count) in a subprocess
(tests/reliability/_task_failure_child.py), started at collection time (``@pytest.mark.background``).  The fault
is armed through :mod:`sparknmf.engine.faults` from the fit's callback, so it strikes in the middle of the fit.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CHILD = Path(__file__).with_name("_task_failure_child.py")
ROOT = Path(__file__).resolve().parents[2]


def launch(workdir):
    faults = workdir / "faults"
    faults.mkdir()
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(CHILD), str(faults), str(workdir / "fits.npz")], env=env,
                          capture_output=True, text=True, timeout=900)
    return done, workdir


@pytest.mark.background
def test_failed_tasks_are_retried_and_change_nothing(background):
    done, workdir = background.result(timeout=1000)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(workdir / "fits.npz", allow_pickle=False)
    assert got["armed_left"] == 0, "an armed fault never fired"
    faulted = [("nmf", "nmf_raise"), ("nmf", "nmf_exit"), ("nmf", "nmfjobs_raise"), ("als", "als_raise"),
               ("als", "als_exit")]
    for fit, run in faulted:
        assert got[f"{fit}_ref_failed"] == 0
        assert got[f"{run}_failed"] >= 1, f"{run}: the fault failed no task"
        for part in ("a", "b", "history"):
            np.testing.assert_array_equal(got[f"{run}_{part}"], got[f"{fit}_ref_{part}"],
                                          err_msg=f"{run} (a task failing once) differs in {part}")
