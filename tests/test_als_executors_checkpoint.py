"""Loop checkpoints of MaskedALS with factorPlacement="executors" (issue 16): the executors write the parameter
blocks as Parquet, the driver the loop's record, and a resumed fit equals the uninterrupted one."""

import numpy as np
import pytest
from test_als import FAST, _table

from sparknmf import MaskedALS

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]

EXECUTORS = dict(backend="spark", numUserBlocks=3, numItemBlocks=2, factorPlacement="executors", maxIter=4,
                 checkpointInterval=1)


@pytest.fixture(scope="module")
def frame(spark):
    return spark.createDataFrame(_table(1, times=True, weights=True)).cache()


class Crash(Exception):
    """The driver dies after an iteration (raised by the fit's callback)."""


def _crash_after(iteration):
    def callback(done, elapsed, objective):
        if done == iteration:
            raise Crash(done)

    return callback


@pytest.mark.parametrize("options", [
    dict(timestampCol="ts", timeBins=2, userDrift=True, weightCol="w"),
    dict(implicitFeedback=True, implicitRegParam=2.0),
    dict(implicitPrefs=True, alpha=2.0),  # its row solves start from the previous rows, as nonnegative NNLS's
], ids=["time-terms", "svdpp", "prefs"])
def test_resume_equals_the_uninterrupted_fit(spark, frame, tmp_path, options):
    est = MaskedALS(**{**FAST, **EXECUTORS, **options, "checkpointDir": str(tmp_path / "ckpt")})
    whole = est.copy({est.checkpointDir: str(tmp_path / "whole")}).fit(frame)  # saving changes nothing
    with pytest.raises(Crash):
        est.fitFrom(frame, callback=_crash_after(3))  # checkpoints after iterations 1, 2 and 3
    assert [p.name for p in (tmp_path / "ckpt").glob("blocks-*")] == ["blocks-00000003"]  # the older ones removed
    assert list((tmp_path / "ckpt" / "blocks-00000003" / "user").glob("*.parquet"))
    seen = []
    resumed = est.fitFrom(frame, resume=True, callback=lambda i, e, o: seen.append(i))
    assert seen == [4] and resumed.placement == "executors" and resumed.nIter == 4
    for side in ("user", "item"):
        np.testing.assert_allclose(resumed.parameters(side), whole.parameters(side), rtol=1e-10, atol=1e-12)
    assert resumed.history == pytest.approx(whole.history, rel=1e-10)


def test_resume_takes_precedence_over_the_initial_model_and_needs_a_matching_checkpoint(spark, frame, tmp_path):
    est = MaskedALS(**{**FAST, **EXECUTORS, "maxIter": 2, "checkpointDir": str(tmp_path / "ckpt")})
    first = est.fit(frame)
    other = est.copy({est.seed: 9, est.checkpointDir: ""}).fit(frame)
    again = est.fitFrom(frame, initialModel=other, resume=True)  # 2 of 2 iterations done: the saved blocks
    for side in ("user", "item"):
        np.testing.assert_array_equal(again.parameters(side), first.parameters(side))
    # a driver placement's checkpoint, or another problem's, is refused
    driver = est.copy({est.factorPlacement: "driver", est.checkpointDir: str(tmp_path / "driver")})
    driver.fit(frame)
    resumed = est.copy({est.checkpointDir: str(tmp_path / "driver")})
    with pytest.raises(ValueError, match=r"different problem \(differs in \['placement', 'steps'\]\)"):
        resumed.fitFrom(frame, resume=True)
    with pytest.raises(ValueError, match=r"differs in \['regParam'\]"):
        est.copy({est.regParam: 0.5}).fitFrom(frame, resume=True)
