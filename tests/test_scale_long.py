"""500 iterations with the factors in the executors and no checkpoint directory (issue 16), in a background child.

A 12 × 10 V on ``local[1]`` (~0.35 s per iteration, minutes in all: too long for the foreground).  Every
half-step starts from locally checkpointed factor blocks, so the final factors' plan after 500 iterations is
the one after 2, and nothing needs ``spark.sparkContext.setCheckpointDir``.
"""

import _scale
import pytest


def launch(workdir):
    """tests/_scale.py long (started at collection, tests/conftest.py)."""
    return _scale.launch("long", workdir)


@pytest.mark.spark
@pytest.mark.scale
@pytest.mark.background
def test_500_iterations_in_the_executors_keep_the_plan_without_a_checkpoint_directory(background):
    done, report = background.result(timeout=1600)
    assert report is not None, done.stderr[-3000:]
    assert report["checkpoint_dir"] is None
    assert report["n_iter-500"] == 500 and report["finite-500"]
    assert report["plans_equal"], report["plan_lines"]
