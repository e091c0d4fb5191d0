"""The Spark tests again, in a local Spark Connect session.

A classic and a Connect session cannot share one Python process (pyspark
switches its function namespace globally), so this runs
tests/test_spark_nmf.py in a subprocess with ``--spark-session=connect``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.connect
def test_spark_suite_passes_in_spark_connect():
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_spark_nmf.py"), "--spark-session=connect",
           "-q", "-p", "no:cacheprovider", "-k", "not 500_iterations"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, f"Spark tests failed under Spark Connect:\n{tail}"
    assert " passed" in done.stdout and "skipped" not in done.stdout.split("passed")[0][-20:], tail
