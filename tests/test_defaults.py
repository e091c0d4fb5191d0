"""Issue 18: one source of truth for the defaults, and what ``"auto"`` resolves to."""

import inspect

import numpy as np
import pytest

import sparknmf
from sparknmf import NMF, multistart, nmf
from sparknmf.decomposition.factorize import factorize
from sparknmf.kernels.seeding import DEFAULT_INIT, resolve_init
from sparknmf.kernels.updates import DEFAULT_ALGORITHM, resolve_algorithm

# nmf() keyword -> NMF Param, where the names differ (None: the same name)
_SHARED = {"algorithm": None, "init": None, "seed": None, "max_iter": "maxIter", "tol": None, "eta": None,
           "beta": None, "dtype": None, "duplicates": None, "missing": None, "reg": "regParam",
           "checkpoint_interval": "checkpointInterval", "time_limit": "timeLimit", "verbose": None}


def _defaults(function):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_nmf_signature_and_estimator_params_share_their_defaults():
    estimator, signature = NMF(), _defaults(nmf)
    for keyword, param in _SHARED.items():
        ours = estimator.getOrDefault(param or keyword)
        theirs = signature[keyword]
        if keyword == "time_limit":  # None (no limit) in Python, 0 (no limit) as a Param
            assert (theirs, ours) == (None, 0.0)
        else:
            assert ours == theirs, keyword
    for function in (nmf, multistart, factorize, NMF.__init__, NMF.setParams):
        assert _defaults(function)["algorithm"] == DEFAULT_ALGORITHM == "auto", function
        assert _defaults(function)["init"] == DEFAULT_INIT == "auto", function


def test_param_docs_state_the_defaults():
    estimator = NMF()
    assert "'auto' (the default) is 'hals' for ordinary V and 'bpp' for weighted V" in estimator.algorithm.doc
    assert "'auto' (the default) is 'custom' when W0 and H0 are given, 'nndsvda'" in estimator.init.doc
    assert 'defaults ``algorithm="auto"`` and ``init="auto"``' in nmf.__doc__


def test_resolve_rules():
    assert resolve_algorithm("auto") == "hals"
    assert resolve_algorithm("auto", weighted=True) == "bpp"
    assert resolve_algorithm("auto", multistart=True) == "bpp"
    assert resolve_algorithm("brunet", weighted=True) == "brunet"  # names are kept, checked later
    assert resolve_init("auto") == "nndsvda"
    assert resolve_init("auto", custom=True) == "custom"
    assert resolve_init("auto", weighted=True) == "random"
    assert resolve_init("auto", multistart=True) == "random"
    assert resolve_init("nndsvd", multistart=True) == "nndsvd"


def _V(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((40, 4)) @ rng.random((4, 30)) + 0.01 * rng.random((40, 30))


def test_default_call_is_hals_from_nndsvda_and_the_estimator_gives_the_same_fit():
    V = _V()
    fit = nmf(V, 4)
    assert (fit.algorithm, fit.init) == ("hals", "nndsvda")
    explicit = nmf(V, 4, algorithm="hals", init="nndsvda")
    np.testing.assert_array_equal(fit.W, explicit.W)
    model = NMF(k=4).fit(V)
    np.testing.assert_array_equal(model.W, fit.W)
    np.testing.assert_array_equal(model.H, fit.H)


def test_weighted_default_is_exact_weighted_anls_from_random():
    V = _V(1)
    fit = nmf(V, 3, weights=np.ones(V.shape), max_iter=20)
    assert (fit.algorithm, fit.init) == ("bpp", "random")
    with pytest.raises(ValueError, match="algorithm 'hals' does not take weights"):
        nmf(V, 3, algorithm="hals", weights=np.ones(V.shape))


def test_multistart_default_is_bpp_from_random_starts():
    V = _V(2)
    runs = nmf(V, 3, nrun=3, max_iter=20)
    assert (runs.best.algorithm, runs.best.init) == ("bpp", "random")
    assert len(set(runs.objectives)) > 1  # every run from its own start


def test_r_names_stay_available():
    V = _V(3)
    for algorithm in sparknmf.ALGORITHMS:
        assert nmf(V, 3, algorithm=algorithm, max_iter=3, tol=0).algorithm == algorithm
    with pytest.raises(ValueError, match=r"invalid algorithm='als'; it must be one of \['auto', 'bpp'"):
        NMF(k=3, algorithm="als").fit(V)
