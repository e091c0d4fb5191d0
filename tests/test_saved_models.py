"""Models saved by an earlier release load and equal a fresh fit (the package layout moved every module since).

tests/data/models_0_1_0 was written by sparknmf 0.1.0 (commit 5b2b7e7, the flat layout), whose files name
classes by module (``sparknmf.nmf.NMFModel``); files written now name them by public name (``sparknmf.NMFModel``).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from sparknmf import NMF, MaskedALS, MaskedALSModel, MultiStartNMF, MultiStartNMFModel, NMFModel
from sparknmf.engine.persistence import LEGACY_CLASS_NAMES

pytestmark = pytest.mark.spark

SAVED = Path(__file__).parent / "data" / "models_0_1_0"
V = np.random.default_rng(0).random((6, 5))  # as the 0.1.0 script made them


def ratings(spark):
    rows = [(u, i, float(1 + (u * 3 + i) % 5)) for u in range(5) for i in range(4) if (u + i) % 3]
    return spark.createDataFrame(rows, "user int, item int, rating double")


def saved_class(path):
    (line,) = [p for p in (path / "metadata").glob("part-*")][0].read_text().splitlines()
    return json.loads(line)["class"]


def test_the_fixtures_name_the_old_modules():
    assert saved_class(SAVED / "nmf_model") == "sparknmf.nmf.NMFModel"
    assert saved_class(SAVED / "als_model") == "sparknmf.als.MaskedALSModel"
    assert saved_class(SAVED / "multistart_model") == "sparknmf.consensus.MultiStartNMFModel"
    assert set(LEGACY_CLASS_NAMES.values()) == {f"sparknmf.{c.__name__}" for c in (
        NMF, NMFModel, MaskedALS, MaskedALSModel, MultiStartNMF, MultiStartNMFModel)}


def test_nmf_model_saved_by_0_1_0_loads_and_equals_a_fresh_fit(spark):
    loaded = NMFModel.load(str(SAVED / "nmf_model"))
    fresh = NMF(k=2, maxIter=5, seed=3, algorithm="bpp", init="random").fit(V)  # 0.1.0's defaults
    np.testing.assert_allclose(loaded.W, fresh.W, rtol=1e-12)
    np.testing.assert_allclose(loaded.H, fresh.H, rtol=1e-12)
    assert loaded.history == pytest.approx(fresh.history, rel=1e-12)


def test_estimators_saved_by_0_1_0_load_with_their_params(spark):
    assert NMF.load(str(SAVED / "nmf")).getAlgorithm() == "hals"
    assert MaskedALS.load(str(SAVED / "als")).getRank() == 3


def test_masked_als_model_saved_by_0_1_0_predicts_as_a_fresh_fit(spark):
    loaded = MaskedALSModel.load(str(SAVED / "als_model"))
    fresh = MaskedALS(rank=2, maxIter=2, backend="local", seed=1).fit(ratings(spark))
    frame = ratings(spark)
    got = loaded.transform(frame).orderBy("user", "item").toArrow().column("prediction").to_numpy()
    want = fresh.transform(frame).orderBy("user", "item").toArrow().column("prediction").to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_multistart_model_saved_by_0_1_0_loads_its_runs(spark):
    loaded = MultiStartNMFModel.load(str(SAVED / "multistart_model"))
    fresh = MultiStartNMF(k=2, nrun=3, runMode="local", maxIter=5).fit(V)
    np.testing.assert_array_equal(loaded.assignments, fresh.assignments)
    np.testing.assert_allclose(loaded.W, fresh.W, rtol=1e-12)
    assert loaded.summary()["cophenetic"] == pytest.approx(fresh.summary()["cophenetic"])


def test_a_model_saved_now_names_its_class_publicly_and_loads(spark, tmp_path):
    NMF(k=2, maxIter=3).fit(V).save(str(tmp_path / "m"))
    assert saved_class(tmp_path / "m") == "sparknmf.NMFModel"
    assert NMFModel.load(str(tmp_path / "m")).rank == 2
