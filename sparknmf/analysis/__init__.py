"""Clustering and model selection, driver side: multi-start runs, consensus, metrics, rank survey, topics.

Works on what the runs collect (assignments: an s-vector per run; k×k and
s×s summaries), never on the full data.  Above :mod:`sparknmf.decomposition`.
"""

from sparknmf.analysis.clustering import MultiFit, multistart, nmf
from sparknmf.analysis.estimator import MultiStartNMF, MultiStartNMFModel
from sparknmf.analysis.survey import rank_survey

__all__ = ["MultiFit", "MultiStartNMF", "MultiStartNMFModel", "multistart", "nmf", "rank_survey"]
