"""The fitted NMF: ``NMFModel`` holds W (n×k) and H (k×m), projects new samples, completes entries, persists.

V (n×m) ≈ W (n×k) · H (k×m); samples are the columns of V.  A model file is
JSON metadata plus W and Hᵀ as Parquet (:mod:`sparknmf.engine.persistence`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.ml import Model
from pyspark.ml.util import MLReadable, MLWritable

from sparknmf.decomposition.factorize import FitResult
from sparknmf.decomposition.output import as_output_type
from sparknmf.decomposition.params import _NMFModelParams
from sparknmf.decomposition.sklearn_api import SklearnModelMixin, project
from sparknmf.engine import persistence
from sparknmf.engine import placement as placement_rule
from sparknmf.engine.factors import FactorFrame, factor_from_rows
from sparknmf.engine.id_index import IdIndex
from sparknmf.engine.ingest import check_columns, is_frame, vectors_to_csr
from sparknmf.engine.session import get_session, parallelism
from sparknmf.errors import InvalidInputError
from sparknmf.kernels.nnls import nnls_bpp
from sparknmf.params import check_params

__all__ = ["NMFModel"]

# the problems transform looks for in DataFrame input, in the order they are reported
_PROBLEMS = ("null vectors or vectors of another size", "null, NaN or infinite entries", "negative entries")
_PROBLEM_SCHEMA = pa.schema([("problem", pa.int32()), ("count", pa.int64()), ("at", pa.string()),
                             ("value", pa.float64())])
_PROBLEM_DDL = "problem int, count long, at string, value double"


def _problem_rows(masks, where, values) -> pa.RecordBatch:
    """One row per problem of ``masks`` ({problem index: boolean mask}) that occurs: count and first example."""
    rows = []
    for code, mask in masks.items():
        if mask.any():
            first = int(np.flatnonzero(mask)[0])
            rows.append({"problem": code, "count": int(mask.sum()), "at": where(first), "value": float(values[first])})
    return pa.RecordBatch.from_pylist(rows, schema=_PROBLEM_SCHEMA)


def _raise_first_problem(found: pa.Table, whom: str) -> None:
    """Raise InvalidInputError for the first problem kind found (totals over all tasks), as the numpy path does."""
    if not found.num_rows:
        return
    code = min(found.column("problem").to_pylist())
    mine = found.filter(pc.equal(found.column("problem"), code))
    count, at, value = int(pc.sum(mine.column("count")).as_py()), mine.column("at")[0].as_py(), mine.column("value")[0]
    example = f"size {value.as_py():g} at {at}" if code == 0 else f"{value.as_py()} at {at}"
    raise InvalidInputError(f"{whom} has {count} {_PROBLEMS[code]}, e.g. {example}; NMF coefficients need "
                            "non-negative finite data (the numpy input is checked the same way)")


def _frame_rows(factor: FactorFrame, ids):
    """DataFrame ``(index bigint, id, features array<double>)`` of a factor's rows, made by the executors.

    ``ids`` (held on the driver, pyarrow, or ranked in the executors, an IdIndex) are joined by index; None:
    the index is the id.
    """
    rows = factor.rows_frame()
    if ids is None:
        return rows.selectExpr("index", "index as id", "features")
    if isinstance(ids, IdIndex):
        return rows.join(ids.frame, "index").select("index", "id", "features")
    spark = rows.sparkSession
    index = spark.createDataFrame(pa.table({"index": pa.array(np.arange(len(ids)), pa.int64()), "id": ids}))
    return rows.join(index, "index").select("index", "id", "features")


class NMFModel(Model, _NMFModelParams, SklearnModelMixin, MLWritable, MLReadable):
    """A fitted factorization V (n×m) ≈ W (n×k) · H (k×m); samples are columns of V.

    Attributes
    ----------
    W : ndarray of shape (n, k)
        Basis (one row per feature / row id of V).
    H : ndarray of shape (k, m)
        Coefficients (one column per sample / column id of V).
    rowIds, colIds : pyarrow Array, IdIndex (ids ranked in the executors) or None
        User ids of V's rows and columns (None: positions 0..n-1, 0..m-1).
    objective : float
    history : list of float
        Objective of the initial factors, then after each iteration.
    nIter : int
    converged : bool
    components_, reconstruction_err_, n_iter_, n_components_, n_features_in_ :
        scikit-learn's names (:class:`~sparknmf.decomposition.sklearn_api.SklearnModelMixin`).

    ``NMFModel()`` with no arguments is an empty model, as needed by ``load``.
    """

    def __init__(self, result: FitResult | None = None, rowIds=None, colIds=None):
        super().__init__()
        self._result = result
        self.rowIds, self.colIds = rowIds, colIds

    def _require(self):
        if self._result is None:
            raise ValueError("this NMFModel is empty: fit an NMF or load a saved model")
        return self._result

    @property
    def placement(self) -> str:
        """Where W and H are: ``"driver"`` (numpy arrays) or ``"executors"`` (row blocks in Spark)."""
        return self._require().placement

    def _collected(self, index: int, name: str) -> np.ndarray:
        """Executors placement: factor ``index`` (0: W, 1: Hᵀ) collected, if it fits the driver's budget."""
        X = self._require().factors[index]
        budget, setting = placement_rule.driver_budget(get_session())
        size = placement_rule.factor_bytes(X.rows, X.k)
        if size > budget:
            raise ValueError(f"NMFModel.{name}: the model's factors are in the executors and {name} takes "
                             f"{size / 2**20:.1f} MiB, more than the driver's budget of {budget / 2**20:.1f} MiB "
                             f"(set by {setting}); use rowFactors/colFactors (DataFrames) or save() instead")
        return X.collect()

    @property
    def W(self) -> np.ndarray:
        """W (n×k).  With factors in the executors this collects them (each time): a ValueError beyond the
        driver's budget (:func:`~sparknmf.engine.placement.driver_budget`)."""
        result = self._require()
        return result.W if result.factors is None else self._collected(0, "W")

    @property
    def H(self) -> np.ndarray:
        """H (k×m); collects like :attr:`W` when the factors are in the executors."""
        result = self._require()
        return result.H if result.factors is None else np.ascontiguousarray(self._collected(1, "H").T)

    @property
    def rank(self) -> int:
        result = self._require()
        return result.W.shape[1] if result.factors is None else result.factors[0].k

    @property
    def shape(self) -> tuple:
        """``(n, m)``: the shape of the fitted V."""
        result = self._require()
        if result.factors is not None:
            return result.factors[0].rows, result.factors[1].rows
        return result.W.shape[0], result.H.shape[1]

    @property
    def objective(self) -> float:
        return self._require().objective

    @property
    def history(self) -> list:
        return list(self._require().history)

    @property
    def nIter(self) -> int:
        return self._require().n_iter

    @property
    def converged(self) -> bool:
        return self._require().converged

    @property
    def result(self) -> FitResult:
        """The underlying :class:`~sparknmf.decomposition.factorize.FitResult`."""
        return self._require()

    # ---------------------------------------------------------------- DataFrames
    def _rows_frame(self, matrix, ids):
        if isinstance(matrix, FactorFrame):
            return _frame_rows(matrix, ids).drop("index")
        table = pa.table({
            "id": ids if ids is not None else pa.array(np.arange(matrix.shape[0]), pa.int64()),
            "features": pa.array(list(np.asarray(matrix, dtype=np.float64)), pa.list_(pa.float64())),
        })
        return get_session().createDataFrame(table)

    @property
    def rowFactors(self):
        """DataFrame ``(id, features array<double>)``: the rows of W (n of them, k values each).

        With the factors in the executors it is computed there from W's blocks, never collected.
        """
        factors = self._require().factors
        return self._rows_frame(self.W if factors is None else factors[0], self.rowIds)

    @property
    def colFactors(self):
        """DataFrame ``(id, features array<double>)``: the columns of H (m of them, k values each).

        With the factors in the executors it is computed there from Hᵀ's blocks, never collected.
        """
        factors = self._require().factors
        return self._rows_frame(self.H.T if factors is None else factors[1], self.colIds)

    # ---------------------------------------------------------------- projection
    def project(self, V_new, *, samples="columns") -> np.ndarray:
        """Coefficients of new samples: ``argmin_{H ≥ 0} ‖V_new − W H‖`` by exact NNLS.

        Parameters
        ----------
        V_new : ndarray or sparse matrix of shape (n, m_new)
            New samples as columns, on the same n features as W; with
            ``samples="rows"``, of shape (p, m): new rows of V (scikit-learn's X_new).

        Returns
        -------
        H_new : ndarray of shape (k, m_new), or W_new of shape (p, k) with ``samples="rows"``
            (:func:`~sparknmf.decomposition.sklearn_api.project`)
        """
        return project(self, V_new, samples)

    def transform(self, dataset, params=None, *, samples="columns"):
        """Project samples onto the basis W by NNLS.

        * numpy / scipy (n×m_new): returns H_new (k×m_new), see :meth:`project`;
          ``samples="rows"``: scikit-learn's ``NMF.transform``, new rows X_new
          (p×m) -> W_new (p×k), NNLS against H.
        * DataFrame with ``featuresCol`` (vectors of size n, one sample per
          row): returns the DataFrame with ``outputCol`` (array<double> of k
          coefficients) appended.
        * DataFrame of coordinates ``(rowCol, colCol, valueCol)`` with row ids
          among the model's: returns ``(colCol, outputCol)``, one row per
          sample; entries with unknown row ids are ignored.

        Input with NaN, infinite or negative entries (or null / wrongly sized
        vectors) raises :class:`~sparknmf.errors.InvalidInputError`, for a
        DataFrame after one checking job, before the result is returned.
        """
        if not is_frame(dataset):
            return self.project(dataset, samples=samples)
        if samples != "columns":
            raise ValueError("NMFModel.transform: samples='rows' is for numpy / scipy input; a DataFrame holds "
                             "one sample per row already (featuresCol or coordinates)")
        return super().transform(dataset, params)

    def _transform(self, dataset):
        """DataFrame input is checked first, by one Spark job (null or wrongly sized vectors, NaN/inf and negative
        entries: :class:`~sparknmf.errors.InvalidInputError`, as for numpy input); the projection stays lazy."""
        self._require()
        check_params(self)  # outputType
        if self.getFeaturesCol() in dataset.columns:
            self._check_vectors(dataset)
            return as_output_type(self._transform_vectors(dataset), self.getOutputCol(), self.getOutputType())
        whom = f"NMFModel.transform (no vector column {self.getFeaturesCol()!r}; coordinates)"
        check_columns(dataset, [self.getRowCol(), self.getColCol(), self.getValueCol()], whom)
        self._check_coordinates(dataset)
        return as_output_type(self._transform_coordinates(dataset), self.getOutputCol(), self.getOutputType())

    def _check_vectors(self, dataset):
        from pyspark.ml.linalg import VectorUDT
        from pyspark.sql.types import ArrayType, NumericType

        features, n = self.getFeaturesCol(), self.W.shape[0]
        whom = f"NMFModel.transform (column {features!r})"
        dtype = dataset.schema[features].dataType
        if not (isinstance(dtype, ArrayType) and isinstance(dtype.elementType, NumericType)
                or isinstance(dtype, VectorUDT)):
            raise InvalidInputError(f"{whom}: must hold vectors or arrays of numbers, got {dtype.simpleString()}")
        position = dataset.columns.index(features)

        def scan(batches):
            for batch in batches:
                csr, sizes, nulls = vectors_to_csr(batch.column(position), n)
                if csr is None or nulls.any():
                    yield _problem_rows({0: nulls | (sizes != n)}, lambda r: "a row of the batch", sizes)
                    continue
                vals = csr.data
                yield _problem_rows({1: ~np.isfinite(vals), 2: vals < 0}, lambda e: f"feature {csr.indices[e]}", vals)

        _raise_first_problem(dataset.mapInArrow(scan, _PROBLEM_DDL).toArrow(), whom)

    def _check_coordinates(self, dataset):
        from pyspark.sql.types import NumericType

        value_col = self.getValueCol()
        whom = f"NMFModel.transform (column {value_col!r})"
        dtype = dataset.schema[value_col].dataType
        if not isinstance(dtype, NumericType):
            raise InvalidInputError(f"{whom}: must be numeric, got {dtype.simpleString()}")
        row_col, col_col = self.getRowCol(), self.getColCol()

        def scan(batches):
            for batch in batches:
                table = pa.Table.from_batches([batch])
                vals = pc.cast(table.column(value_col), pa.float64()).to_numpy(zero_copy_only=False)  # null -> NaN

                def where(e):
                    row, col = (table.column(c)[e].as_py() for c in (row_col, col_col))
                    return f"({row_col}={row!r}, {col_col}={col!r})"

                yield _problem_rows({1: ~np.isfinite(vals), 2: vals < 0}, where, vals)

        _raise_first_problem(dataset.select(row_col, col_col, value_col).mapInArrow(scan, _PROBLEM_DDL).toArrow(), whom)

    def _transform_vectors(self, dataset):
        W, features, out_col = self.W, self.getFeaturesCol(), self.getOutputCol()
        n = W.shape[0]
        gram = W.T @ W
        position = dataset.columns.index(features)

        def run(batches):
            for batch in batches:
                csr, sizes, nulls = vectors_to_csr(batch.column(position), n)
                if csr is None or nulls.any():
                    raise ValueError(f"NMFModel.transform: every {features!r} vector must have size {n}")
                coef = nnls_bpp(gram, np.asarray(csr @ W).T).T
                yield batch.append_column(out_col, pa.array(list(coef), pa.list_(pa.float64())))

        from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

        schema = StructType([*dataset.schema.fields, StructField(out_col, ArrayType(DoubleType()))])
        return dataset.mapInArrow(run, schema)

    def _transform_coordinates(self, dataset):
        from pyspark.sql import functions as F

        factors = self._require().factors
        if factors is not None:
            return self._transform_coordinates_by_join(dataset, factors[0])
        W = self.W
        spark = dataset.sparkSession
        row_col, col_col, value_col = self.getRowCol(), self.getColCol(), self.getValueCol()
        out_col = self.getOutputCol()
        ids = self.rowIds if self.rowIds is not None else pa.array(np.arange(W.shape[0]), pa.int64())
        index = spark.createDataFrame(pa.table({row_col: ids, "_i": pa.array(np.arange(len(ids)), pa.int64())}))
        gram = W.T @ W
        coords = dataset.select(row_col, col_col, value_col).join(F.broadcast(index), row_col)

        def project(table):
            rows = table.column("_i").to_numpy()
            vals = pa.compute.cast(table.column(value_col), pa.float64()).to_numpy(zero_copy_only=False)
            cross = W[rows].T @ vals
            coef = nnls_bpp(gram, cross[:, None])[:, 0]
            return pa.table({col_col: table.column(col_col).slice(0, 1),
                             out_col: pa.array([coef], pa.list_(pa.float64()))})

        out_type = dataset.schema[col_col].dataType.simpleString()
        return coords.groupBy(col_col).applyInArrow(project, f"{col_col} {out_type}, {out_col} array<double>")

    def _transform_coordinates_by_join(self, dataset, W):
        """Executors placement: each entry meets its row of W by a join (W is never collected), the cross
        products are summed per sample, and the NNLS runs there with WᵀW (k×k, from the executors)."""
        row_col, col_col, value_col = self.getRowCol(), self.getColCol(), self.getValueCol()
        out_col = self.getOutputCol()
        gram = W.normal_gram()
        rows = _frame_rows(W, self.rowIds).selectExpr(f"id as {row_col}", "features as _w")
        coords = dataset.select(row_col, col_col, value_col).join(rows, row_col)

        def project(table):
            vals = pa.compute.cast(table.column(value_col), pa.float64()).to_numpy(zero_copy_only=False)
            W_rows = table.column("_w").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            cross = W_rows.reshape(len(vals), -1).T @ vals
            coef = nnls_bpp(gram, cross[:, None])[:, 0]
            return pa.table({col_col: table.column(col_col).slice(0, 1),
                             out_col: pa.array([coef], pa.list_(pa.float64()))})

        out_type = dataset.schema[col_col].dataType.simpleString()
        return coords.groupBy(col_col).applyInArrow(project, f"{col_col} {out_type}, {out_col} array<double>")

    # ---------------------------------------------------------------- completion
    def complete(self, positions=None, *, limit: int = 10_000_000):
        """The fitted values ``(WH)_ij``: the filled-in matrix for missing entries.

        Parameters
        ----------
        positions : None, (rows, cols) or DataFrame
            * None: the dense n×m matrix ``W H``, only when n·m ≤ ``limit``
              (small data); otherwise ask for positions.
            * ``(rows, cols)``: integer index arrays of equal length; returns
              an ndarray of their values.
            * DataFrame with ``rowCol`` and ``colCol`` (ids as in the fitted
              input): returns it with ``predictionCol`` (double) appended,
              NaN where an id was not in the fit; computed by blocks of rows
              in Arrow functions, never as a dense matrix.  With the factors in
              the executors, by joins with their rows (never collected).
        """
        factors = self._require().factors
        if factors is not None and is_frame(positions):
            return self._complete_by_join(positions, *factors)
        W, Ht = self.W, np.ascontiguousarray(self.H.T)
        n, m = W.shape[0], Ht.shape[0]
        if positions is None:
            if n * m > limit:
                raise ValueError(f"complete(): the dense {n}×{m} matrix has more than limit={limit} entries; "
                                 "pass the positions you need (index arrays or a DataFrame of ids)")
            return W @ Ht.T
        if is_frame(positions):
            return self._complete_frame(positions, W, Ht)
        rows, cols = (np.asarray(a) for a in positions)
        integers = np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)
        if rows.shape != cols.shape or not integers:
            raise ValueError("complete((rows, cols)) needs two integer index arrays of the same length")
        for name, index, size in (("row", rows, n), ("column", cols, m)):
            if index.size and (index.min() < 0 or index.max() >= size):
                raise IndexError(f"complete(): {name} indices must be in [0, {size}), got {index.min()}..{index.max()}")
        return np.einsum("ij,ij->i", W[rows], Ht[cols])

    def _complete_by_join(self, dataset, W, Ht):
        """Executors placement of :meth:`complete` for a DataFrame: each position meets its rows of W and Hᵀ by
        left joins; NaN where an id was not in the fit."""
        from pyspark.sql import functions as F

        row_col, col_col, out_col = self.getRowCol(), self.getColCol(), self.getPredictionCol()
        check_columns(dataset, [row_col, col_col], "NMFModel.complete")
        w = _frame_rows(W, self.rowIds).selectExpr("id as _complete_row", "features as _complete_w")
        h = _frame_rows(Ht, self.colIds).selectExpr("id as _complete_col", "features as _complete_h")
        joined = (dataset.join(w, dataset[row_col] == w["_complete_row"], "left")
                  .join(h, F.col(col_col) == h["_complete_col"], "left"))
        dot = F.aggregate(F.zip_with("_complete_w", "_complete_h", lambda a, b: a * b), F.lit(0.0),
                          lambda total, x: total + x)
        value = F.coalesce(dot, F.lit(float("nan")))
        return joined.select(*[F.col(c) for c in dataset.columns], value.alias(out_col))

    def _complete_frame(self, dataset, W, Ht):
        from pyspark.sql.types import DoubleType, StructField, StructType

        row_col, col_col, out_col = self.getRowCol(), self.getColCol(), self.getPredictionCol()
        check_columns(dataset, [row_col, col_col], "NMFModel.complete")
        row_ids, col_ids = self.rowIds, self.colIds
        positions = dataset.columns.index(row_col), dataset.columns.index(col_col)

        def index(column, ids, size):
            if ids is None:  # positional ids 0..size-1
                values = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False) if len(column) else np.zeros(0)
                found = ~column.is_null().to_numpy(zero_copy_only=False) & (values >= 0) & (values < size)
                return np.where(found, values, 0).astype(np.int64), found
            found = pc.index_in(column, value_set=ids)
            known = ~found.is_null().to_numpy(zero_copy_only=False)
            return pc.fill_null(found, 0).to_numpy(zero_copy_only=False), known

        def run(batches):
            for batch in batches:
                i, row_found = index(batch.column(positions[0]), row_ids, W.shape[0])
                j, col_found = index(batch.column(positions[1]), col_ids, Ht.shape[0])
                values = np.where(row_found & col_found, np.einsum("ij,ij->i", W[i], Ht[j]), np.nan)
                yield batch.append_column(out_col, pa.array(values, pa.float64()))

        schema = StructType([*dataset.schema.fields, StructField(out_col, DoubleType())])
        return dataset.mapInArrow(run, schema)

    # ---------------------------------------------------------------- persistence
    def _extra_metadata(self) -> dict:
        """Subclass hook: more metadata fields to save (see sparknmf.analysis.clustering)."""
        return {}

    def _save_extra(self, spark, path, overwrite):
        """Subclass hook: save more arrays under ``path``."""

    def _load_extra(self, spark, path, metadata):
        """Subclass hook: restore what :meth:`_save_extra` wrote."""

    def _load_arrays(self, path, spark, metadata):
        """Restore W, H, ids and the fit's record after the Params.

        Called by :class:`~sparknmf.engine.persistence.ParamsReader`.
        """
        try:
            (n, m), k = metadata["shape"], int(metadata["k"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}/metadata lacks the model's shape and rank") from None
        record = dict(objective=metadata["objective"], history=metadata["history"], n_iter=metadata["nIter"],
                      converged=metadata["converged"], stop_reason=metadata["stopReason"],
                      elapsed=metadata["elapsed"], algorithm=metadata["algorithm"], seed=metadata["seed"],
                      init=metadata["init"], loss=metadata.get("loss"))
        auto = placement_rule.choose_placement(spark, "auto", n + m, k)
        if metadata.get("placement") == "executors" or auto == "executors":
            self._load_frames(path, spark, metadata, (n, m), k, record)
        else:
            W, row_ids = persistence.read_rows(spark, f"{path}/W", n, k)
            Ht, col_ids = persistence.read_rows(spark, f"{path}/H", m, k)
            self._result = FitResult(W=W, H=np.ascontiguousarray(Ht.T), **record)
            positional = pa.array(np.arange(n), pa.int64()), pa.array(np.arange(m), pa.int64())
            self.rowIds = None if row_ids.equals(positional[0]) else row_ids
            self.colIds = None if col_ids.equals(positional[1]) else col_ids
        self._load_extra(spark, path, metadata)

    def _load_frames(self, path, spark, metadata, shape, k, record):
        """Load W and Hᵀ as row blocks in the executors (executors placement): nothing is collected; ids stay
        in the files' ``(index, id)`` rows (metadata ``ids``; positional ids are checked in the executors)."""
        steps = metadata.get("steps") or [-(-size // parallelism(spark)) for size in shape]
        has_ids = metadata.get("ids")
        factors, ids = [], []
        for name, rows, step, index in (("W", shape[0], steps[0], 0), ("H", shape[1], steps[1], 1)):
            where = persistence.check_path(f"{path}/{name}")
            try:
                frame = spark.read.parquet(where)
            except Exception as err:
                raise ValueError(f"cannot read {where}: {type(err).__name__}") from None
            if set(frame.columns) != {"index", "id", "features"}:
                raise ValueError(f"{where} is malformed: expected rows of (index, id, features)")
            factors.append(factor_from_rows(frame, rows, k, int(step), where))
            if has_ids is None:  # saved by the driver placement: ids are positional unless they differ
                has_ids_here = (frame.schema["id"].dataType.typeName() != "long"
                                or frame.where("id <> index").limit(1).count() > 0)
            else:
                has_ids_here = bool(has_ids[index])
            ids.append(IdIndex(frame.select("index", "id"), rows) if has_ids_here else None)
        self._result = FitResult(W=None, H=None, placement="executors", factors=tuple(factors), **record)
        self.rowIds, self.colIds = ids

    def write(self):
        return _ModelWriter(self)

    @classmethod
    def read(cls):
        return persistence.ParamsReader(cls)


class _ModelWriter(persistence.ParamsWriter):
    """Writes an NMFModel: metadata + W and Hᵀ as Parquet (``W/``, ``H/``)."""

    def saveImpl(self, path):
        model, spark = self.instance, self.sparkSession
        result = model._require()
        extra = {
            "k": model.rank, "shape": list(model.shape), "objective": result.objective,
            "history": result.history, "nIter": result.n_iter, "converged": result.converged,
            "stopReason": result.stop_reason, "elapsed": result.elapsed, "algorithm": result.algorithm,
            "seed": result.seed, "init": result.init, "loss": result.loss, **model._extra_metadata(),
        }
        if result.factors is not None:  # written by the executors from the blocks, never collected
            W, Ht = result.factors
            extra.update(placement="executors", steps=[W.step, Ht.step],
                         ids=[model.rowIds is not None, model.colIds is not None])
            persistence.write_metadata(model, path, spark, extra, overwrite=self.shouldOverwrite)
            mode = "overwrite" if self.shouldOverwrite else "error"
            for name, factor, ids in (("W", W, model.rowIds), ("H", Ht, model.colIds)):
                _frame_rows(factor, ids).write.mode(mode).parquet(persistence.check_path(f"{path}/{name}"))
            model._save_extra(spark, path, self.shouldOverwrite)
            return
        persistence.write_metadata(model, path, spark, extra, overwrite=self.shouldOverwrite)
        persistence.write_rows(spark, f"{path}/W", model.W, model.rowIds, overwrite=self.shouldOverwrite)
        persistence.write_rows(spark, f"{path}/H", model.H.T, model.colIds, overwrite=self.shouldOverwrite)
        model._save_extra(spark, path, self.shouldOverwrite)
