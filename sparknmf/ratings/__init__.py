"""Ratings: masked ALS matrix completion with biases, time terms and implicit feedback; top-N recommendations.

Above :mod:`sparknmf.engine` and :mod:`sparknmf.kernels`; nothing here imports NMF or the analysis code.
"""

from sparknmf.ratings.estimator import MaskedALS
from sparknmf.ratings.model import MaskedALSModel

__all__ = ["MaskedALS", "MaskedALSModel"]
