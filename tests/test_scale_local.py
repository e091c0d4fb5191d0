"""80 MB of factors on ``local[2]`` with ``spark.driver.maxResultSize=16m`` (issue 16), in a background child.

The issue's matrix (200,000 × 2,000 sparse, two entries per row, k = 50): NMF and MaskedALS (``backend="spark"``,
the same coordinates as ratings) fit with the defaults in each ``executionMode``, and MaskedALS recommends 5
items to every user.  ``factorPlacement="auto"`` must keep the factors in the executors (the driver's budget is
8 MiB), where the driver placement's ``jobs`` mode failed with a raw Py4JJavaError.  One iteration each.
"""

import _scale
import pytest


def launch(workdir):
    """tests/_scale.py local (started at collection, tests/conftest.py)."""
    return _scale.launch("local", workdir)


@pytest.mark.spark
@pytest.mark.scale
@pytest.mark.background
def test_80_mb_of_factors_fit_and_recommend_under_a_16m_cap_in_both_modes(background):
    done, report = background.result(timeout=1600)
    _scale.check_defaults(done, report)
