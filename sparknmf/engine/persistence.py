"""Model persistence: JSON metadata plus Parquet arrays, never pickle.

A model directory holds::

    metadata/   one JSON line (Spark text): class, uid, params, sparkVersion,
                formatVersion and the model's own fields (k, shape, ...)
    <name>/     one Parquet table per array: index long, id <any>, features array<double>

The metadata layout is the one of pyspark's ``DefaultParamsWriter``, so
``DefaultParamsReader.loadMetadata`` can read it too.  Everything is written
through Spark, so paths may be local, HDFS, S3, ... and the same code runs in
classic and Connect sessions.

Loading never unpickles: metadata and arrays come back as Arrow data
(``toArrow``, not ``collect``, which ships rows as pickles), and every
check -- JSON nested at most :data:`MAX_DEPTH` deep, class, format version
(an integer from 1 to :data:`FORMAT_VERSION`), Params (each class's
``_constraints`` table), layout, row count, indices, finite values --
raises ``ValueError`` naming the directory.  Paths are only those given by
the caller; nothing in a model directory names another path.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
from pyspark.ml.util import MLReader, MLWriter

__all__ = ["FORMAT_VERSION", "MAX_DEPTH", "ParamsReader", "ParamsWriter", "write_metadata", "read_metadata",
           "write_rows", "read_rows"]

FORMAT_VERSION = 1
MAX_DEPTH = 32  # nesting of the metadata JSON (a model's is at most 4 deep)

# Files name a class by its public name (``sparknmf.NMFModel``), which stays when the module that defines it
# moves; files written by sparknmf 0.1.0 name the module of that release, read through this table.
LEGACY_CLASS_NAMES = {
    f"sparknmf.{module}.{name}": f"sparknmf.{name}"
    for module, names in (("nmf", ("NMF", "NMFModel")), ("als", ("MaskedALS", "MaskedALSModel")),
                          ("consensus", ("MultiStartNMF", "MultiStartNMFModel")))
    for name in names
}


def saved_class_name(cls: type) -> str:
    """The name a model file gives ``cls``: its public name, importable as ``sparknmf.<name>``."""
    return f"sparknmf.{cls.__name__}"


def _mode(overwrite: bool) -> str:
    return "overwrite" if overwrite else "error"


GLOB_CHARACTERS = "*?[]{}"


def check_path(path) -> str:
    """Refuse Hadoop glob characters in a save or load path: Spark expands them when reading."""
    found = sorted({c for c in str(path) if c in GLOB_CHARACTERS})
    if found:
        raise ValueError(f"model path {str(path)!r} contains the glob character(s) {''.join(found)!r}; Spark reads "
                         f"paths as glob patterns, so a model path may not contain any of {GLOB_CHARACTERS!r}")
    return str(path)


def write_metadata(instance, path: str, spark, extra: dict, *, overwrite: bool = False) -> None:
    """Write ``path/metadata``: the instance's Params plus ``extra`` fields."""
    path = check_path(path)
    metadata = {
        "class": saved_class_name(type(instance)),
        "timestamp": int(round(time.time() * 1000)),
        "sparkVersion": spark.version,
        "uid": instance.uid,
        "paramMap": {p.name: v for p, v in instance._paramMap.items()},
        "defaultParamMap": {p.name: v for p, v in instance._defaultParamMap.items()},
        "formatVersion": FORMAT_VERSION,
        **extra,
    }
    frame = spark.createDataFrame([(json.dumps(metadata, separators=(",", ":")),)], "value string")
    frame.coalesce(1).write.mode(_mode(overwrite)).text(f"{path}/metadata")


def read_metadata(path: str, spark, expected_class: type) -> dict:
    """Read and check ``path/metadata``; ``ValueError`` when it is not a model of ``expected_class``."""
    path = check_path(path)
    try:
        lines = spark.read.text(f"{path}/metadata").toArrow().column(0).to_pylist()
    except Exception as err:  # AnalysisException: path does not exist
        raise ValueError(f"{path} is not a saved sparknmf model: cannot read its metadata "
                         f"({type(err).__name__})") from None
    if len(lines) != 1:
        raise ValueError(f"{path}/metadata is malformed: expected one JSON line, found {len(lines)}")
    try:
        metadata = json.loads(lines[0])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}/metadata is not valid JSON: {err}") from None
    except RecursionError:
        metadata = None  # nested deeper than Python's recursion limit
    if metadata is None or _depth(metadata) > MAX_DEPTH:
        raise ValueError(f"{path}/metadata is nested more than {MAX_DEPTH} levels deep; a model's metadata is not")
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}/metadata is malformed: expected a JSON object, found {type(metadata).__name__}")
    expected, found = saved_class_name(expected_class), metadata.get("class")
    if LEGACY_CLASS_NAMES.get(found, found) != expected:
        raise ValueError(f"{path} holds a {found!r}, not a {expected!r}")
    version = metadata.get("formatVersion")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}/metadata: formatVersion={version!r} is not a format version "
                         f"(an integer from 1 to {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in format version {version!r}; this sparknmf reads up to {FORMAT_VERSION}"
        )
    for section in ("paramMap", "defaultParamMap"):
        if not isinstance(metadata.get(section, {}), dict):
            raise ValueError(f"{path}/metadata: {section} must be a JSON object of Param values")
    return metadata


def _depth(value) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def set_params(instance, metadata: dict) -> None:
    """Restore uid and Params from metadata (unknown Params are an error)."""
    instance._resetUid(metadata["uid"])
    for section, setter in (("defaultParamMap", instance._setDefault), ("paramMap", instance._set)):
        for name, value in metadata.get(section, {}).items():
            if not instance.hasParam(name):
                raise ValueError(f"saved model has unknown param {name!r}")
            setter(**{name: value})


def write_rows(spark, path: str, matrix: np.ndarray, ids=None, *, overwrite: bool = False) -> None:
    """Write the rows of ``matrix`` (r×k) with their ids as Parquet at ``path``."""
    path = check_path(path)
    r = matrix.shape[0]
    table = pa.table(
        {
            "index": pa.array(np.arange(r), pa.int64()),
            "id": ids if ids is not None else pa.array(np.arange(r), pa.int64()),
            "features": pa.array(list(np.asarray(matrix, dtype=np.float64)), pa.list_(pa.float64())),
        }
    )
    spark.createDataFrame(table).write.mode(_mode(overwrite)).parquet(path)


def read_rows(spark, path: str, rows: int, k: int):
    """Inverse of :func:`write_rows`: ``(matrix r×k, ids)``; ``ValueError`` on a mismatch."""
    path = check_path(path)
    try:
        table = spark.read.parquet(path).toArrow()
    except Exception as err:
        raise ValueError(f"cannot read {path}: {type(err).__name__}") from None
    if set(table.column_names) != {"index", "id", "features"} or table.num_rows != rows:
        raise ValueError(f"{path} is malformed: expected {rows} rows of (index, id, features)")
    table = table.sort_by("index")
    if not np.array_equal(table.column("index").to_numpy(), np.arange(rows)):
        raise ValueError(f"{path} is malformed: indices are not 0..{rows - 1}")
    features = table.column("features").combine_chunks()
    values = features.flatten().to_numpy(zero_copy_only=False)
    if values.size != rows * k or features.null_count:
        raise ValueError(f"{path} is malformed: expected {k} values per row")
    if not np.isfinite(values).all():
        raise ValueError(f"{path} is malformed: NaN or infinite values (a fitted model has none)")
    return values.reshape(rows, k), table.column("id").combine_chunks()


class ParamsWriter(MLWriter):
    """Writes an instance's Params only (metadata): the writer of every sparknmf Estimator, and the base of
    the model writers, which add their arrays in ``saveImpl``."""

    def __init__(self, instance):
        super().__init__()
        self.instance = instance

    def save(self, path):
        self.saveImpl(path)

    def saveImpl(self, path):
        write_metadata(self.instance, path, self.sparkSession, {}, overwrite=self.shouldOverwrite)


class ParamsReader(MLReader):
    """Reads what :class:`ParamsWriter` (or a model writer) wrote, for the class ``cls``.

    The class must be constructible with no arguments.  When it has a
    ``_load_arrays(path, spark, metadata)`` method (models), that method
    restores the fitted state after the Params.
    """

    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def load(self, path):
        from sparknmf.params import check_params

        spark = self.sparkSession
        metadata = read_metadata(path, spark, self.cls)
        instance = self.cls()
        try:
            set_params(instance, metadata)
            if hasattr(instance, "_constraints"):
                check_params(instance)
        except (TypeError, ValueError) as err:  # a Param's type converter, a setter's or the table's check
            raise ValueError(f"{path}/metadata: {err}") from None
        if hasattr(instance, "_load_arrays"):
            instance._load_arrays(path, spark, metadata)
        return instance
