"""sparknmf: non-negative matrix factorization and masked ALS on Apache Spark.

V (n×m) ≈ W (n×k) · H (k×m), W, H ≥ 0.  Samples are the columns of V.

* :class:`NMF` / :class:`NMFModel` -- pyspark.ml Estimator and Model.
* :func:`nmf` -- the same loop on numpy / scipy input, without Spark
  (``nmf(V, k, nrun=30)``: multi-start runs for clustering).
* :class:`MultiStartNMF`, :func:`multistart`, :func:`rank_survey` --
  clustering and model selection (:mod:`sparknmf.analysis`).
* :func:`show_progress` -- print every fit's progress (or ``verbose=1`` per call).
* :class:`MaskedALS` / :class:`MaskedALSModel` -- ratings: masked ALS with biases,
  time terms and implicit feedback, top-N recommendations (:mod:`sparknmf.ratings`).

The packages are layers; each imports only those below it::

    kernels, errors, params  ←  engine, datasets  ←  decomposition, ratings  ←  analysis  ←  plots  ←  pipeline

(docs/design.md draws the whole tree; tests/test_layers.py enforces it).
"""

from sparknmf.analysis import MultiStartNMF, MultiStartNMFModel, multistart, nmf, rank_survey
from sparknmf.decomposition import NMF, FitResult, NMFModel
from sparknmf.errors import ConvergenceWarning, InvalidInputError, ModelFitError
from sparknmf.kernels.updates import UPDATE_RULES
from sparknmf.progress import show_progress
from sparknmf.ratings import MaskedALS, MaskedALSModel
from sparknmf.version import __version__

ALGORITHMS = tuple(sorted(UPDATE_RULES))

__all__ = [
    "ALGORITHMS", "ConvergenceWarning", "FitResult", "InvalidInputError", "ModelFitError", "NMF", "NMFModel", "nmf",
    "MultiStartNMF", "MultiStartNMFModel", "multistart", "rank_survey", "MaskedALS", "MaskedALSModel", "show_progress",
    "__version__",
]
