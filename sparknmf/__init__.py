"""sparknmf: non-negative matrix factorization and masked ALS on Apache Spark.

V (n×m) ≈ W (n×k) · H (k×m), W, H ≥ 0.  Samples are the columns of V.

* :class:`NMF` / :class:`NMFModel` -- pyspark.ml Estimator and Model.
* :func:`nmf` -- the same loop on numpy / scipy input, without Spark
  (``nmf(V, k, nrun=30)``: multi-start runs for clustering).
* :class:`MultiStartNMF`, :func:`multistart`, :func:`rank_survey` --
  clustering and model selection (:mod:`sparknmf.consensus`,
  :mod:`sparknmf.metrics`, :mod:`sparknmf.survey`).
* :class:`MaskedALS` / :class:`MaskedALSModel` -- ratings: masked ALS with biases,
  time terms and implicit feedback, top-N recommendations.
"""

from .als import MaskedALS, MaskedALSModel
from .consensus import MultiStartNMF, MultiStartNMFModel, multistart
from .errors import ConvergenceWarning, InvalidInputError, ModelFitError
from .factorize import FitResult
from .kernels.updates import UPDATE_RULES
from .nmf import NMF, NMFModel, nmf
from .survey import rank_survey

__version__ = "0.1.0"

ALGORITHMS = tuple(sorted(UPDATE_RULES))

__all__ = [
    "ALGORITHMS", "ConvergenceWarning", "FitResult", "InvalidInputError", "ModelFitError", "NMF", "NMFModel", "nmf",
    "MultiStartNMF", "MultiStartNMFModel", "multistart", "rank_survey", "MaskedALS", "MaskedALSModel",
]
