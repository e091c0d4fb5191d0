"""The Spark tests again, in a local Spark Connect session.

A classic and a Connect session cannot share one Python process (pyspark
switches its function namespace globally), so this runs the Spark tests of
NMF (tests/test_spark_nmf.py), weighted NMF, resident tasks (forced: ``auto``
means a job per half-step under Connect) and MaskedALS in one subprocess with
``--spark-session=connect`` (one Connect server for all of them).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELECTION = (
    "test_spark_nmf"
    " or (test_weighted and (spark_equals_local or complete_by_ids or spark_bad_weights))"
    " or (test_als and (spark_backend_equals_local or cold_start or recommendations_match or save_load"
    " or bad_input or ranking))"
    " or (test_resident and (grid3 or weighted_nmf_like_jobs or cannot_reach or auto_mode))"
)


def launch(workdir):
    """Run the Spark tests under Spark Connect in a subprocess (started at collection time)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    files = ["test_spark_nmf.py", "test_weighted.py", "test_als.py", "test_als_evaluation.py", "test_resident.py"]
    cmd = [sys.executable, "-m", "pytest", *(str(ROOT / "tests" / f) for f in files), "--spark-session=connect",
           "-q", "-rp", "-p", "no:cacheprovider", "-k", SELECTION]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.connect
@pytest.mark.background
def test_spark_suite_passes_in_spark_connect(background):
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    done = background.result(timeout=1600)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, f"Spark tests failed under Spark Connect:\n{tail}"
    for module in ("test_spark_nmf.py", "test_weighted.py", "test_als.py", "test_resident.py"):  # every suite ran
        assert f"tests/{module}::" in done.stdout, f"no {module} tests passed under Spark Connect:\n{tail}"
    assert " passed" in done.stdout and "skipped" not in done.stdout.split("passed")[0][-20:], tail
