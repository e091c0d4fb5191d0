"""Real data from SPARKNMF_DATA: AssociatedPress factorizes with k=10, locally and on Spark."""

import warnings

import numpy as np
import pytest

from sparknmf import NMF, nmf
from sparknmf.datasets import load_associated_press

pytestmark = [pytest.mark.data, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


@pytest.fixture(scope="module")
def associated_press(data_dir):
    return load_associated_press(data_dir / "associated_press")


def test_associated_press_loads_as_documented(associated_press):
    V, terms = associated_press
    assert V.shape == (2246, 10473) and V.nnz == 302031 and V.sum() == 435838
    assert terms[:3] == sorted(terms)[:3] and len(set(terms)) == 10473


def test_associated_press_k10_local_and_spark_agree(associated_press, spark):
    V, terms = associated_press
    local = nmf(V, 10, algorithm="bpp", init="nndsvd", max_iter=8, tol=0)
    model = NMF(k=10, algorithm="bpp", init="nndsvd", maxIter=8, tol=0, backend="spark").fit(V)
    np.testing.assert_allclose(model.W, local.W, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(model.H, local.H, rtol=1e-7, atol=1e-9)
    h = np.array(local.history)
    assert np.all(np.diff(h) <= 0) and h[-1] < h[0]
    # every factor has a distinct, non-empty top-term list
    tops = [tuple(terms[i] for i in np.argsort(-local.H[f])[:10]) for f in range(10)]
    assert len(set(tops)) == 10


def test_associated_press_k10_reaches_scikit_learn_objective(associated_press):
    """HALS from NNDSVDa converges to an objective at least as low as scikit-learn's CD solver."""
    from sklearn.decomposition import NMF as SklearnNMF

    V, _ = associated_press
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = SklearnNMF(10, init="nndsvda", solver="cd", tol=1e-4, max_iter=1000, random_state=0).fit(V)
    fit = nmf(V, 10, algorithm="hals", init="nndsvda", max_iter=1000, tol=1e-5)
    assert fit.converged
    assert fit.objective <= 1.001 * reference.reconstruction_err_**2 / 2
