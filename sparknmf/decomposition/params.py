"""The Params of NMF: column Params shared by the Estimator and the Model, and the fit Params with their defaults.

Defaults live only in ``_setDefault``; each class's ``_constraints`` table is
checked by :func:`sparknmf.params.check_params` before any Spark job.  The
defaults of ``algorithm`` and ``init`` (``"auto"``) are
:data:`~sparknmf.kernels.updates.DEFAULT_ALGORITHM` and
:data:`~sparknmf.kernels.seeding.DEFAULT_INIT`, shared with :func:`sparknmf.nmf`'s signature.
"""

from __future__ import annotations

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

from sparknmf.decomposition.factorize import DTYPES
from sparknmf.decomposition.output import OUTPUT_TYPES
from sparknmf.engine.placement import PLACEMENTS
from sparknmf.engine.resident import EXECUTION_MODES
from sparknmf.engine.validation import MISSING_POLICIES
from sparknmf.kernels.seeding import DEFAULT_INIT, INITS
from sparknmf.kernels.updates import DEFAULT_ALGORITHM, UPDATE_RULES
from sparknmf.params import HasExecutionMode, HasVerbose, Interval, OneOf, with_accessors

__all__ = ["_NMFModelParams", "_NMFParams"]


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
    outputType = Param(Params._dummy(), "outputType",
                       f"type of transform's outputCol: one of {list(OUTPUT_TYPES)}; 'array' (array<double>, the "
                       "default) or 'vector' (pyspark.ml.linalg vectors, for pyspark.ml stages such as KMeans)",
                       typeConverter=TypeConverters.toString)

    _constraints = {"outputType": OneOf(OUTPUT_TYPES)}

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(featuresCol="features", outputCol="coefficients", rowCol="row", colCol="col",
                         valueCol="value", idCol="", predictionCol="prediction", outputType="array")


@with_accessors
class _NMFParams(_NMFModelParams, HasMaxIter, HasTol, HasSeed, HasCheckpointInterval, HasExecutionMode, HasVerbose):
    """Fit Params of :class:`NMF`."""

    k = Param(Params._dummy(), "k", "rank of the factorization (1 <= k <= min(n, m))",
              typeConverter=TypeConverters.toInt)
    algorithm = Param(Params._dummy(), "algorithm",
                      f"update rule: one of {['auto'] + sorted(UPDATE_RULES)}; 'auto' (the default) is 'hals' for "
                      "ordinary V and 'bpp' for weighted V (exact weighted ANLS) and multi-start runs",
                      typeConverter=TypeConverters.toString)
    init = Param(Params._dummy(), "init",
                 f"initialization: one of {list(INITS)}; 'auto' (the default) is 'custom' when W0 and H0 are "
                 "given, 'nndsvda' for one fit of ordinary V (either factorPlacement), and 'random' for weighted V "
                 "and multi-start runs", typeConverter=TypeConverters.toString)
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
    factorPlacement = Param(Params._dummy(), "factorPlacement",
                            "where W and H live during the fit: 'auto', 'driver' or 'executors' (docs/execution.md)",
                            typeConverter=TypeConverters.toString)

    _constraints = {
        **_NMFModelParams._constraints,
        "k": Interval(1, integer=True),
        "algorithm": OneOf(["auto"] + sorted(UPDATE_RULES)),
        "init": OneOf(INITS),
        "maxIter": Interval(0, integer=True),
        "tol": Interval(0),
        "eta": Interval(),
        "beta": Interval(0),
        "numRowBlocks": Interval(0, integer=True),
        "numColBlocks": Interval(0, integer=True),
        "timeLimit": Interval(0),
        "dtype": OneOf(DTYPES),
        "duplicates": OneOf(("error", "sum")),
        "backend": OneOf(("auto", "local", "spark")),
        "checkpointInterval": Interval(1, integer=True),
        "seed": Interval(0, integer=True),
        "missing": OneOf(MISSING_POLICIES),
        "regParam": Interval(0),
        "executionMode": OneOf(EXECUTION_MODES),
        "factorPlacement": OneOf(PLACEMENTS),
        "verbose": Interval(0, integer=True),
    }

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(k=2, algorithm=DEFAULT_ALGORITHM, init=DEFAULT_INIT, maxIter=200, tol=1e-4, seed=0, eta=-1.0,
                         beta=0.01, numRowBlocks=0, numColBlocks=0, timeLimit=0.0, dtype="float64", duplicates="error",
                         backend="auto", checkpointInterval=10, checkpointDir="", weightCol="", uncertaintyCol="",
                         missing="zero", regParam=0.0)
        self._setDefault(factorPlacement="auto")
