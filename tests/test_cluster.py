"""One factorization on a real standalone cluster: a master and two workers on 127.0.0.1.

``launch`` starts the cluster and the driver subprocess at collection time
(``@pytest.mark.background``); the test checks the factors against a local fit.
"""

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import sparknmf

ROOT = Path(__file__).resolve().parents[1]
V_SHAPE, SEED = (30, 20), 3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def launch(workdir):
    """Start master and workers, run tests/_cluster_fit.py against them; returns (process result, workdir)."""
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port = _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(ROOT)}
    logs = [open(workdir / f"{name}.log", "w") for name in ("master", "worker1", "worker2")]
    procs = [subprocess.Popen([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(_free_port())],
                              env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    master_log = workdir / "master.log"
    try:
        _wait_for(lambda: "I have been elected leader" in master_log.read_text(), 180, "the master")
        for i in (1, 2):
            procs.append(subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                 "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()),
                 "--work-dir", str(workdir / f"work{i}")],
                env=env, stdout=logs[i], stderr=subprocess.STDOUT))
        _wait_for(lambda: master_log.read_text().count("Registering worker") >= 2, 180, "two workers")
        np.save(workdir / "fit.input.npy", np.random.default_rng(SEED).random(V_SHAPE))
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "_cluster_fit.py"), master_url,
                               str(workdir / "fit.npz")], env=env, capture_output=True, text=True, timeout=900)
        return done, workdir
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


@pytest.mark.cluster
@pytest.mark.background
def test_standalone_cluster_fit_equals_local(background):
    done, workdir = background.result(timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(workdir / "fit.npz", allow_pickle=False)
    assert int(got["executors"]) == 2
    V = np.load(workdir / "fit.input.npy", allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sparknmf.nmf(V, 3, max_iter=4, tol=0, seed=5)
    np.testing.assert_allclose(got["W"], ref.W, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got["H"], ref.H, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got["history"], ref.history, rtol=1e-10)
