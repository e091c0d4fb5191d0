"""A matrix V as a job's ``[input]`` section describes it: files on the driver or DataFrames on Spark.

Formats (``input.format``):

``matrix_market``
    A Matrix Market file (:func:`~sparknmf.datasets.read_matrix_market`), read on the driver.
``dense``
    Delimited text, one row of V per line (:func:`~sparknmf.datasets.read_dense_text`):
    TSV by default, optional header, row names and a label column; read on the driver.
``coordinates``
    Parquet or CSV with one stored entry per row ``(row id, column id, value)``, read by Spark.
``vectors``
    Parquet with one sample per row in a vector or ``array<double>`` column (a column of V), read by Spark.

Driver formats give numpy / scipy matrices; Spark formats a DataFrame that
:class:`~sparknmf.NMF` reads directly (or, where a job needs V on the
driver, collected with :meth:`MatrixInput.to_driver`).  ``transpose`` swaps
rows and columns: samples are the columns of V, so a file with one sample
per line (iris, documents × terms) is read with ``transpose = true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from sparknmf.errors import InvalidInputError
from sparknmf.pipeline.jobconf import Option

__all__ = [
    "FORMATS", "INPUT_SECTION", "RATINGS_SECTION", "MatrixInput", "check_input", "read_input", "read_labels",
    "is_local", "read_ratings", "check_ratings", "holdout_split", "content_digest",
]

FORMATS = ("matrix_market", "dense", "coordinates", "vectors")
DRIVER_FORMATS = ("matrix_market", "dense")

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


def is_local(path: str) -> bool:
    """True for a path on the driver's file system (no ``scheme://``, or ``file://``)."""
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path[len("file://"):] if path.startswith("file://") else path)


def check_input(conf, section: str = "input") -> None:
    """Fail before any work when the input cannot be read as configured (names the key and its file)."""
    values = conf[section]
    path, fmt = values["path"], values["format"]
    if fmt in DRIVER_FORMATS and not is_local(path):
        raise conf.error(f"{section}.path", f"format {fmt!r} is read on the driver: give a local or mounted path")
    if is_local(path) and not _local(path).exists():
        raise conf.error(f"{section}.path", "no such file or folder")
    if fmt in DRIVER_FORMATS and not _local(path).is_file():
        raise conf.error(f"{section}.path", f"format {fmt!r} needs a file, this is a folder")
    if fmt == "vectors" and values["file_format"] != "parquet":
        raise conf.error(f"{section}.file_format", "vectors are read from Parquet only")
    if fmt == "vectors" and values["transpose"]:
        raise conf.error(f"{section}.transpose", "vectors are samples (columns of V) and cannot be transposed")
    if values["label_column"] and fmt != "dense":
        raise conf.error(f"{section}.label_column", "only the dense format has a label column; use input.labels")
    if values["labels"] and not _local(values["labels"]).is_file():
        raise conf.error(f"{section}.labels", "no such file")


def read_labels(path) -> list:
    """One class per non-empty line."""
    return [line.strip() for line in _local(str(path)).read_text(encoding="utf-8").splitlines() if line.strip()]


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
    labels = read_labels(values["labels"]) if values["labels"] else None
    duplicates = values["duplicates"]
    if fmt == "matrix_market":
        from sparknmf.datasets import read_matrix_market

        V = read_matrix_market(_local(path), duplicates=duplicates)
        return MatrixInput(V.T.tocsr() if transpose and sp.issparse(V) else (V.T if transpose else V),
                           labels=labels, duplicates=duplicates)
    if fmt == "dense":
        from sparknmf.datasets import read_dense_text

        text = read_dense_text(_local(path), delimiter=values["delimiter"] or "\t", header=values["header"],
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
    """A Parquet or CSV table as ``[input]``-like ``values`` describe it (path, file_format, header, ...)."""
    reader = spark.read
    if values["file_format"] == "csv":
        reader = reader.option("header", values["header"]).option("sep", values["delimiter"] or ",")
        reader = reader.schema(values["schema"]) if values["schema"] else reader.option("inferSchema", True)
        return reader.csv(values["path"])
    return reader.parquet(values["path"])


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


def check_ratings(conf, section: str = "input") -> None:
    """Fail before any work when ``conf[section]["path"]`` is set but does not exist (local paths only)."""
    path = conf[section]["path"]
    if path and is_local(path) and not _local(path).exists():
        raise conf.error(f"{section}.path", "no such file or folder")


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


def content_digest(*paths) -> str | None:
    """A hash of the bytes of local files or folders (every file below, in sorted order); None when a path
    is not on the driver's file system (its content cannot be hashed cheaply)."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        if not path:
            continue
        if not is_local(path):
            return None
        root = _local(path)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            digest.update(str(file.relative_to(root) if file != root else file.name).encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
