"""One factorization on a real standalone cluster: a master and two workers on 127.0.0.1.

``launch`` starts the cluster and the driver subprocess at collection time
(``@pytest.mark.background``); the test checks the factors against a local fit.
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from _cluster import ROOT, standalone_cluster

import sparknmf

V_SHAPE, SEED = (30, 20), 3


def launch(workdir):
    """Start master and workers, run tests/_cluster_fit.py against them; returns (process result, workdir)."""
    with standalone_cluster(workdir) as (master_url, env, _):
        np.save(workdir / "fit.input.npy", np.random.default_rng(SEED).random(V_SHAPE))
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "_cluster_fit.py"), master_url,
                               str(workdir / "fit.npz")], env=env, capture_output=True, text=True, timeout=900)
        return done, workdir


@pytest.mark.cluster
@pytest.mark.background
def test_standalone_cluster_fit_equals_local(background):
    done, workdir = background.result(timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(workdir / "fit.npz", allow_pickle=False)
    assert int(got["executors"]) == 2
    V = np.load(workdir / "fit.input.npy", allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sparknmf.nmf(V, 3, max_iter=4, tol=0, seed=5)
    np.testing.assert_allclose(got["W"], ref.W, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got["H"], ref.H, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got["history"], ref.history, rtol=1e-10)
