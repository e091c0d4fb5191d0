"""The MaskedALS Spark tests that exercise every DataFrame path, again in a local Spark Connect session.

As tests/test_connect.py does for NMF: a subprocess with ``--spark-session=connect`` (a classic and a Connect
session cannot share one Python process), started at collection time.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELECTION = "spark_backend_equals_local or cold_start or recommendations_match or save_load or bad_input or ranking"


def launch(workdir):
    """Run the selected MaskedALS tests under Spark Connect in a subprocess."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_als.py"),
           str(ROOT / "tests" / "test_als_evaluation.py"), "--spark-session=connect", "-q", "-p", "no:cacheprovider",
           "-k", SELECTION]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.connect
@pytest.mark.background
def test_als_suite_passes_in_spark_connect(background):
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    done = background.result(timeout=1600)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, f"MaskedALS tests failed under Spark Connect:\n{tail}"
    assert " passed" in done.stdout, tail
