"""At least 64 MB of factors on a standalone cluster with ``spark.driver.maxResultSize=16m`` (issue 16).

A loopback master and two workers (tests/_cluster.py); the child (tests/_scale.py cluster) fits NMF and
MaskedALS with ``factorPlacement="auto"`` on 170,000 × 2,000 coordinates (68.8 MB of factors at k = 50),
recommends 10 items to every user, saves, loads and transforms.  A second child, ``local[2]`` without the
cap, fits the same estimators with ``factorPlacement="driver"`` on the coordinates the first wrote and
compares them with its saved models.  Both in the background, one iteration each.
"""

import _scale
import pytest
from _cluster import standalone_cluster


def launch(workdir):
    """The cluster child on a fresh cluster, then the uncapped driver-placement reference."""
    with standalone_cluster(workdir) as (master_url, env, _):
        cluster = _scale.launch("cluster", workdir, master_url, env=env)
    if cluster[1] is None:
        return cluster, (None, None)
    return cluster, _scale.launch("reference", workdir)


@pytest.mark.cluster
@pytest.mark.scale
@pytest.mark.background
def test_a_capped_cluster_fits_recommends_saves_and_loads_what_the_driver_placement_fits(background):
    (done, report), (ref_done, reference) = background.result(timeout=1600)
    assert report is not None, done.stderr[-3000:]
    assert reference is not None, ref_done.stderr[-3000:]
    for name in ("nmf", "als"):
        assert report[name]["placement"] == "executors" and report[name]["loaded"] == "executors", report
        assert reference[name]["placement"] == "driver"
    assert report["nmf"]["transformed"] == reference["nmf"]["transformed"] == 2_000  # one row per column
    assert report["nmf"]["coefficient_sum"] == pytest.approx(reference["nmf"]["coefficient_sum"], rel=1e-8)
    assert report["als"]["recommended"] == {"10": _scale.CLUSTER_ROWS}
    for key in ("W", "H", "history"):
        assert reference["nmf"][key] <= 1e-10, reference
    assert reference["als"]["user"] <= 1e-10 and reference["als"]["item"] <= 1e-10, reference
    assert reference["als"]["ids"]
    assert report["als"]["prediction_sum"] == pytest.approx(reference["als"]["prediction_sum"], rel=1e-10)
    assert report["als"]["transformed"] > _scale.CLUSTER_ROWS
