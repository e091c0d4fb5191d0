"""Long runs without a checkpoint directory (tests/reliability/_long_runs.py), in a background subprocess.

Five minutes of Spark jobs, one per half-step: started at collection (``@pytest.mark.background``), they run
in their own pytest process and SparkSession while the rest of the suite runs; this test checks that every
one of them passed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "reliability" / "_long_runs.py"


def launch(workdir):
    """Run tests/reliability/_long_runs.py in a subprocess (started at collection time)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-rA", "-p", "no:cacheprovider", "--durations=0"]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)


def _test_names():
    """The test functions of the suite, read from its source (it is not imported here: it needs a session)."""
    return re.findall(r"^def (test_\w+)\(", SUITE.read_text(), flags=re.M)


@pytest.mark.spark
@pytest.mark.background
def test_long_runs_pass_in_their_own_session(background):
    done = background.result(timeout=1600)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])
    assert done.returncode == 0, f"the long runs failed:\n{tail}"
    names = _test_names()
    assert len(names) >= 2, names
    for name in names:  # every test ran and passed (a parametrized test passes each of its cases)
        assert re.search(rf"PASSED \S*::{name}\[", done.stdout), f"{name} did not pass:\n{tail}"
        assert not re.search(rf"(FAILED|SKIPPED|ERROR) \S*::{name}", done.stdout), f"{name} did not pass:\n{tail}"
