"""One true ``spark-submit --master local[2]`` run of a job with the library shipped by ``--py-files``.

Builds the zip with ``python -m sparknmf.pipeline.bundle`` (the documented command), then submits
jobs/factorize.py on a tiny coordinates table with the V blocks on Spark, so that executors
import sparknmf too.  Started at collection time (``background``) to overlap the rest of the run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def launch(workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyspark

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    bundle = subprocess.run([sys.executable, "-m", "sparknmf.pipeline.bundle", "--output", str(workdir / "dist")],
                            cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    if bundle.returncode:
        return bundle
    zip_path = bundle.stdout.strip().splitlines()[-1]
    rng = np.random.default_rng(0)
    V = rng.random((6, 2)) @ rng.random((2, 5))
    rows, cols = np.nonzero(V)
    pq.write_table(pa.table({"row": rows, "col": cols, "value": V[rows, cols]}), workdir / "v.parquet")
    (workdir / "job.toml").write_text(f"""[input]\npath = "{workdir / 'v.parquet'}"\nformat = "coordinates"
[nmf]\nk = 2\nbackend = "spark"\nmax_iter = 30\n[output]\npath = "{workdir / 'out'}"\nreport = false\n""")
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    cmd = [str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false", "--py-files", zip_path,
           str(ROOT / "jobs" / "factorize.py"), str(ROOT / "conf" / "local.toml"), str(workdir / "job.toml"),
           "--set", "nmf.seed=3"]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.background
def test_factorize_runs_under_spark_submit_from_the_bundle(background):
    done = background.result(timeout=1000)
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
    assert done.returncode == 0, f"spark-submit failed:\n{tail}"
    workdir = Path(done.args[done.args.index("--py-files") + 1]).parents[1]
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["conf"]["nmf"]["seed"] == 3
    assert summary["master"] == "local[2]"  # spark-submit's --master, not conf/local.toml's local[*]
    assert summary["versions"]["sparknmf_from"].endswith(".zip/sparknmf"), summary["versions"]
    measures = json.loads((workdir / "out" / "measures.json").read_text())
    assert measures["shape"] == [6, 5] and measures["objective"] < 1e-2
