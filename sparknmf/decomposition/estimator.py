"""The ``NMF`` Estimator, its ``NMFModel`` and the function form :func:`nmf`.

V (n×m) ≈ W (n×k) · H (k×m) with W, H ≥ 0.  **Samples are the columns of
V**, as in R's NMF: W is the basis (n features × k), H the coefficients
(k × m samples).  Input may be

* a DataFrame of coordinates ``(rowCol, colCol, valueCol)``: V[row id, col id];
* a DataFrame with a vector column ``featuresCol``: one sample per DataFrame
  row, i.e. one column of V (sample ids from ``idCol``);
* a numpy array or scipy sparse matrix (n×m), for small problems.

Objectives per ``algorithm`` are listed in :mod:`sparknmf.kernels.updates`.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasCheckpointInterval,
    HasFeaturesCol,
    HasMaxIter,
    HasOutputCol,
    HasPredictionCol,
    HasSeed,
    HasTol,
)
from pyspark.ml.util import MLReadable, MLReader, MLWritable

from sparknmf.decomposition.factorize import FitResult, check_weighted_options, factorize
from sparknmf.engine import persistence
from sparknmf.engine.ingest import _vectors_to_csr, check_columns, from_coordinates, from_vectors
from sparknmf.engine.local import LocalMatrix
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.resident import EXECUTION_MODES
from sparknmf.engine.session import get_session
from sparknmf.engine.validation import MISSING_POLICIES, as_matrix, as_weighted, check_rank
from sparknmf.errors import InvalidInputError
from sparknmf.kernels.nnls import nnls_bpp
from sparknmf.kernels.seeding import INITS
from sparknmf.kernels.updates import UPDATE_RULES
from sparknmf.params import HasExecutionMode, Interval, OneOf, check_params, with_accessors

__all__ = ["NMF", "NMFModel", "nmf"]

_DTYPES = {"float64": np.float64, "float32": np.float32}


@with_accessors
class _NMFModelParams(HasFeaturesCol, HasOutputCol, HasPredictionCol):
    """Column Params shared by :class:`NMF` and :class:`NMFModel`."""

    rowCol = Param(Params._dummy(), "rowCol", "coordinate input: column of row (feature) ids",
                   typeConverter=TypeConverters.toString)
    colCol = Param(Params._dummy(), "colCol", "coordinate input: column of column (sample) ids",
                   typeConverter=TypeConverters.toString)
    valueCol = Param(Params._dummy(), "valueCol", "coordinate input: column of values",
                     typeConverter=TypeConverters.toString)
    idCol = Param(Params._dummy(), "idCol", "vector input: column of sample ids ('' = generated)",
                  typeConverter=TypeConverters.toString)

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(featuresCol="features", outputCol="coefficients", rowCol="row", colCol="col",
                         valueCol="value", idCol="", predictionCol="prediction")


@with_accessors
class _NMFParams(_NMFModelParams, HasMaxIter, HasTol, HasSeed, HasCheckpointInterval, HasExecutionMode):
    """Fit Params of :class:`NMF`."""

    k = Param(Params._dummy(), "k", "rank of the factorization (1 <= k <= min(n, m))",
              typeConverter=TypeConverters.toInt)
    algorithm = Param(Params._dummy(), "algorithm", f"update rule: one of {sorted(UPDATE_RULES)}",
                      typeConverter=TypeConverters.toString)
    init = Param(Params._dummy(), "init", f"initialization: one of {list(INITS)}",
                 typeConverter=TypeConverters.toString)
    eta = Param(Params._dummy(), "eta", "snmf: L2 weight of the dense factor (< 0: max(V))",
                typeConverter=TypeConverters.toFloat)
    beta = Param(Params._dummy(), "beta", "snmf: weight of the sparse factor's squared L1 norms",
                 typeConverter=TypeConverters.toFloat)
    numRowBlocks = Param(Params._dummy(), "numRowBlocks", "row blocks p of the grid (0 = automatic)",
                         typeConverter=TypeConverters.toInt)
    numColBlocks = Param(Params._dummy(), "numColBlocks", "column blocks q of the grid (0 = automatic)",
                         typeConverter=TypeConverters.toInt)
    timeLimit = Param(Params._dummy(), "timeLimit", "stop after this many seconds (0 = no limit)",
                      typeConverter=TypeConverters.toFloat)
    dtype = Param(Params._dummy(), "dtype", "precision of blocks and factors: float64 or float32",
                  typeConverter=TypeConverters.toString)
    duplicates = Param(Params._dummy(), "duplicates", "repeated coordinates: 'error' or 'sum'",
                       typeConverter=TypeConverters.toString)
    backend = Param(Params._dummy(), "backend", "'auto' (numpy -> local, DataFrame -> spark), 'local' or 'spark'",
                    typeConverter=TypeConverters.toString)
    checkpointDir = Param(Params._dummy(), "checkpointDir",
                          "driver-local directory for loop checkpoints every checkpointInterval iterations ('' = none)",
                          typeConverter=TypeConverters.toString)
    weightCol = Param(Params._dummy(), "weightCol",
                      "coordinate input: column of per-entry weights w >= 0 (weighted NMF; '' = none)",
                      typeConverter=TypeConverters.toString)
    uncertaintyCol = Param(Params._dummy(), "uncertaintyCol",
                           "coordinate input: column of per-entry uncertainties s > 0, w = 1/s^2 ('' = none)",
                           typeConverter=TypeConverters.toString)
    missing = Param(Params._dummy(), "missing",
                    "entries absent from sparse input (NaN in numpy input): 'zero' (observed zeros) or 'missing' "
                    "(weight 0, weighted NMF)", typeConverter=TypeConverters.toString)
    regParam = Param(Params._dummy(), "regParam", "weighted NMF: L2 weight lambda on W and H",
                     typeConverter=TypeConverters.toFloat)

    _constraints = {
        "k": Interval(1, integer=True),
        "algorithm": OneOf(sorted(UPDATE_RULES)),
        "init": OneOf(INITS),
        "maxIter": Interval(0, integer=True),
        "tol": Interval(0),
        "eta": Interval(),
        "beta": Interval(0),
        "numRowBlocks": Interval(0, integer=True),
        "numColBlocks": Interval(0, integer=True),
        "timeLimit": Interval(0),
        "dtype": OneOf(_DTYPES),
        "duplicates": OneOf(("error", "sum")),
        "backend": OneOf(("auto", "local", "spark")),
        "checkpointInterval": Interval(1, integer=True),
        "seed": Interval(0, integer=True),
        "missing": OneOf(MISSING_POLICIES),
        "regParam": Interval(0),
        "executionMode": OneOf(EXECUTION_MODES),
    }

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(k=2, algorithm="bpp", init="random", maxIter=200, tol=1e-4, seed=0, eta=-1.0, beta=0.01,
                         numRowBlocks=0, numColBlocks=0, timeLimit=0.0, dtype="float64", duplicates="error",
                         backend="auto", checkpointInterval=10, checkpointDir="", weightCol="", uncertaintyCol="",
                         missing="zero", regParam=0.0)


class NMF(Estimator, _NMFParams, MLWritable, MLReadable):
    """Non-negative matrix factorization V (n×m) ≈ W (n×k) · H (k×m), W, H ≥ 0, on Spark.

    Minimises, per ``algorithm``: ``bpp`` (ANLS with block principal
    pivoting), ``hals`` and ``lee``: ½‖V − WH‖²_F; ``brunet``: the
    generalised KL divergence D(V‖WH); ``snmf/r`` / ``snmf/l``: ½(‖V − WH‖² +
    η²‖W‖² + β Σ_j ‖H_·j‖₁²) (sparse H) or its transpose (sparse W).
    Samples are the columns of V (see the module docstring for inputs).

    Every Param is checked before any Spark job; bad data raises
    :class:`~sparknmf.errors.InvalidInputError` naming the problem.

    References
    ----------
    J. Kim and H. Park (2011), SIAM J. Sci. Comput. 33(6), 3261-3281. https://doi.org/10.1137/110821172
    D. D. Lee and H. S. Seung (1999), Nature 401, 788-791. https://doi.org/10.1038/44565

    Examples
    --------
    >>> import numpy as np
    >>> from sparknmf import NMF
    >>> V = np.abs(np.random.default_rng(0).random((20, 4)) @ np.random.default_rng(1).random((4, 30)))
    >>> model = NMF(k=4, algorithm="bpp", maxIter=300, tol=1e-8).fit(V)
    >>> bool(np.linalg.norm(V - model.W @ model.H) / np.linalg.norm(V) < 1e-3)
    True
    """

    @keyword_only
    def __init__(self, *, k=2, algorithm="bpp", init="random", maxIter=200, tol=1e-4, seed=0, eta=-1.0, beta=0.01,
                 numRowBlocks=0, numColBlocks=0, timeLimit=0.0, dtype="float64", duplicates="error", backend="auto",
                 checkpointInterval=10, checkpointDir="", featuresCol="features", outputCol="coefficients",
                 rowCol="row", colCol="col", valueCol="value", idCol="", weightCol="", uncertaintyCol="",
                 missing="zero", regParam=0.0, predictionCol="prediction", executionMode="auto"):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, k=2, algorithm="bpp", init="random", maxIter=200, tol=1e-4, seed=0, eta=-1.0, beta=0.01,
                  numRowBlocks=0, numColBlocks=0, timeLimit=0.0, dtype="float64", duplicates="error", backend="auto",
                  checkpointInterval=10, checkpointDir="", featuresCol="features", outputCol="coefficients",
                  rowCol="row", colCol="col", valueCol="value", idCol="", weightCol="", uncertaintyCol="",
                  missing="zero", regParam=0.0, predictionCol="prediction", executionMode="auto"):
        """Set Params by keyword."""
        return self._set(**self._input_kwargs)

    # ---------------------------------------------------------------- fitting
    def _grid(self):
        p, q = self.getNumRowBlocks(), self.getNumColBlocks()
        return (p or 1, q or 1) if (p or q) else None

    def _weight_column(self):
        """``(column, "weight" | "uncertainty")`` of coordinate input, or ``(None, None)``."""
        weight, uncertainty = self.getWeightCol(), self.getUncertaintyCol()
        if weight and uncertainty:
            raise ValueError(f"NMF: set weightCol ({weight!r}) or uncertaintyCol ({uncertainty!r}), not both")
        return (weight, "weight") if weight else (uncertainty, "uncertainty") if uncertainty else (None, None)

    def _backend(self, dataset, weights=None, uncertainty=None):
        """V as a LocalMatrix or BlockMatrix (running fits as ``executionMode`` says), validated, with k and the
        weighted options checked."""
        backend = self._build_backend(dataset, weights, uncertainty)
        if isinstance(backend, BlockMatrix):
            backend.execution = self.getExecutionMode()
        return backend

    def _build_backend(self, dataset, weights, uncertainty):
        k, dtype, missing = self.getK(), _DTYPES[self.getDtype()], self.getMissing()
        column, kind = self._weight_column()
        if _is_frame(dataset):
            weighted = column is not None or missing == "missing"
            check_weighted_options(self.getAlgorithm(), weighted, self.getRegParam(), dtype)
            if weights is not None or uncertainty is not None:
                raise ValueError("NMF: with DataFrame input give weights as a column (weightCol or uncertaintyCol)")
            if self.getBackend() == "local":
                raise ValueError("NMF: backend='local' needs numpy or scipy input, got a DataFrame")
            check_shape = functools.partial(check_rank, k)
            if self.getFeaturesCol() in dataset.columns:
                if weighted:
                    raise InvalidInputError("NMF: weights and missing='missing' need coordinate input "
                                            f"(rowCol, colCol, valueCol), not the vector column {self.getFeaturesCol()!r}")
                return from_vectors(dataset, self.getFeaturesCol(), self.getIdCol() or None, grid=self._grid(),
                                    check_shape=check_shape, dtype=dtype)
            check_columns(dataset, [self.getRowCol(), self.getColCol(), self.getValueCol()] + ([column] if column else []),
                          f"NMF (no vector column {self.getFeaturesCol()!r}; coordinates)")
            return from_coordinates(dataset, self.getRowCol(), self.getColCol(), self.getValueCol(),
                                    grid=self._grid(), duplicates=self.getDuplicates(), check_shape=check_shape,
                                    dtype=dtype, weight_col=column, weight_kind=kind, missing=missing)
        if column is not None:
            raise ValueError(f"NMF: {kind}Col names a DataFrame column; with numpy input use "
                             f"fitWith(V, {kind}={kind}s_array)")
        weighted = weights is not None or uncertainty is not None or missing == "missing"
        check_weighted_options(self.getAlgorithm(), weighted, self.getRegParam(), dtype)
        V = as_weighted(dataset, weights, uncertainty, missing=missing)
        if V is None:
            V = as_matrix(dataset, dtype=dtype, duplicates=self.getDuplicates())
        check_rank(k, V.shape)
        if self.getBackend() == "spark":
            return BlockMatrix.from_array(get_session(), V, self._grid())
        return LocalMatrix(V)

    def _fit(self, dataset, W0=None, H0=None, callback=None, resume=False, weights=None, uncertainty=None):
        check_params(self)
        backend = self._backend(dataset, weights, uncertainty)
        try:
            result = factorize(
                backend, self.getK(), algorithm=self.getAlgorithm(), init=self.getInit(), seed=self.getSeed(),
                max_iter=self.getMaxIter(), tol=self.getTol(), time_limit=self.getTimeLimit() or None,
                eta=self.getEta(), beta=self.getBeta(), reg=self.getRegParam(), W0=W0, H0=H0,
                dtype=_DTYPES[self.getDtype()], callback=callback, checkpoint_dir=self.getCheckpointDir() or None,
                checkpoint_interval=self.getCheckpointInterval(), resume=resume,
            )
        finally:
            if isinstance(backend, BlockMatrix):
                backend.unpersist()
        model = NMFModel(result, getattr(backend, "row_ids", None), getattr(backend, "col_ids", None))
        self._copyValues(model)
        return model

    def fitWith(self, dataset, *, W0=None, H0=None, callback=None, resume=False, weights=None, uncertainty=None):
        """Fit with options that are not Params.

        Parameters
        ----------
        weights, uncertainty : ndarray or sparse matrix of V's shape
            numpy / scipy input only: per-entry weights ``w ≥ 0`` or
            uncertainties ``s > 0`` (``w = 1/s²``) for weighted NMF, see
            :func:`sparknmf.engine.validation.as_weighted` and the ``missing`` Param.
        W0 : ndarray of shape (n, k), H0 : ndarray of shape (k, m)
            Starting factors for ``init='custom'``.
        callback : callable
            ``callback(iteration, elapsed, objective)`` after each iteration.
        resume : bool
            Continue from the checkpoint in ``checkpointDir`` (if there is
            one); the result equals the uninterrupted fit.
        """
        if resume and not self.getCheckpointDir():
            raise ValueError("NMF.fitWith(resume=True) needs checkpointDir")
        return self._fit(dataset, W0=W0, H0=H0, callback=callback, resume=resume, weights=weights,
                         uncertainty=uncertainty)

    # ---------------------------------------------------------------- persistence
    def write(self):
        return _ParamsWriter(self)

    @classmethod
    def read(cls):
        return _Reader(cls)


def _is_frame(obj) -> bool:
    return hasattr(obj, "sparkSession") and hasattr(obj, "columns")


class NMFModel(Model, _NMFModelParams, MLWritable, MLReadable):
    """A fitted factorization V (n×m) ≈ W (n×k) · H (k×m); samples are columns of V.

    Attributes
    ----------
    W : ndarray of shape (n, k)
        Basis (one row per feature / row id of V).
    H : ndarray of shape (k, m)
        Coefficients (one column per sample / column id of V).
    rowIds, colIds : pyarrow Array or None
        User ids of V's rows and columns (None: positions 0..n-1, 0..m-1).
    objective : float
    history : list of float
        Objective of the initial factors, then after each iteration.
    nIter : int
    converged : bool

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
    def W(self) -> np.ndarray:
        return self._require().W

    @property
    def H(self) -> np.ndarray:
        return self._require().H

    @property
    def rank(self) -> int:
        return self.W.shape[1]

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
        table = pa.table({
            "id": ids if ids is not None else pa.array(np.arange(matrix.shape[0]), pa.int64()),
            "features": pa.array(list(np.asarray(matrix, dtype=np.float64)), pa.list_(pa.float64())),
        })
        return get_session().createDataFrame(table)

    @property
    def rowFactors(self):
        """DataFrame ``(id, features array<double>)``: the rows of W (n of them, k values each)."""
        return self._rows_frame(self.W, self.rowIds)

    @property
    def colFactors(self):
        """DataFrame ``(id, features array<double>)``: the columns of H (m of them, k values each)."""
        return self._rows_frame(self.H.T, self.colIds)

    # ---------------------------------------------------------------- projection
    def project(self, V_new) -> np.ndarray:
        """Coefficients of new samples: ``argmin_{H ≥ 0} ‖V_new − W H‖`` by exact NNLS.

        Parameters
        ----------
        V_new : ndarray or sparse matrix of shape (n, m_new)
            New samples as columns, on the same n features as W.

        Returns
        -------
        H_new : ndarray of shape (k, m_new)
        """
        V_new = as_matrix(V_new, "NMFModel.project (input V)")
        if V_new.shape[0] != self.W.shape[0]:
            raise ValueError(f"V_new must have {self.W.shape[0]} rows (features), got {V_new.shape[0]}")
        W = self.W
        cross = np.asarray((V_new.T @ W) if sp.issparse(V_new) else V_new.T @ W).T
        return nnls_bpp(W.T @ W, cross)

    def transform(self, dataset, params=None):
        """Project samples onto the basis W by NNLS.

        * numpy / scipy (n×m_new): returns H_new (k×m_new), see :meth:`project`.
        * DataFrame with ``featuresCol`` (vectors of size n, one sample per
          row): returns the DataFrame with ``outputCol`` (array<double> of k
          coefficients) appended.
        * DataFrame of coordinates ``(rowCol, colCol, valueCol)`` with row ids
          among the model's: returns ``(colCol, outputCol)``, one row per
          sample; entries with unknown row ids are ignored.
        """
        if not _is_frame(dataset):
            return self.project(dataset)
        return super().transform(dataset, params)

    def _transform(self, dataset):
        self._require()
        if self.getFeaturesCol() in dataset.columns:
            return self._transform_vectors(dataset)
        check_columns(dataset, [self.getRowCol(), self.getColCol(), self.getValueCol()],
                      f"NMFModel.transform (no vector column {self.getFeaturesCol()!r}; coordinates)")
        return self._transform_coordinates(dataset)

    def _transform_vectors(self, dataset):
        W, features, out_col = self.W, self.getFeaturesCol(), self.getOutputCol()
        n = W.shape[0]
        gram = W.T @ W
        position = dataset.columns.index(features)

        def run(batches):
            for batch in batches:
                csr, sizes, nulls = _vectors_to_csr(batch.column(position), n)
                if csr is None or nulls.any():
                    raise ValueError(f"NMFModel.transform: every {features!r} vector must have size {n}")
                coef = nnls_bpp(gram, np.asarray(csr @ W).T).T
                yield batch.append_column(out_col, pa.array(list(coef), pa.list_(pa.float64())))

        from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

        schema = StructType([*dataset.schema.fields, StructField(out_col, ArrayType(DoubleType()))])
        return dataset.mapInArrow(run, schema)

    def _transform_coordinates(self, dataset):
        from pyspark.sql import functions as F

        W = self.W
        spark = dataset.sparkSession
        row_col, col_col, value_col, out_col = self.getRowCol(), self.getColCol(), self.getValueCol(), self.getOutputCol()
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
              in Arrow functions, never as a dense matrix.
        """
        W, Ht = self.W, np.ascontiguousarray(self.H.T)
        n, m = W.shape[0], Ht.shape[0]
        if positions is None:
            if n * m > limit:
                raise ValueError(f"complete(): the dense {n}×{m} matrix has more than limit={limit} entries; "
                                 "pass the positions you need (index arrays or a DataFrame of ids)")
            return W @ Ht.T
        if _is_frame(positions):
            return self._complete_frame(positions, W, Ht)
        rows, cols = (np.asarray(a) for a in positions)
        if rows.shape != cols.shape or not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
            raise ValueError("complete((rows, cols)) needs two integer index arrays of the same length")
        for name, index, size in (("row", rows, n), ("column", cols, m)):
            if index.size and (index.min() < 0 or index.max() >= size):
                raise IndexError(f"complete(): {name} indices must be in [0, {size}), got {index.min()}..{index.max()}")
        return np.einsum("ij,ij->i", W[rows], Ht[cols])

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
            return pc.fill_null(found, 0).to_numpy(zero_copy_only=False), ~found.is_null().to_numpy(zero_copy_only=False)

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
        """Subclass hook: more metadata fields to save (see sparknmf.analysis.multistart)."""
        return {}

    def _save_extra(self, spark, path, overwrite):
        """Subclass hook: save more arrays under ``path``."""

    def _load_extra(self, spark, path, metadata):
        """Subclass hook: restore what :meth:`_save_extra` wrote."""

    def write(self):
        return _ModelWriter(self)

    @classmethod
    def read(cls):
        return _Reader(cls)


_ParamsWriter = persistence.ParamsWriter


class _ModelWriter(_ParamsWriter):
    """Writes an NMFModel: metadata + W and Hᵀ as Parquet (``W/``, ``H/``)."""

    def saveImpl(self, path):
        model, spark = self.instance, self.sparkSession
        result = model._require()
        extra = {
            "k": model.rank, "shape": [model.W.shape[0], model.H.shape[1]], "objective": result.objective,
            "history": result.history, "nIter": result.n_iter, "converged": result.converged,
            "stopReason": result.stop_reason, "elapsed": result.elapsed, "algorithm": result.algorithm,
            "seed": result.seed, "init": result.init, **model._extra_metadata(),
        }
        persistence.write_metadata(model, path, spark, extra, overwrite=self.shouldOverwrite)
        persistence.write_rows(spark, f"{path}/W", model.W, model.rowIds, overwrite=self.shouldOverwrite)
        persistence.write_rows(spark, f"{path}/H", model.H.T, model.colIds, overwrite=self.shouldOverwrite)
        model._save_extra(spark, path, self.shouldOverwrite)


class _Reader(MLReader):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def load(self, path):
        spark = self.sparkSession
        metadata = persistence.read_metadata(path, spark, self.cls)
        instance = self.cls()
        persistence.set_params(instance, metadata)
        if issubclass(self.cls, NMFModel):
            try:
                (n, m), k = metadata["shape"], int(metadata["k"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}/metadata lacks the model's shape and rank") from None
            W, row_ids = persistence.read_rows(spark, f"{path}/W", n, k)
            Ht, col_ids = persistence.read_rows(spark, f"{path}/H", m, k)
            instance._result = FitResult(
                W=W, H=np.ascontiguousarray(Ht.T), objective=metadata["objective"], history=metadata["history"],
                n_iter=metadata["nIter"], converged=metadata["converged"], stop_reason=metadata["stopReason"],
                elapsed=metadata["elapsed"], algorithm=metadata["algorithm"], seed=metadata["seed"],
                init=metadata["init"],
            )
            positional = pa.array(np.arange(n), pa.int64()), pa.array(np.arange(m), pa.int64())
            instance.rowIds = None if row_ids.equals(positional[0]) else row_ids
            instance.colIds = None if col_ids.equals(positional[1]) else col_ids
            instance._load_extra(spark, path, metadata)
        return instance


def nmf(V, k, *, algorithm="bpp", init="random", seed=0, max_iter=200, tol=1e-4, time_limit=None, eta=-1.0,
        beta=0.01, W0=None, H0=None, dtype="float64", duplicates="error", callback=None, checkpoint_dir=None,
        checkpoint_interval=10, resume=False, nrun=None, weights=None, uncertainty=None, missing="zero", reg=0.0):
    """Factorise a numpy array or scipy sparse matrix V (n×m) ≈ W (n×k) · H (k×m) locally.

    The same kernels and loop as :class:`NMF`, on one block, without Spark.
    With ``nrun`` (R's ``nmf(V, k, nrun=30)``): ``nrun`` runs from seeds
    derived from ``seed`` by :func:`sparknmf.analysis.multistart.multistart` (as Spark
    tasks when a session is active), returning a
    :class:`~sparknmf.analysis.multistart.MultiFit` (best fit, assignments, consensus,
    ``summary(labels)``).

    Weighted NMF (Paatero's PMF): ``weights`` (w ≥ 0) or ``uncertainty``
    (s > 0, w = 1/s²) of V's shape, and/or ``missing="missing"`` (entries
    absent from sparse V, or NaN in dense V, are unknown), minimise
    ½ Σ w_ij (v_ij − (WH)_ij)² + ½ reg (‖W‖² + ‖H‖²) with ``algorithm``
    ``"bpp"`` (exact weighted ANLS) or ``"lee"`` (weighted multiplicative);
    see :func:`sparknmf.engine.validation.as_weighted`.

    Returns
    -------
    FitResult
        ``W`` (n×k), ``H`` (k×m), ``objective``, ``history``, ``n_iter``, ...
        (a ``MultiFit`` when ``nrun`` is given).

    Examples
    --------
    >>> import numpy as np, sparknmf
    >>> V = np.random.default_rng(0).random((30, 3)) @ np.random.default_rng(1).random((3, 40))
    >>> fit = sparknmf.nmf(V, 3, init="nndsvda", tol=1e-10, max_iter=500)
    >>> fit.W.shape, fit.H.shape, bool(fit.objective < 1e-6 * 0.5 * (V ** 2).sum())
    ((30, 3), (3, 40), True)
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    weighted = weights is not None or uncertainty is not None or missing == "missing"
    check_weighted_options(algorithm, weighted, reg, _DTYPES[dtype])
    if nrun is not None:
        if weighted:
            raise ValueError("nmf(..., nrun=...) does not take weights or missing='missing'")
        if W0 is not None or H0 is not None or callback is not None or checkpoint_dir is not None or resume:
            raise ValueError("nmf(..., nrun=...) runs from random starts: W0, H0, callback, checkpoint_dir and "
                             "resume are not supported")
        from sparknmf.analysis.multistart import multistart

        return multistart(as_matrix(V, duplicates=duplicates), k, nrun, algorithm=algorithm, init=init, seed=seed,
                          max_iter=max_iter, tol=tol, time_limit=time_limit, eta=eta, beta=beta, dtype=dtype)
    data = as_weighted(V, weights, uncertainty, missing=missing)
    V = data if data is not None else as_matrix(V, dtype=_DTYPES[dtype], duplicates=duplicates)
    k = check_rank(k, V.shape)
    return factorize(LocalMatrix(V), k, algorithm=algorithm, init=init, seed=seed, max_iter=max_iter, tol=tol,
                     time_limit=time_limit, eta=eta, beta=beta, reg=reg, W0=W0, H0=H0, dtype=_DTYPES[dtype],
                     callback=callback, checkpoint_dir=checkpoint_dir, checkpoint_interval=checkpoint_interval,
                     resume=resume)
