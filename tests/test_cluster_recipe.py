"""The documented cluster recipe (conf/cluster.toml, docs/jobs.md) on a loopback standalone cluster (issue 22).

``spark-submit`` runs the installed job module (``python -m sparknmf.pipeline.jobs factorize`` prints its
file) on a standalone master with one worker, with the executors' Python shipped by
``--archives env.tar.gz#environment`` and named by ``"spark.pyspark.python" = "./environment/bin/python"``
in the job's ``[spark.conf]``, the input given as a ``file:`` URI and the output in a folder that is not
the driver's working folder.  Client deploy mode: standalone masters refuse Python applications in
cluster deploy mode (a Spark limitation), so the cluster-mode parts of the recipe (``--files``, a relative
output refused) are tested in tests/test_storage.py and tests/test_entry_points.py.
"""

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from _cluster import ROOT, standalone_cluster


def _environment_archive(path: Path, marker: Path) -> None:
    """A stand-in for a venv-pack archive: bin/python notes its use, then runs this interpreter."""
    script = f'#!/bin/sh\necho "$PWD" >> "{marker}"\nexec "{sys.executable}" "$@"\n'.encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("bin/python")
        info.size, info.mode = len(script), 0o755
        archive.addfile(info, io.BytesIO(script))


def launch(workdir):
    import pyspark

    _environment_archive(workdir / "env.tar.gz", workdir / "archive-python-used")
    rng = np.random.default_rng(0)
    V = rng.random((8, 2)) @ rng.random((2, 6))
    scipy.io.mmwrite(str(workdir / "v.mtx"), sp.coo_matrix(V))
    (workdir / "cluster.toml").write_text('[spark.conf]\n"spark.pyspark.python" = "./environment/bin/python"\n'
                                          '"spark.executor.memory" = "512m"\n"spark.ui.enabled" = false\n')
    # one worker with one core: one Spark job per half-step (a resident barrier job needs a slot per block)
    (workdir / "job.toml").write_text('[input]\nformat = "matrix_market"\n[nmf]\nk = 2\nbackend = "spark"\n'
                                      'execution_mode = "jobs"\nmax_iter = 20\nseed = 3\n[output]\nreport = false\n')
    (workdir / "driver").mkdir()
    script = subprocess.run([sys.executable, "-m", "sparknmf.pipeline.jobs", "factorize"], capture_output=True,
                            text=True, timeout=120).stdout.strip()
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    with standalone_cluster(workdir, workers=1) as (master_url, env, _):
        cmd = [str(submit), "--master", master_url, "--deploy-mode", "client",
               "--archives", f"{workdir / 'env.tar.gz'}#environment", script,
               str(workdir / "cluster.toml"), str(workdir / "job.toml"),
               "--set", f"input.path={(workdir / 'v.mtx').as_uri()}",
               "--set", f"output.path={(workdir / 'results' / 'out').as_uri()}"]
        done = subprocess.run(cmd, cwd=workdir / "driver", env=env, capture_output=True, text=True, timeout=900)
    return done, workdir, script


@pytest.mark.cluster
@pytest.mark.background
def test_cluster_recipe_runs_the_installed_job_with_the_shipped_environment(background):
    done, workdir, script = background.result(timeout=1500)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
    assert done.returncode == 0, f"spark-submit failed:\n{tail}"
    assert Path(script).parent == ROOT / "sparknmf" / "pipeline" / "jobs"
    out = workdir / "results" / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done" and summary["master"].startswith("spark://127.0.0.1:")
    assert summary["output"] == str(out)
    assert json.loads((out / "measures.json").read_text())["shape"] == [8, 6]
    assert list((workdir / "driver").iterdir()) == []  # nothing in the driver's working folder
    used = (workdir / "archive-python-used").read_text().split()
    assert used and all("/work1/" in folder for folder in used)  # the executors ran the shipped Python
