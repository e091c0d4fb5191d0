"""Shared fixtures: one SparkSession per test run, the data folder, small matrices.

``--spark-session=connect`` runs the same Spark tests in a local Spark Connect
session instead of a classic one (tests/test_connect.py does this in a
subprocess, since the two kinds cannot share one Python process).
"""

import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

# the repository root, so that tests import the jobs as jobs.<name> however pytest is started
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pytest_addoption(parser):
    parser.addoption("--spark-session", choices=("classic", "connect"), default="classic",
                     help="kind of SparkSession the spark fixture creates")


_BACKGROUND = {}
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sparknmf-background")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Start the subprocess suites (``@pytest.mark.background``) now and run their checks last.

    Their modules define ``launch(workdir) -> result``; it runs in a thread
    while the rest of the suite runs, and the test waits for its result
    (``background`` fixture).  Spark Connect and standalone-cluster runs
    spend most of their time waiting on JVMs, so they overlap well.
    """
    late = [item for item in items if item.get_closest_marker("background")]
    items[:] = [item for item in items if not item.get_closest_marker("background")] + late
    if config.option.collectonly:  # listing tests runs nothing
        return
    for item in late:  # only the selected ones: -m deselection (the mark plugin) has run before this hook
        workdir = Path(tempfile.mkdtemp(prefix="sparknmf-background-"))
        _BACKGROUND[item.nodeid] = _POOL.submit(item.module.launch, workdir)


@pytest.fixture
def background(request):
    """The future of this test's ``launch`` started at collection time."""
    return _BACKGROUND[request.node.nodeid]


@pytest.fixture(scope="session")
def spark(request):
    """A local[2] session shared by the whole run (classic, or Connect with --spark-session=connect)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    kind = request.config.getoption("--spark-session")
    builder = SparkSession.builder.appName("sparknmf-tests").config("spark.sql.shuffle.partitions", "4")
    if kind == "connect":
        # an ephemeral port for the local Connect server (pyspark's test mode), so that
        # concurrent runs on one machine never reach each other's server on 15002
        os.environ["SPARK_TESTING"] = "1"
        session = builder.remote("local[2]").getOrCreate()
    else:
        session = (builder.master("local[2]").config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false").getOrCreate())
        session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def data_dir():
    """The real datasets folder; skips (saying why) when SPARKNMF_DATA is unset or missing."""
    value = os.environ.get("SPARKNMF_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip(f"real data not available: SPARKNMF_DATA={value!r} is not a folder (CI sets ../shared/data)")
    return Path(value)


@pytest.fixture
def planted():
    """V (40×30) = W (40×4) · H (4×30) exactly, with W, H > 0."""
    rng = np.random.default_rng(7)
    W, H = rng.random((40, 4)), rng.random((4, 30))
    return W @ H, W, H


@pytest.fixture
def no_fits(monkeypatch):
    """Fails the test if a multi-start factorisation starts (checks must come before any work)."""
    from sparknmf.analysis import runs

    def refuse(*args, **kwargs):
        raise AssertionError("a factorisation started before the input was checked")

    monkeypatch.setattr(runs, "factorize", refuse)
