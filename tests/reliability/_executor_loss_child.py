"""Driver of test_executor_loss.py: NMF on a standalone cluster, undisturbed, then with an executor killed mid-fit.

Usage: python _executor_loss_child.py spark://127.0.0.1:PORT WORKDIR

At iteration 2 of the second fit the callback writes ``WORKDIR/ready`` and waits for ``WORKDIR/killed``: the test
SIGKILLs one executor JVM in between, and the fit goes on without it.  Writes ``WORKDIR/fits.npz``.
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the cluster helpers
from _cluster import cluster_session  # noqa: E402

from sparknmf import NMF  # noqa: E402
from sparknmf.datasets import planted_nmf  # noqa: E402


def main(master, workdir):
    workdir = Path(workdir)
    spark, _ = cluster_session(master, "sparknmf-executor-loss", log_level="OFF")
    V = planted_nmf(40, 30, 3, noise=0.05, seed=6)[0]

    def wait_for_the_kill(iteration, elapsed, objective):
        if iteration == 2:
            (workdir / "ready").touch()
            while not (workdir / "killed").exists():
                time.sleep(0.2)

    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, callback in (("ref", None), ("killed", wait_for_the_kill)):
            model = NMF(k=3, maxIter=5, tol=0.0, seed=2, backend="spark", numRowBlocks=2).fitWith(V, callback=callback)
            fits.update({f"{name}_W": model.W, f"{name}_H": model.H, f"{name}_history": np.array(model.history)})
    np.savez(workdir / "fits.npz", **fits)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
