"""The ``NMF`` Estimator: V (n×m) ≈ W (n×k) · H (k×m) with W, H ≥ 0, fitted by the one loop.

**Samples are the columns of V**, as in R's NMF: W is the basis
(n features × k), H the coefficients (k × m samples).  Input may be

* a DataFrame of coordinates ``(rowCol, colCol, valueCol)``: V[row id, col id];
* a DataFrame with a vector column ``featuresCol``: one sample per DataFrame
  row, i.e. one column of V (sample ids from ``idCol``);
* a numpy array or scipy sparse matrix (n×m), for small problems.

Objectives per ``algorithm`` are listed in :mod:`sparknmf.kernels.updates`;
fitting returns an :class:`~sparknmf.decomposition.model.NMFModel`.
"""

from __future__ import annotations

import functools

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import MLReadable, MLWritable

from sparknmf.decomposition.factorize import DTYPES, check_placement_options, check_weighted_options, factorize
from sparknmf.decomposition.model import NMFModel
from sparknmf.decomposition.params import _NMFParams
from sparknmf.decomposition.sklearn_api import SklearnEstimatorMixin
from sparknmf.engine import persistence
from sparknmf.engine.ingest import check_columns, from_coordinates, from_vectors, is_frame
from sparknmf.engine.local import LocalMatrix
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.placement import choose_placement, warn_resident_runs_jobs
from sparknmf.engine.session import get_session
from sparknmf.engine.validation import as_matrix, as_weighted, check_rank
from sparknmf.errors import InvalidInputError
from sparknmf.kernels.seeding import DEFAULT_INIT
from sparknmf.kernels.updates import DEFAULT_ALGORITHM
from sparknmf.params import check_params
from sparknmf.progress import progress

__all__ = ["NMF"]



class NMF(Estimator, _NMFParams, SklearnEstimatorMixin, MLWritable, MLReadable):
    """Non-negative matrix factorization V (n×m) ≈ W (n×k) · H (k×m), W, H ≥ 0, on Spark.

    Minimises, per ``algorithm``: ``bpp`` (ANLS with block principal
    pivoting), ``hals`` and ``lee``: ½‖V − WH‖²_F; ``brunet``: the
    generalised KL divergence D(V‖WH); ``snmf/r`` / ``snmf/l``: ½(‖V − WH‖² +
    η²‖W‖² + β Σ_j ‖H_·j‖₁²) (sparse H) or its transpose (sparse W).
    Samples are the columns of V (see the module docstring for inputs);
    scikit-learn's habits -- ``fit_transform(X)`` returning W, ``components_``,
    ``reconstruction_err_``, samples as rows -- are mapped in docs/sklearn.md.
    ``verbose=1`` prints each iteration (:mod:`sparknmf.progress`).

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
    def __init__(self, *, k=2, algorithm=DEFAULT_ALGORITHM, init=DEFAULT_INIT, maxIter=200, tol=1e-4, seed=0,
                 eta=-1.0, beta=0.01, numRowBlocks=0, numColBlocks=0, timeLimit=0.0, dtype="float64",
                 duplicates="error", backend="auto", checkpointInterval=10, checkpointDir="",
                 featuresCol="features", outputCol="coefficients", rowCol="row", colCol="col", valueCol="value",
                 idCol="", weightCol="", uncertaintyCol="", missing="zero", regParam=0.0, outputType="array",
                 predictionCol="prediction", executionMode="auto", factorPlacement="auto", verbose=0):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, k=2, algorithm=DEFAULT_ALGORITHM, init=DEFAULT_INIT, maxIter=200, tol=1e-4, seed=0,
                  eta=-1.0, beta=0.01, numRowBlocks=0, numColBlocks=0, timeLimit=0.0, dtype="float64",
                  duplicates="error", backend="auto", checkpointInterval=10, checkpointDir="",
                  featuresCol="features", outputCol="coefficients", rowCol="row", colCol="col", valueCol="value",
                  idCol="", weightCol="", uncertaintyCol="", missing="zero", regParam=0.0, outputType="array",
                  predictionCol="prediction", executionMode="auto", factorPlacement="auto", verbose=0):
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
        k, dtype, missing = self.getK(), DTYPES[self.getDtype()], self.getMissing()
        column, kind = self._weight_column()
        if is_frame(dataset):
            weighted = column is not None or missing == "missing"
            check_weighted_options(self.getAlgorithm(), weighted, self.getRegParam(), dtype)
            if weights is not None or uncertainty is not None:
                raise ValueError("NMF: with DataFrame input give weights as a column (weightCol or uncertaintyCol)")
            if self.getBackend() == "local":
                raise ValueError("NMF: backend='local' needs numpy or scipy input, got a DataFrame")
            check_shape = functools.partial(check_rank, k)
            where = functools.partial(self._where, dataset.sparkSession)  # asked with V's shape, before the ids
            if self.getFeaturesCol() in dataset.columns:
                if weighted:
                    raise InvalidInputError("NMF: weights and missing='missing' need coordinate input "
                                            "(rowCol, colCol, valueCol), not the vector column "
                                            f"{self.getFeaturesCol()!r}")
                return from_vectors(dataset, self.getFeaturesCol(), self.getIdCol() or None, grid=self._grid(),
                                    check_shape=check_shape, dtype=dtype, placement=where)
            check_columns(dataset,
                          [self.getRowCol(), self.getColCol(), self.getValueCol()] + ([column] if column else []),
                          f"NMF (no vector column {self.getFeaturesCol()!r}; coordinates)")
            return from_coordinates(dataset, self.getRowCol(), self.getColCol(), self.getValueCol(),
                                    grid=self._grid(), duplicates=self.getDuplicates(), check_shape=check_shape,
                                    dtype=dtype, weight_col=column, weight_kind=kind, missing=missing,
                                    placement=where)
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

    def _where(self, spark, shape):
        """``factorPlacement`` resolved for V of ``shape`` on Spark
        (:func:`~sparknmf.engine.placement.choose_placement`: W and H are (n + m)·k values); a forced
        ``driver`` beyond the driver's budget is a ValueError."""
        itemsize = DTYPES[self.getDtype()]().itemsize
        return choose_placement(spark, self.getFactorPlacement(), sum(shape), self.getK(), itemsize=itemsize)

    def _placement(self, backend):
        """Where the factors live for this fit: ``factorPlacement`` resolved for the backend's V.

        Numpy input on the local backend keeps them on the driver; on Spark,
        :func:`~sparknmf.engine.placement.choose_placement` decides (W and H: (n + m)·k values).
        In the executors the fit runs Spark jobs, with a warning under ``executionMode='resident'``.
        """
        requested = self.getFactorPlacement()
        if isinstance(backend, BlockMatrix):
            placement = self._where(backend.spark, backend.shape)
        else:
            placement = "driver" if requested == "auto" else requested
        check_placement_options(placement, backend, checkpoint_dir=self.getCheckpointDir())
        if placement == "executors":
            warn_resident_runs_jobs(self.getExecutionMode(), requested, stacklevel=5)
        return placement

    def _fit(self, dataset, W0=None, H0=None, callback=None, resume=False, weights=None, uncertainty=None):
        check_params(self)
        if self.getFactorPlacement() == "executors":  # what needs no data is refused before any work
            check_placement_options("executors", None, checkpoint_dir=self.getCheckpointDir())
        backend = self._backend(dataset, weights, uncertainty)
        try:
            placement = self._placement(backend)
            with progress(self.getVerbose(), "NMF"):
                result = factorize(
                    backend, self.getK(), algorithm=self.getAlgorithm(), init=self.getInit(), seed=self.getSeed(),
                    max_iter=self.getMaxIter(), tol=self.getTol(), time_limit=self.getTimeLimit() or None,
                    eta=self.getEta(), beta=self.getBeta(), reg=self.getRegParam(), W0=W0, H0=H0,
                    dtype=DTYPES[self.getDtype()], callback=callback, checkpoint_dir=self.getCheckpointDir() or None,
                    checkpoint_interval=self.getCheckpointInterval(), resume=resume, placement=placement,
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
        return persistence.ParamsWriter(self)

    @classmethod
    def read(cls):
        return persistence.ParamsReader(cls)
