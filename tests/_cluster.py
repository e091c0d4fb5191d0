"""A standalone Spark cluster on 127.0.0.1 for tests: one master and some workers, started from the pyspark package.

Used by tests/test_cluster.py and tests/reliability/test_executor_loss.py.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


@contextlib.contextmanager
def standalone_cluster(workdir, workers=2):
    """Start a master and ``workers`` workers (1 core, 1 GB each); yields ``(master_url, env, worker_pids)``.

    ``env`` is the environment for a driver subprocess (this interpreter for Python workers, the project on
    PYTHONPATH).  Everything is stopped on exit; logs are ``workdir/master.log`` and ``workdir/worker<i>.log``.
    """
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(ROOT)}
    names = ["master"] + [f"worker{i}" for i in range(1, workers + 1)]
    logs = [open(Path(workdir) / f"{name}.log", "w") for name in names]
    procs = [subprocess.Popen([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(free_port())],
                              env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    master_log = Path(workdir) / "master.log"
    try:
        wait_for(lambda: "I have been elected leader" in master_log.read_text(), 180, "the master")
        for i in range(1, workers + 1):
            procs.append(subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                 "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                 "--work-dir", str(Path(workdir) / f"work{i}")],
                env=env, stdout=logs[i], stderr=subprocess.STDOUT))
        wait_for(lambda: master_log.read_text().count("Registering worker") >= workers, 180, f"{workers} workers")
        yield master_url, env, [proc.pid for proc in procs[1:]]
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


def executor_pids(worker_pids):
    """Pids of the executor JVMs (CoarseGrainedExecutorBackend) that the given workers launched."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in worker_pids and b"CoarseGrainedExecutorBackend" in command:
            found.append(int(entry.name))
    return sorted(found)


def cluster_session(master, app, log_level="ERROR", executors=2):
    """A SparkSession on a standalone ``master`` once ``executors`` executors have registered (or 180 s passed).

    For the driver scripts the cluster tests run in a subprocess; returns ``(spark, registered executors)``.
    """
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(master).appName(app)
             .config("spark.pyspark.python", sys.executable).config("spark.executor.memory", "512m")
             .config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel(log_level)
    status = spark.sparkContext._jsc.sc()
    deadline = time.time() + 180  # executors register asynchronously
    while status.getExecutorMemoryStatus().size() - 1 < executors and time.time() < deadline:
        time.sleep(0.5)
    return spark, status.getExecutorMemoryStatus().size() - 1  # minus the driver
