"""Safe persistence: loading a model never unpickles, and a tampered or truncated model directory is refused with a
ValueError naming what is wrong (NMFModel and MaskedALSModel)."""

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparknmf import NMF, MaskedALS, MaskedALSModel, NMFModel
from sparknmf.datasets import planted_ratings

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


@pytest.fixture(scope="module")
def saved(spark, tmp_path_factory):
    """A saved NMFModel and MaskedALSModel: {class: path}."""
    folder = tmp_path_factory.mktemp("models")
    NMF(k=2, maxIter=3).fit(np.random.default_rng(0).random((6, 5))).save(str(folder / "nmf"))
    ratings = spark.createDataFrame(planted_ratings(8, 6, 2, density=0.6, seed=1)[0])
    MaskedALS(rank=2, maxIter=2, backend="local").fit(ratings).save(str(folder / "als"))
    return {NMFModel: folder / "nmf", MaskedALSModel: folder / "als"}


@pytest.fixture
def copy_of(saved, tmp_path):
    """A fresh copy of a saved model directory, to damage."""
    import shutil

    def copy(cls):
        target = tmp_path / saved[cls].name
        shutil.copytree(saved[cls], target)
        return target

    return copy


def _no_pickle(*args, **kwargs):
    raise AssertionError("a model load unpickled something")


@pytest.mark.parametrize("cls", [NMFModel, MaskedALSModel])
def test_loading_never_unpickles(saved, monkeypatch, cls):
    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, _no_pickle)
    model = cls.load(str(saved[cls]))
    assert model.uid
    files = [p.name for p in saved[cls].rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".npy"))]


def _part(folder):
    return next(p for p in sorted(folder.glob("part-*")))


def _drop_checksums(folder):
    for crc in folder.glob(".*.crc"):
        crc.unlink()


def _rewrite_json(path, change):
    part = _part(path / "metadata")
    part.write_text(json.dumps(change(json.loads(part.read_text()))))
    _drop_checksums(path / "metadata")


def _rewrite_rows(folder, change):
    table = change(pq.read_table(folder))
    for old in folder.glob("part-*"):
        old.unlink()
    pq.write_table(table, folder / "part-00000.parquet")
    _drop_checksums(folder)


def _flip_a_byte(part):
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))


def _nan_row(table):
    features = table.column("features").to_pylist()
    features[0][0] = float("nan")
    return table.set_column(table.column_names.index("features"), "features", pa.array(features))


DAMAGE = {
    "metadata not JSON": (lambda p, a: (_part(p / "metadata").write_text("{class: NMFModel"),
                                        _drop_checksums(p / "metadata")), "metadata is not valid JSON"),
    "metadata without the layout": (lambda p, a: _rewrite_json(p, lambda m: {k: v for k, v in m.items()
                                                                            if k not in ("shape", "specs")}),
                                    "metadata lacks the model's"),
    "metadata emptied": (lambda p, a: [f.unlink() for f in (p / "metadata").iterdir()],
                         "metadata is malformed: expected one JSON line, found 0"),
    "unknown param": (lambda p, a: _rewrite_json(p, lambda m: {**m, "paramMap": {**m["paramMap"], "evil": 1}}),
                      "saved model has unknown param 'evil'"),
    "array truncated": (lambda p, a: _part(p / a).write_bytes(_part(p / a).read_bytes()[:40]), "cannot read"),
    "array edited, checksum kept": (lambda p, a: _flip_a_byte(_part(p / a)), "cannot read"),
    "array deleted": (lambda p, a: [f.unlink() for f in (p / a).iterdir()], "cannot read"),
    "rows missing": (lambda p, a: _rewrite_rows(p / a, lambda t: t.slice(1)), r"is malformed: expected \d+ rows"),
    "NaN factor": (lambda p, a: _rewrite_rows(p / a, _nan_row), "is malformed: NaN or infinite values"),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("cls, array", [(NMFModel, "W"), (MaskedALSModel, "items")])
def test_tampered_or_truncated_model_directories_are_refused(copy_of, cls, array, damage):
    path = copy_of(cls)
    change, message = DAMAGE[damage]
    change(path, array)
    with pytest.raises(ValueError, match=message):
        cls.load(str(path))
