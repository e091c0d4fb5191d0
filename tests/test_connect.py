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


def launch(workdir):
    """Run the Spark tests under Spark Connect in a subprocess (started at collection time)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_spark_nmf.py"), "--spark-session=connect",
           "-q", "-p", "no:cacheprovider"]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.connect
@pytest.mark.background
def test_spark_suite_passes_in_spark_connect(background):
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    done = background.result(timeout=1600)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, f"Spark tests failed under Spark Connect:\n{tail}"
    assert " passed" in done.stdout and "skipped" not in done.stdout.split("passed")[0][-20:], tail
