"""A matrix V as a job's ``[input]`` section describes it: files on the driver or DataFrames on Spark.

Formats (``input.format``):

``matrix_market``
    A Matrix Market file (:func:`~sparknmf.datasets.read_matrix_market`), parsed on the driver.
``dense``
    Delimited text, one row of V per line (:func:`~sparknmf.datasets.read_dense_text`):
    TSV by default, optional header, row names and a label column; parsed on the driver.
``coordinates``
    Parquet or CSV with one stored entry per row ``(row id, column id, value)``, read by Spark.
``vectors``
    Parquet with one sample per row in a vector or ``array<double>`` column (a column of V), read by Spark.

Driver formats give numpy / scipy matrices; Spark formats a DataFrame that
:class:`~sparknmf.NMF` reads directly (or, where a job needs V on the
driver, collected with :meth:`MatrixInput.to_driver`).  Paths are the driver's
file system (plain paths, ``file:`` URIs) or any URI Spark reads (``hdfs://``,
``s3a://``...; :mod:`sparknmf.pipeline.storage`): a driver format's file (and a
labels or vocabulary file) on such a URI is read through Spark's ``binaryFile``
source, never opened as a local path.  ``transpose`` swaps
rows and columns: samples are the columns of V, so a file with one sample
per line (iris, documents × terms) is read with ``transpose = true``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from sparknmf.errors import InvalidInputError
from sparknmf.pipeline.jobconf import Option
from sparknmf.pipeline.storage import StorageError, is_local, local_path

__all__ = [
    "FORMATS", "INPUT_SECTION", "RATINGS_SECTION", "MatrixInput", "check_input", "read_input", "read_labels",
    "is_local", "read_ratings", "check_ratings", "holdout_split", "content_digest", "fetch", "table_columns",
    "check_columns",
]

FORMATS = ("matrix_market", "dense", "coordinates", "vectors")
DRIVER_FORMATS = ("matrix_market", "dense")
SPARK_FORMAT_COLUMNS = {"coordinates": ("row_col", "col_col", "value_col"), "vectors": ("features_col", "id_col")}
RATINGS_COLUMNS = ("user_col", "item_col", "rating_col", "timestamp_col")

INPUT_SECTION = {
    "path": Option("path", doc="file (driver formats) or file/folder (Spark formats) holding V"),
    "format": Option("str", "matrix_market", "matrix_market | dense | coordinates | vectors", choices=FORMATS),
    "file_format": Option("str", "parquet", "coordinates/vectors: parquet | csv", choices=("parquet", "csv")),
    "delimiter": Option("str", "", "dense and CSV field separator ('' = tab for dense, ',' for CSV)"),
    "header": Option("bool", False, "dense/CSV: the first line names the columns"),
    "schema": Option("str", "", "CSV: column types as a Spark DDL string, e.g. 'user int, item int, rating double'"),
    "row_names": Option("bool", False, "dense: the first field of each line is the row's name"),
    "label_column": Option("str", "", "dense: a column of class labels (header name or 1-based number), not part of V"),
    "row_col": Option("str", "row", "coordinates: column of row ids"),
    "col_col": Option("str", "col", "coordinates: column of column (sample) ids"),
    "value_col": Option("str", "value", "coordinates: column of values"),
    "features_col": Option("str", "features", "vectors: the vector column (one sample = one column of V)"),
    "id_col": Option("str", "", "vectors: the sample id column ('' = generated)"),
    "transpose": Option("bool", False, "swap rows and columns (samples are the columns of V)"),
    "duplicates": Option("str", "error", "repeated coordinates: error | sum", choices=("error", "sum")),
    "labels": Option("path", "", "file with one known class per sample, one per line ('' = none)"),
}


def _local(path: str) -> Path:
    return local_path(path)


def _storage(path: str, storage):
    """The Storage of a path: local ones always; others through ``storage(path)`` when given and reachable
    (None under Spark Connect, where only Spark's readers reach them)."""
    from sparknmf.pipeline.storage import LocalStorage

    if is_local(path):
        return LocalStorage()
    if storage is None:
        return None
    try:
        return storage(path)
    except StorageError:
        return None


def check_path(conf, key: str, *, file: bool = False, storage=None, what: str = "") -> None:
    """Fail (naming ``key``) when the path at ``key`` does not exist, or is a folder when ``file``.

    Local paths are checked on the driver; URIs through ``storage(path) -> Storage`` when given (a classic
    session's Hadoop file systems), else left to Spark's reader.
    """
    path = conf.get(key)
    s = _storage(path, storage)
    if s is None:
        return
    if not s.exists(path):
        raise conf.error(key, "no such file or folder" if not file else "no such file")
    if file and not s.is_file(path):
        raise conf.error(key, what or "needs a file, this is a folder")


def check_input(conf, section: str = "input", storage=None) -> None:
    """Fail before any work when the input cannot be read as configured (names the key and its file).

    ``storage(path) -> Storage`` checks paths on other file systems (:func:`check_path`).
    """
    values = conf[section]
    fmt = values["format"]
    check_path(conf, f"{section}.path", storage=storage)
    if fmt in DRIVER_FORMATS:
        check_path(conf, f"{section}.path", file=True, storage=storage,
                   what=f"format {fmt!r} needs a file, this is a folder")
    if fmt == "vectors" and values["file_format"] != "parquet":
        raise conf.error(f"{section}.file_format", "vectors are read from Parquet only")
    if fmt == "vectors" and values["transpose"]:
        raise conf.error(f"{section}.transpose", "vectors are samples (columns of V) and cannot be transposed")
    if values["label_column"] and fmt != "dense":
        raise conf.error(f"{section}.label_column", "only the dense format has a label column; use input.labels")
    if values["labels"]:
        check_path(conf, f"{section}.labels", file=True, storage=storage)


def _ddl_names(ddl: str) -> list:
    """Column names of a Spark DDL schema string (``"user int, item int, r decimal(3,1)"``)."""
    fields, depth, current = [], 0, ""
    for char in ddl:
        depth += char in "(<"
        depth -= char in ")>"
        if char == "," and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    names = []
    for text in (f.strip() for f in fields if f.strip()):
        if text.startswith("`"):
            names.append(text[1:text.index("`", 1)])
        else:
            names.append(text.split()[0].rstrip(":"))
    return names


def table_columns(values, spark=None) -> list | None:
    """The column names of the Parquet or CSV table that ``[input]``-like ``values`` describe, without
    reading its rows: a CSV's DDL ``schema``, a local Parquet file's or folder's footers (pyarrow), another
    URI's through ``spark`` (a session or a callable returning one); None when only reading the data would
    tell (a CSV without a schema)."""
    path = values["path"]
    if values["file_format"] == "csv":
        return _ddl_names(values["schema"]) if values["schema"] else None
    if is_local(path):
        import pyarrow.dataset as ds

        return list(ds.dataset(str(local_path(path)), format="parquet").schema.names)
    if spark is None:
        return None
    return list((spark() if callable(spark) else spark).read.parquet(path).columns)


def check_columns(conf, section: str, keys, spark=None, values=None) -> None:
    """Fail, naming the key, when a column that ``conf[section][key]`` names is not in the table (see
    :func:`table_columns`; nothing is checked when the columns cannot be known without reading the data)."""
    values = values or conf[section]
    if not any(values[key] for key in keys):
        return
    try:
        names = table_columns(values, spark)
    except Exception as err:  # an unreadable footer, a folder of something else...
        raise conf.error(f"{section}.path", f"cannot read its schema: {type(err).__name__}: {err}") from None
    if names is None:
        return
    for key in keys:
        column = values[key]
        if column and column not in names:
            if key in conf[section]:
                raise conf.error(f"{section}.{key}", f"no such column in {values['path']} (it has {names})")
            raise conf.error(f"{section}.path", f"has no column {column!r} ({key}), it has {names}")


@contextlib.contextmanager
def fetch(spark, path):
    """``with fetch(spark, path) as local:`` -- a local copy of the file at ``path`` for a driver-side parser.

    A path on the driver's file system is used as it is; any other URI is read through Spark's ``binaryFile``
    source (the Hadoop file systems, their configuration and credentials, classic or Connect sessions) into a
    temporary folder removed afterwards.
    """
    if is_local(path):
        yield local_path(path)
        return
    if spark is None:
        raise InvalidInputError(f"{path}: a URI is read through Spark, and no session was given")
    try:
        table = spark.read.format("binaryFile").load(str(path)).select("path", "content").toArrow()
    except Exception as err:  # AnalysisException: no such path
        raise InvalidInputError(f"{path}: cannot be read through Spark: {type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''}") from None
    if table.num_rows != 1:
        raise InvalidInputError(f"{path}: expected one file, found {table.num_rows}")
    folder = Path(tempfile.mkdtemp(prefix="sparknmf-input-"))
    try:
        local = folder / (str(path).rstrip("/").rsplit("/", 1)[-1] or "input")
        local.write_bytes(table.column("content")[0].as_py())
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_labels(path, spark=None) -> list:
    """One class per non-empty line (``path`` on any file system Spark reads, see :func:`fetch`)."""
    with fetch(spark, path) as local:
        text = local.read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class MatrixInput:
    """V as read: a driver matrix or a DataFrame, its ids and known labels.

    Attributes
    ----------
    data : ndarray, csr_matrix or DataFrame
    params : dict
        The column Params an Estimator needs for ``data`` (``rowCol``, ... or ``featuresCol``, ``idCol``).
    row_ids, col_ids : list or None
        Names of V's rows and columns for driver data (None: positions).
    labels : list or None
        Known class of each sample (column of V).
    """

    data: object
    params: dict = field(default_factory=dict)
    row_ids: list | None = None
    col_ids: list | None = None
    labels: list | None = None
    duplicates: str = "error"

    @property
    def on_driver(self) -> bool:
        return not hasattr(self.data, "sparkSession")

    @property
    def shape(self):
        return self.data.shape if self.on_driver else None

    def to_driver(self) -> "MatrixInput":
        """The same input with V on the driver (a DataFrame is collected; ids sorted as the Estimators sort them)."""
        if self.on_driver:
            return self
        frame = self.data
        if "featuresCol" in self.params:
            return _collect_vectors(self, frame)
        row, col, value = self.params["rowCol"], self.params["colCol"], self.params["valueCol"]
        table = frame.select(row, col, value).toArrow()
        rows, row_ids = _codes(table.column(row), row)
        cols, col_ids = _codes(table.column(col), col)
        values = pc.cast(table.column(value), pa.float64()).to_numpy()
        coo = sp.coo_matrix((values, (rows, cols)), shape=(len(row_ids), len(col_ids)))
        from sparknmf.engine.validation import as_matrix

        V = as_matrix(coo, "input (coordinates)", duplicates=self.duplicates)
        return MatrixInput(V, {}, row_ids, col_ids, self.labels, self.duplicates)


def _codes(column, name):
    if column.null_count:
        raise InvalidInputError(f"input: column {name!r} has null ids")
    ids, codes = np.unique(column.to_numpy(zero_copy_only=False), return_inverse=True)
    return codes, ids.tolist()


def _collect_vectors(source: MatrixInput, frame) -> MatrixInput:
    from sparknmf.engine.ingest import vectors_to_csr

    features, id_col = source.params["featuresCol"], source.params.get("idCol")
    table = frame.select(*([id_col] if id_col else []), features).toArrow()
    column = table.column(features).combine_chunks()
    first = column[0].as_py() if len(column) else None
    if first is None:
        raise InvalidInputError("input (vectors) is empty or starts with a null vector")
    size = first["size"] if isinstance(first, dict) and first.get("size") is not None else len(
        first["values"] if isinstance(first, dict) else first)
    csr, sizes, nulls = vectors_to_csr(column, size)
    if csr is None or nulls.any():
        raise InvalidInputError(f"input (vectors): every {features!r} vector must have size {size}")
    ids = table.column(id_col).to_pylist() if id_col else list(range(len(column)))
    order = np.argsort(np.array(ids, dtype=object), kind="stable") if id_col else np.arange(len(ids))
    from sparknmf.engine.validation import as_matrix

    V = as_matrix(csr[order].T.tocsr(), "input (vectors)")
    return MatrixInput(V, {}, None, [ids[i] for i in order], source.labels, source.duplicates)


def read_input(conf, spark=None, section: str = "input") -> MatrixInput:
    """Read V as ``conf[section]`` describes (see the module docstring); ``spark`` for the Spark formats."""
    values = conf[section]
    path, fmt, transpose = values["path"], values["format"], values["transpose"]
    labels = read_labels(values["labels"], spark) if values["labels"] else None
    duplicates = values["duplicates"]
    if fmt == "matrix_market":
        from sparknmf.datasets import read_matrix_market

        with fetch(spark, path) as local:
            V = read_matrix_market(local, duplicates=duplicates)
        return MatrixInput(V.T.tocsr() if transpose and sp.issparse(V) else (V.T if transpose else V),
                           labels=labels, duplicates=duplicates)
    if fmt == "dense":
        from sparknmf.datasets import read_dense_text

        with fetch(spark, path) as local:
            text = read_dense_text(local, delimiter=values["delimiter"] or "\t", header=values["header"],
                                   row_names=values["row_names"], label_column=values["label_column"] or None)
        rows, cols = text.row_names, text.col_names
        if transpose:
            return MatrixInput(np.ascontiguousarray(text.matrix.T), row_ids=cols, col_ids=rows,
                               labels=labels or text.labels, duplicates=duplicates)
        return MatrixInput(text.matrix, row_ids=rows, col_ids=cols, labels=labels, duplicates=duplicates)
    frame = _read_frame(spark, values)
    if fmt == "vectors":
        return MatrixInput(frame, {"featuresCol": values["features_col"], "idCol": values["id_col"],
                                   "duplicates": duplicates}, labels=labels, duplicates=duplicates)
    row, col = values["row_col"], values["col_col"]
    if transpose:
        row, col = col, row
    return MatrixInput(frame, {"rowCol": row, "colCol": col, "valueCol": values["value_col"], "duplicates": duplicates},
                       labels=labels, duplicates=duplicates)


def _read_frame(spark, values):
    """A Parquet or CSV table as ``[input]``-like ``values`` describe it (path, file_format, header, ...).

    A plain path is the driver's file system (given to Spark as a ``file:`` URI, not resolved against
    ``fs.defaultFS``), as everywhere in the jobs."""
    path = values["path"]
    uri = local_path(path).as_uri() if is_local(path) else path
    reader = spark.read
    if values["file_format"] == "csv":
        reader = reader.option("header", values["header"]).option("sep", values["delimiter"] or ",")
        reader = reader.schema(values["schema"]) if values["schema"] else reader.option("inferSchema", True)
        return reader.csv(uri)
    return reader.parquet(uri)


RATINGS_SECTION = {
    "path": Option("path", doc="Parquet or CSV file/folder of ratings, one (user, item, rating) per row"),
    "file_format": Option("str", "parquet", "parquet | csv", choices=("parquet", "csv")),
    "delimiter": Option("str", "", "CSV field separator ('' = ',')"),
    "header": Option("bool", False, "CSV: the first line names the columns"),
    "schema": Option("str", "", "CSV: columns as a Spark DDL string ('' = infer)"),
    "user_col": Option("str", "user", "column of user ids (any type)"),
    "item_col": Option("str", "item", "column of item ids (any type)"),
    "rating_col": Option("str", "rating", "column of ratings"),
    "timestamp_col": Option("str", "", "column of rating times, for the time terms ('' = none)"),
}


def read_ratings(conf, spark, *, path: str | None = None, section: str = "input"):
    """The ratings DataFrame that ``conf[section]`` (:data:`RATINGS_SECTION`) describes, or the file at
    ``path`` in the same format (e.g. held-out ratings)."""
    values = conf[section] if path is None else {**conf[section], "path": path}
    return _read_frame(spark, values)


def check_ratings(conf, section: str = "input", storage=None) -> None:
    """Fail before any work when ``conf[section]["path"]`` is set but does not exist (local paths; URIs
    through ``storage``, see :func:`check_path`)."""
    if conf[section]["path"]:
        check_path(conf, f"{section}.path", storage=storage)


def holdout_split(frame, fraction: float, seed: int, columns):
    """Split rows into ``(train, held_out)`` by a seeded hash of ``columns``: the same rows always land on
    the same side, whatever the partitioning or the order of the data.

    Parameters
    ----------
    frame : DataFrame
    fraction : float in (0, 1)
        Expected share of held-out rows.
    seed : int
    columns : sequence of str
        Columns identifying a row, e.g. (user, item).
    """
    from pyspark.sql import functions as F

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction!r}")
    bucket = F.pmod(F.xxhash64(*[F.col(c) for c in columns], F.lit(int(seed))), F.lit(1_000_000))
    held = bucket < F.lit(int(round(fraction * 1_000_000)))
    return frame.filter(~held), frame.filter(held)


def content_digest(*paths, storage=None) -> str | None:
    """A hash that changes when the content of the given files or folders changes; None when it cannot be
    known cheaply.

    Local files are hashed byte by byte (every file below a folder, in sorted order).  A URI is identified
    by the checksums its file system keeps for every file below it (``FileSystem.getFileChecksum``: HDFS's
    checksum of its block checksums) through ``storage(path) -> Storage``; None when no storage is given
    or reachable (Spark Connect), or a file has no such checksum (object stores unless configured).
    """
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        if not path:
            continue
        if not is_local(path):
            s = _storage(path, storage)
            sums = s.checksums(path) if s is not None else None
            if sums is None:
                return None
            for name, checksum in sums:
                digest.update(name.encode() + b"\0" + checksum + b"\0")
            continue
        root = _local(path)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            digest.update(str(file.relative_to(root) if file != root else file.name).encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
