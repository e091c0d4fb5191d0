"""One factorization on a real standalone cluster: a master and two workers on 127.0.0.1."""

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


@pytest.mark.cluster
def test_standalone_cluster_fit_equals_local(tmp_path):
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port = _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(ROOT)}
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("master", "worker1", "worker2")]
    procs = [subprocess.Popen([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(_free_port())],
                              env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    try:
        _wait_for(lambda: "I have been elected leader" in (tmp_path / "master.log").read_text(), 90, "the master")
        for i in (1, 2):
            procs.append(subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                 "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()),
                 "--work-dir", str(tmp_path / f"work{i}")],
                env=env, stdout=logs[i], stderr=subprocess.STDOUT))
        _wait_for(lambda: (tmp_path / "master.log").read_text().count("Registering worker") >= 2, 90, "two workers")
        V = np.random.default_rng(3).random((30, 20))
        np.save(tmp_path / "fit.input.npy", V)
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "_cluster_fit.py"), master_url,
                               str(tmp_path / "fit.npz")], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        got = np.load(tmp_path / "fit.npz", allow_pickle=False)
        assert int(got["executors"]) == 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = sparknmf.nmf(V, 3, max_iter=4, tol=0, seed=5)
        np.testing.assert_allclose(got["W"], ref.W, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got["H"], ref.H, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got["history"], ref.history, rtol=1e-10)
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
