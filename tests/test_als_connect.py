"""The MaskedALS Spark tests that exercise every DataFrame path, again in a local Spark Connect session.

As tests/test_connect.py does for NMF: a subprocess with ``--spark-session=connect`` (a classic and a Connect
session cannot share one Python process).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELECTION = "spark_backend_equals_local or cold_start or recommendations_match or save_load or bad_input or ranking"


@pytest.mark.connect
def test_als_suite_passes_in_spark_connect():
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_als.py"),
           str(ROOT / "tests" / "test_als_evaluation.py"), "--spark-session=connect", "-q", "-p", "no:cacheprovider",
           "-k", SELECTION]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, f"MaskedALS tests failed under Spark Connect:\n{tail}"
    assert " passed" in done.stdout, tail
