"""Warm starts of MaskedALS with factorPlacement="executors" (issue 16: a refresh beyond the driver).

The executors placement must start where the driver placement's warm start starts -- known ids keep every
column of the initial model's rows, new ids the seeded draw, ids no longer rated are dropped -- whether the
initial model is on the driver or in the executors (fitted there, or saved and loaded there), and so give the
same fit to 1e-10.  The oracle is the driver placement's FitLoop (``_carry``), tested on its own in test_als.py.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_als import FAST, _table
from test_als_executors import _small_budget
from test_recommend import conf, job, last_run, ratings  # noqa: F401 - a fixture

from sparknmf import InvalidInputError, MaskedALS, MaskedALSModel
from sparknmf.kernels.seeding import draw_rows
from sparknmf.ratings.distributed import MESSAGE, PARAMS, VECTORS, initial_rows, out_lists, read_out_lists

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]

GRID = dict(backend="spark", numUserBlocks=3, numItemBlocks=2)
OPTIONS = {
    "time-terms": dict(timestampCol="ts", timeBins=2, userDrift=True, weightCol="w"),
    "svdpp": dict(implicitFeedback=True, implicitRegParam=2.0),
    "nonnegative": dict(nonnegative=True, biases=False),
    "prefs": dict(implicitPrefs=True, alpha=2.0),
}


def _estimator(name, **extra):
    return MaskedALS(**{**FAST, "maxIter": 2, **GRID, **OPTIONS[name], **extra})


@pytest.fixture(scope="module")
def old(spark):
    """The ratings the initial models were fitted on: users u00..u13, items 100..109."""
    return spark.createDataFrame(_table(1, times=True, weights=True)).cache()


@pytest.fixture(scope="module")
def new(spark):
    """The refresh's ratings: u00 and u01 gone, items 100..109 re-rated (another draw), users v0, v1 and items
    200, 201 new (v0 rates only new items)."""
    table = _table(2, times=True, weights=True)
    table = table.filter(pc.invert(pc.is_in(table.column("user"), pa.array(["u00", "u01"]))))
    extra = pa.table({"user": ["v0", "v0", "v1", "v1", "u05", "u06"], "item": pa.array([200, 201, 101, 200, 201, 200]),
                      "rating": [4.0, 2.0, 5.0, 3.0, 1.0, 4.0],
                      "ts": pa.array([885_000_000 + 86_400 * j for j in range(6)], pa.int64()),
                      "w": [1.0, 1.5, 0.7, 1.0, 1.2, 0.9]})
    return spark.createDataFrame(pa.concat_tables([table, extra])).cache()


@pytest.fixture(scope="module")
def initial(old, tmp_path_factory):
    """``initial(name, kind)``: the initial model of ``name``'s options fitted on the old ratings, on the driver
    (``"driver"``) or in the executors (``"executors"``), or fitted there, saved and loaded back into the
    executors beyond a tiny driver budget (``"loaded"``); each made once."""
    from sparknmf.ratings import model_files

    made = {}

    def get(name, kind):
        if (name, kind) not in made:
            est = _estimator(name)
            model = est.copy({est.factorPlacement: "driver" if kind == "driver" else "executors"}).fit(old)
            if kind == "loaded":
                path = str(tmp_path_factory.mktemp("initial") / name)
                model.save(path)
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(model_files, "choose_placement", _small_budget(model_files.choose_placement))
                    model = MaskedALSModel.load(path)
            assert model.placement == ("driver" if kind == "driver" else "executors")
            made[name, kind] = model
        return made[name, kind]

    return get


def _warm_both(estimator, frame, initial):
    driver = estimator.copy({estimator.factorPlacement: "driver"}).fitFrom(frame, initialModel=initial)
    executors = estimator.copy({estimator.factorPlacement: "executors"}).fitFrom(frame, initialModel=initial)
    assert driver.placement == "driver" and executors.placement == "executors"
    return driver, executors


def _same_fit(driver, executors, frame):
    for side in ("user", "item"):
        np.testing.assert_allclose(executors.parameters(side), driver.parameters(side), rtol=1e-10, atol=1e-12,
                                   err_msg=side)
        assert executors.ids(side).equals(driver.ids(side)), side
    assert executors.history == pytest.approx(driver.history, rel=1e-10)
    key = lambda r: (r.user, r.item)  # noqa: E731
    a = sorted(driver.transform(frame).collect(), key=key)
    b = sorted(executors.transform(frame).collect(), key=key)
    assert [key(r) for r in a] == [key(r) for r in b]
    np.testing.assert_allclose([r.prediction for r in b], [r.prediction for r in a], rtol=1e-10)


@pytest.mark.parametrize("name, kind", [  # each model kind and each place of the initial model, not all pairs
    ("time-terms", "driver"), ("time-terms", "loaded"), ("svdpp", "executors"), ("nonnegative", "driver"),
    ("prefs", "loaded"),
])
def test_executors_warm_start_equals_driver_warm_start(spark, new, initial, name, kind):
    """New users and items present, old ones absent: the two placements' warm starts give the same fit."""
    driver, executors = _warm_both(_estimator(name), new, initial(name, kind))
    # counted, not collected: the ids stay a DataFrame (what the refresh job's summary reads)
    assert executors.count("user") == len(driver.userIds) and executors._require()["ids"]["user"] is None
    assert executors.count("item") == driver.count("item") == len(driver.itemIds)
    _same_fit(driver, executors, new)
    assert executors.userIds.to_pylist()[-2:] == ["v0", "v1"] and "u00" not in executors.userIds.to_pylist()


@pytest.mark.parametrize("kind", ["driver", "executors"])
def test_no_iterations_keep_the_known_rows_and_draw_the_new_ones(spark, new, initial, kind):
    """maxIter=0: every column of a known id's row is the initial model's, a new id's row the seeded draw."""
    start = initial("time-terms", kind)
    est = _estimator("time-terms", maxIter=0, factorPlacement="executors", seed=5)
    model = est.fitFrom(new, initialModel=start)
    for side in ("user", "item"):
        ids, old_ids = model.ids(side).to_pylist(), start.ids(side).to_pylist()
        P, P_old = model.parameters(side), start.parameters(side)
        known = [j for j, x in enumerate(ids) if x in old_ids]
        fresh = [j for j, x in enumerate(ids) if x not in old_ids]
        assert len(known) >= 8 and len(fresh) == 2, side
        np.testing.assert_array_equal(P[known], P_old[[old_ids.index(ids[j]) for j in known]])
        draw = draw_rows(0, len(ids), len(ids), 2, 5, 10 if side == "user" else 11) * 0.1
        np.testing.assert_array_equal(P[fresh, :2], draw[fresh])
        assert not P[fresh, 2:].any()


def test_warm_start_from_a_converged_model_starts_converged(spark, old):
    """The first iteration of a warm start from a converged model is already at the converged objective,
    far below a cold start's first iteration."""
    est = MaskedALS(**{**FAST, **GRID, "maxIter": 60, "tol": 1e-12, "factorPlacement": "driver", "backend": "local"})
    converged = est.fit(old)
    final = converged.history[-1]
    executors = est.copy({est.factorPlacement: "executors", est.backend: "spark", est.maxIter: 1})
    warm = executors.fitFrom(old, initialModel=converged).history[0]
    cold = executors.fit(old).history[0]
    assert final * (1 - 1e-3) < warm <= final * (1 + 1e-9)  # ALS never increases the objective
    assert cold > 1.5 * warm, (cold, warm)


@pytest.mark.parametrize("change, message", [
    (dict(rank=3), "initial model has rank 2"),
    (dict(biases=False), "the initial model's user parameters have 3 columns, this estimator needs 2"),
    (dict(timestampCol="ts", timeBins=2), "item parameters have 3 columns, this estimator needs 5"),
])
def test_other_widths_are_refused_before_any_job(spark, old, initial, change, message):
    from reliability._spark_jobs import spark_jobs

    start = initial("svdpp", "executors")
    est = _estimator("svdpp", factorPlacement="executors", **change)
    with spark_jobs(spark) as jobs, pytest.raises(ValueError, match=message):
        est.fitFrom(old, initialModel=start)
    assert not jobs


def test_ids_of_another_type_are_refused(spark, old, initial):
    start = initial("svdpp", "executors")
    other = old.selectExpr("user", "cast(item as string) as item", "rating")
    with pytest.raises(InvalidInputError, match="item ids are of type string, the initial model's of type bigint"):
        _estimator("svdpp", factorPlacement="executors").fitFrom(other, initialModel=start)
    ints = old.selectExpr("user", "cast(item as int) as item", "rating")  # the integer types are interchangeable
    assert _estimator("svdpp", factorPlacement="executors", maxIter=0).fitFrom(ints, initialModel=start).nIter == 0


def test_initial_rows_overwrite_the_draw_with_the_known_rows():
    """The block function itself: known rows (parameters, then y) replace the draw, messages carry them."""
    arguments = dict(step=4, count=7, width=3, k=2, seed=1, stream=11, std=0.1, nonnegative=False, send=True,
                     implicit=True)
    out = out_lists(np.array([0, 1, 2, 2]), np.array([0, 5]), 4)  # rows 0 and 1 go to user blocks 0 and 1
    known = (np.array([2, 0]), np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]]))
    rows = initial_rows(1, out, known, **arguments)
    kinds = rows["kind"]
    X = _decode(rows["x"][kinds.index(PARAMS)])
    draw = draw_rows(4, 7, 7, 2, 1, 11) * 0.1
    np.testing.assert_array_equal(X[[2, 0]], known[1][:, :3])
    np.testing.assert_array_equal(X[1], [*draw[1], 0.0])
    state = _decode(rows["x"][kinds.index(VECTORS)])
    np.testing.assert_array_equal(state[[2, 0], :2], known[1][:, 3:])
    assert not state[1].any() and not state[:, 2:].any()
    for j in (j for j, kind in enumerate(kinds) if kind == MESSAGE):
        local = np.frombuffer(rows["rows"][j], "<i4")
        np.testing.assert_array_equal(_decode(rows["x"][j]), np.hstack([X, state[:, :2]])[local])
    assert [dst for dst, _ in read_out_lists(out)] == [rows["key"][j] for j, k in enumerate(kinds) if k == MESSAGE]


def _decode(payload):
    from sparknmf.engine import codec

    return codec.decode(payload)


def test_recommend_job_refreshes_from_the_published_model_in_the_executors(spark, tmp_path, request):
    """The refresh job with als.factor_placement = "executors": day 2 warm-starts from day 1's publication."""
    from sparknmf.pipeline.publish import Publication

    days = request.getfixturevalue("ratings")  # test_recommend's days 1 and 2

    executors = ["--set", 'als.factor_placement="executors"']
    assert job().main([conf(tmp_path, days, 1), *executors]) == 0
    assert job().main([conf(tmp_path, days, 2), *executors, "--set", "als.max_iter=0"]) == 0
    summary = last_run(tmp_path)
    assert summary["status"] == "published" and summary["warm_start"] == "v000001"
    assert summary["current"] == "v000002" and summary["cold_start"] is None
    pub = Publication(tmp_path / "pub")
    first = MaskedALSModel.load(str(pub.versions_dir / "v000001" / "model"))
    second = MaskedALSModel.load(str(pub.current().path / "model"))
    np.testing.assert_array_equal(first.userIds.to_numpy(), second.userIds.to_numpy())
    np.testing.assert_array_equal(second.userParams, first.userParams)  # no iterations: the published rows
    recommendations = spark.read.parquet(str(pub.current().path / "recommendations"))
    assert recommendations.count() == summary["counts"]["users"] == 40
