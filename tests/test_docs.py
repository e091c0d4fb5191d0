"""The Examples blocks in docstrings run and print what they claim."""

import doctest
import importlib
import warnings

import pytest


@pytest.mark.parametrize("name", ["sparknmf.decomposition.estimator", "sparknmf.plots.maps"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
