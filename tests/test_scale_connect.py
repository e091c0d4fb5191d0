"""80 MB of factors under Spark Connect, the cap on the server (issue 16), in a background child.

As tests/test_scale_local.py, in a local Connect session whose server runs with
``spark.driver.maxResultSize=16m``: the driver's limits are the server's, not the client's to raise.
"""

import _scale
import pytest


def launch(workdir):
    """tests/_scale.py connect (started at collection, tests/conftest.py)."""
    try:
        import grpc  # noqa: F401 - Spark Connect's client
    except ImportError:
        return None, None
    return _scale.launch("connect", workdir)


@pytest.mark.connect
@pytest.mark.scale
@pytest.mark.background
def test_80_mb_of_factors_fit_and_recommend_under_spark_connect_with_a_capped_server(background):
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    done, report = background.result(timeout=1600)
    _scale.check_defaults(done, report)
