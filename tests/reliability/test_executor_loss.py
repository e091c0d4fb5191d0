"""Executor loss on a real standalone cluster: SIGKILL one executor JVM mid-fit; the fit ends as if nothing happened.

``launch`` (started at collection, ``@pytest.mark.background``) runs tests/reliability/_executor_loss_child.py
against a master and two workers (tests/_cluster.py), kills one executor while the driver waits in the fit's
callback, then lets the fit go on.  The lost executor's cached blocks and tasks are recomputed from lineage.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _cluster import executor_pids, standalone_cluster, wait_for

CHILD = Path(__file__).with_name("_executor_loss_child.py")


def launch(workdir):
    """Cluster up, driver started; SIGKILL one executor when the driver says so; returns (result, workdir, killed)."""
    with standalone_cluster(workdir) as (master_url, env, workers):
        driver = subprocess.Popen([sys.executable, str(CHILD), master_url, str(workdir)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (workdir / "ready").exists() or driver.poll() is not None, 600, "the driver's fit")
            before = executor_pids(workers)
            if before:
                os.kill(before[0], signal.SIGKILL)
            (workdir / "killed").touch()
            stdout, stderr = driver.communicate(timeout=600)
        finally:
            if driver.poll() is None:
                driver.kill()
        return subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr), workdir, before


@pytest.mark.cluster
@pytest.mark.background
def test_fit_survives_a_killed_executor(background):
    done, workdir, executors = background.result(timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(executors) == 2, f"expected two executor JVMs before the kill, found {executors}"
    assert "because it is EXITED" in (workdir / "master.log").read_text(), "the master saw no executor die"
    fits = np.load(workdir / "fits.npz", allow_pickle=False)
    for part in ("W", "H", "history"):
        np.testing.assert_array_equal(fits[f"killed_{part}"], fits[f"ref_{part}"])
