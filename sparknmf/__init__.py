"""sparknmf: non-negative matrix factorization and masked ALS on Apache Spark.

V (n×m) ≈ W (n×k) · H (k×m), W, H ≥ 0.  Samples are the columns of V.

* :class:`NMF` / :class:`NMFModel` -- pyspark.ml Estimator and Model.
* :func:`nmf` -- the same loop on numpy / scipy input, without Spark
  (``nmf(V, k, nrun=30)``: multi-start runs for clustering).
* :class:`MultiStartNMF`, :func:`multistart`, :func:`rank_survey` --
  clustering and model selection (:mod:`sparknmf.analysis.multistart`,
  :mod:`sparknmf.analysis.metrics`, :mod:`sparknmf.analysis.survey`).
* :class:`MaskedALS` / :class:`MaskedALSModel` -- ratings: masked ALS with biases,
  time terms and implicit feedback, top-N recommendations.
"""

from sparknmf.analysis.multistart import MultiStartNMF, MultiStartNMFModel, multistart
from sparknmf.analysis.survey import rank_survey
from sparknmf.decomposition.estimator import NMF, NMFModel, nmf
from sparknmf.decomposition.factorize import FitResult
from sparknmf.errors import ConvergenceWarning, InvalidInputError, ModelFitError
from sparknmf.kernels.updates import UPDATE_RULES
from sparknmf.ratings.estimator import MaskedALS, MaskedALSModel
from sparknmf.version import __version__

ALGORITHMS = tuple(sorted(UPDATE_RULES))

__all__ = [
    "ALGORITHMS", "ConvergenceWarning", "FitResult", "InvalidInputError", "ModelFitError", "NMF", "NMFModel", "nmf",
    "MultiStartNMF", "MultiStartNMFModel", "multistart", "rank_survey", "MaskedALS", "MaskedALSModel", "__version__",
]
