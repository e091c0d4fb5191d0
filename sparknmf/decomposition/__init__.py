"""NMF: the one alternating loop, the ``NMF`` Estimator and the ``NMFModel``.

Above :mod:`sparknmf.engine` and :mod:`sparknmf.kernels`; nothing here imports ratings or the analysis code.
"""

from sparknmf.decomposition.estimator import NMF
from sparknmf.decomposition.factorize import FitResult
from sparknmf.decomposition.model import NMFModel

__all__ = ["NMF", "NMFModel", "FitResult"]
