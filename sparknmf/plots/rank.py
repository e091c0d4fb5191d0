"""Rank survey plot: every measure against k, the randomised-data survey overlaid (R's ``plot(nmfEstimateRank)``).

One panel per measure group; the original data as solid lines with filled
markers, the randomised data (:func:`sparknmf.analysis.survey.randomize`) dashed with
open markers in the same colour.  A rank is a good choice where the
original curve departs from the randomised one (e.g. the cophenetic
correlation drops after it on real data but not on random data).
"""

from __future__ import annotations

import math

import numpy as np

from sparknmf.plots._figure import finish, new_figure

__all__ = ["PANELS", "survey_plot"]

# panel title -> (columns of the survey table, their legend names)
PANELS = {
    "cophenetic": (("cophenetic",), ("cophenetic",)),
    "dispersion": (("dispersion",), ("dispersion",)),
    "explained variance": (("evar",), ("evar",)),
    "residuals (RSS)": (("rss",), ("rss",)),
    "silhouette": (("silhouette_consensus", "silhouette_coef", "silhouette_basis"), ("consensus", "coef", "basis")),
    "sparseness": (("sparseness_basis", "sparseness_coef"), ("basis", "coef")),
    "purity": (("purity",), ("purity",)),
    "entropy": (("entropy",), ("entropy",)),
}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c")


def _rows(survey):
    rows = list(getattr(survey, "rows", survey))
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("survey_plot needs a Survey (sparknmf.rank_survey) or a non-empty list of its rows (dicts)")
    missing = [key for key in ("data", "k") if key not in rows[0]]
    if missing:
        raise ValueError(f"survey rows lack the columns {missing}; expected the table of sparknmf.rank_survey")
    if not any(r["data"] == "original" for r in rows):
        raise ValueError("the survey has no rows for the original data (data='original')")
    return rows


def _series(rows, data, column):
    points = sorted((r["k"], r.get(column)) for r in rows if r["data"] == data)
    ks = np.array([k for k, _ in points], dtype=np.float64)
    values = np.array([np.nan if v is None else v for _, v in points], dtype=np.float64)
    return ks, values


def survey_plot(survey, *, measures=None, ncols=4, figsize=None, dpi=100, title="NMF rank survey", save=None):
    """Every measure of a rank survey against the rank k, with the randomised survey overlaid.

    Parameters
    ----------
    survey : Survey or list of dict
        :func:`sparknmf.rank_survey`'s table (rows with ``data``, ``k`` and the measures).
    measures : sequence of str, optional
        Panels to draw, among the keys of :data:`PANELS` (default: each whose
        columns the survey has: purity and entropy only with labels).
    ncols : int
        Panels per row.
    figsize : (width, height), optional
        Default ``(3·ncols, 2.6·nrows)`` inches; the PNG is ``figsize × dpi`` pixels.
    dpi, title, save :
        As :func:`sparknmf.plots.basis_map`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = _rows(survey)
    present = {key for row in rows for key in row}
    if measures is None:
        measures = [name for name, (columns, _) in PANELS.items() if present.intersection(columns)]
    else:
        measures = list(measures)
        unknown = [m for m in measures if m not in PANELS]
        if unknown or not measures:
            raise ValueError(f"measures must be a non-empty list among {list(PANELS)}, got {measures!r}")
        absent = [m for m in measures if not present.intersection(PANELS[m][0])]
        if absent:
            raise ValueError(f"the survey has no column for {absent} (purity and entropy need labels)")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be an integer >= 1, got {ncols!r}")
    ncols = min(ncols, len(measures))
    nrows = math.ceil(len(measures) / ncols)
    fig = new_figure(figsize or (3.0 * ncols, 2.6 * nrows + 0.4), dpi)
    randomized = any(r["data"] == "randomized" for r in rows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, measures):
        columns, legend = PANELS[name]
        for column, label, color in zip(columns, legend, _COLORS):
            if column not in present:
                continue
            ks, values = _series(rows, "original", column)
            ax.plot(ks, values, "-o", color=color, markersize=4, label=label)
            if randomized:
                ks, values = _series(rows, "randomized", column)
                ax.plot(ks, values, "--o", color=color, markersize=4, markerfacecolor="white")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("k")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, color="0.9")
        if len(columns) > 1:
            ax.legend(fontsize="x-small", frameon=False)
    for ax in axes.flat[len(measures):]:
        ax.set_axis_off()
    if randomized:
        from matplotlib.lines import Line2D

        fig.legend(handles=[Line2D([], [], color="0.3", marker="o", label="original data"),
                            Line2D([], [], color="0.3", marker="o", linestyle="--", markerfacecolor="white",
                                   label="randomized data")],
                   loc="outside upper right", ncols=2, frameon=False, fontsize="small")
    fig.suptitle(title)
    return finish(fig, save)
