"""sparknmf: non-negative matrix factorization and masked ALS on Apache Spark.

V (n×m) ≈ W (n×k) · H (k×m), W, H ≥ 0.  Samples are the columns of V.

* :class:`NMF` / :class:`NMFModel` -- pyspark.ml Estimator and Model.
* :func:`nmf` -- the same loop on numpy / scipy input, without Spark.
"""

from .errors import ConvergenceWarning, InvalidInputError, ModelFitError
from .factorize import FitResult
from .kernels.updates import UPDATE_RULES
from .nmf import NMF, NMFModel, nmf

__version__ = "0.1.0"

ALGORITHMS = tuple(sorted(UPDATE_RULES))

__all__ = [
    "ALGORITHMS", "ConvergenceWarning", "FitResult", "InvalidInputError", "ModelFitError", "NMF", "NMFModel", "nmf",
]
