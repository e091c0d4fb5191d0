"""Pictures of NMF fits (matplotlib, the optional extra ``plot``: ``pip install "sparknmf[plot]"``).

Every function takes numpy arrays or fitted objects, draws on the driver,
returns a headless :class:`matplotlib.figure.Figure` (Agg canvas, no
pyplot) and saves it when given ``save="file.png"`` (or ``.svg``); a saved
PNG is ``figsize × dpi`` pixels.  This package imports without matplotlib;
calling a function without it raises an ImportError naming the extra.

* :func:`basis_map`, :func:`coef_map`, :func:`consensus_map` (and
  :func:`consensus_order`) -- annotated heatmaps (:mod:`.maps`).
* :func:`survey_plot` -- every measure of a rank survey against k, the
  randomised data overlaid (:mod:`.rank`).
* :func:`factor_scatter`, :func:`factor_dendrogram`, :func:`top_features`
  -- items in factor space and each factor's top features (:mod:`.factors`).
* :func:`history_plot` -- the objective of a fit by iteration (:mod:`.history`).
"""

from sparknmf.plots._figure import FORMATS, PLOT_EXTRA, require_matplotlib, save_figure
from sparknmf.plots.factors import factor_dendrogram, factor_scatter, top_features
from sparknmf.plots.history import history_plot
from sparknmf.plots.maps import CLUSTER_LIMIT, basis_map, coef_map, consensus_map, consensus_order
from sparknmf.plots.rank import survey_plot

__all__ = [
    "FORMATS", "PLOT_EXTRA", "CLUSTER_LIMIT", "require_matplotlib", "save_figure", "basis_map", "coef_map",
    "consensus_map", "consensus_order", "survey_plot", "factor_scatter", "factor_dendrogram", "top_features",
    "history_plot",
]
