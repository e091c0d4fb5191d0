"""Items in factor space and each factor's top features.

* :func:`factor_scatter` -- two factors against each other, points labelled
  (the movie map of Koren, Bell & Volinsky 2009, Fig. 3).
* :func:`factor_dendrogram` -- a tree of items in factor space (Ward
  linkage by default, distance selectable: Manhattan on two factors as in
  the seed analysis).
* :func:`top_features` -- horizontal bars of each factor's top features by weight.

Points and leaves are the rows of X (s×k): pass ``H.T`` for the samples
(columns of V) or ``W`` for the features (rows of V).

References
----------
Y. Koren, R. Bell and C. Volinsky (2009), "Matrix factorization techniques
for recommender systems", Computer 42(8), 30-37. https://doi.org/10.1109/MC.2009.263
"""

from __future__ import annotations

import math

import numpy as np

from sparknmf.plots._figure import add_note, finish, new_figure, palette_colors
from sparknmf.plots._heatmap import Track
from sparknmf.plots._inputs import as_factor, as_labels, as_names, check_count
from sparknmf.plots._tree import draw_tree, tree_layout

__all__ = ["factor_scatter", "factor_dendrogram", "top_features"]


def _columns(factors, k, whom="factors"):
    """Checked factor (column) indices: distinct integers in 0..k-1."""
    cols = np.asarray(factors)
    if cols.ndim != 1 or cols.size == 0 or not np.issubdtype(cols.dtype, np.integer):
        raise ValueError(f"{whom} must be a sequence of factor indices (integers), got {factors!r}")
    if cols.min() < 0 or cols.max() >= k or np.unique(cols).size != cols.size:
        raise ValueError(f"{whom} must be distinct integers in 0..{k - 1} (k={k}), got {list(cols)}")
    return cols


def _priority(P, annotate, names_given):
    """Indices of the points to label, most important first."""
    if annotate is None:
        annotate = 20 if names_given else 0
    if isinstance(annotate, (int, np.integer)) and not isinstance(annotate, bool):
        count = check_count(annotate, "annotate", 0)
        return np.argsort(-np.hypot(P[:, 0], P[:, 1]), kind="stable")[:count]
    index = np.asarray(annotate)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or (index.size and (
            index.min() < 0 or index.max() >= P.shape[0])):
        raise ValueError(f"annotate must be a count or point indices in 0..{P.shape[0] - 1}")
    return index


def _place_labels(fig, ax, P, index, names):
    """Label the points in ``index`` (priority order), leaving out labels that would overlap or leave the axes.

    Each label tries a few positions next to its point (right of it in the
    left half of the plot, left of it in the right half).  Returns the
    indices of the labelled points.
    """
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    boxes, labelled = [], []
    middle = np.mean(ax.get_xlim())
    for i in index:
        right = P[i, 0] <= middle
        for dy in (2, -10, 12, -20):
            text = ax.annotate(names[i], P[i], xytext=(4 if right else -4, dy), textcoords="offset points",
                               ha="left" if right else "right", fontsize="small", color="0.1")
            box = text.get_window_extent(renderer).expanded(1.04, 1.15)
            if (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
                    and not any(box.overlaps(other) for other in boxes)):
                boxes.append(box)
                labelled.append(i)
                break
            text.remove()
    return np.asarray(labelled, dtype=np.int64)


def factor_scatter(X, factors=(0, 1), *, names=None, annotate=None, groups=None, factor_names=None,
                   figsize=(7.0, 6.0), dpi=100, title=None, save=None):
    """Two factors against each other, one point per item, the most prominent points labelled.

    Parameters
    ----------
    X : ndarray of shape (s, k)
        Items in rows (``H.T`` for samples, ``W`` for features); may be negative
        (e.g. SVD factors).
    factors : (int, int)
        The two factors (columns of X) on the x and y axes.
    names : sequence of str of shape (s,), optional
        Item names for the labels.
    annotate : int or sequence of int, optional
        How many points to label (those farthest from the origin in the
        plane; default 20 with names, else 0), or the indices of the points to
        label, most important first.  A label that would overlap an earlier
        one or leave the axes is left out, and a note gives the count.
    groups : sequence of shape (s,), optional
        A class per item, shown as colours with a legend.
    factor_names : sequence of str of shape (k,), optional
        Names of the factors for the axis labels (default "factor 1", ...).
    figsize, dpi, title, save :
        As :func:`sparknmf.plots.basis_map`.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.sparknmf["labelled"]``: indices of the labelled points.
    """
    X = as_factor(X, "X", nonnegative=False)
    cols = _columns(factors, X.shape[1])
    if cols.size != 2:
        raise ValueError(f"factors must name exactly two factors, got {factors!r}")
    fx, fy = cols
    P = X[:, cols]
    index = _priority(P, annotate, names_given=names is not None)
    names = as_names(names, X.shape[0], "names", "item")
    axis_names = as_names(factor_names, X.shape[1], "factor_names", "factor")
    groups = as_labels(groups, X.shape[0], "groups")
    fig = new_figure(figsize, dpi, constrained=False)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.1, top=0.92)
    ax = fig.add_subplot()
    if groups is None:
        ax.scatter(P[:, 0], P[:, 1], s=8, color="0.6", linewidths=0)
    else:
        track = Track.of_classes("groups", groups)
        colors, _ = track.colors()
        for code, (name, color) in enumerate(zip(track.categories, colors)):
            mine = track.values == code
            ax.scatter(P[mine, 0], P[mine, 1], s=8, color=color, linewidths=0, label=name)
        ax.legend(frameon=False, fontsize="small", markerscale=2)
    pad_x, pad_y = 0.06 * (np.ptp(P[:, 0]) or 1.0), 0.06 * (np.ptp(P[:, 1]) or 1.0)
    ax.set_xlim(P[:, 0].min() - pad_x, P[:, 0].max() + pad_x)
    ax.set_ylim(P[:, 1].min() - pad_y, P[:, 1].max() + pad_y)
    ax.set_xlabel(axis_names[fx])
    ax.set_ylabel(axis_names[fy])
    ax.set_title(title or f"Factor {fx + 1} against factor {fy + 1}")
    labelled = _place_labels(fig, ax, P, index, names)
    ax.scatter(P[labelled, 0], P[labelled, 1], s=14, color="#d62728", linewidths=0)
    if labelled.size < index.size:
        add_note(fig, f"{index.size - labelled.size} of {index.size} labels left out to avoid overlaps")
    fig.sparknmf["labelled"] = labelled
    return finish(fig, save)


def factor_dendrogram(X, *, names=None, factors=None, metric="cityblock", method="ward", label_limit=100,
                      figsize=None, dpi=100, title=None, save=None):
    """Hierarchical clustering of items in factor space, leaves labelled.

    Parameters
    ----------
    X : ndarray of shape (s, k), s >= 2
        Items in rows (e.g. ``H.T`` for the samples of a subset).
    names : sequence of str of shape (s,), optional
    factors : sequence of int, optional
        The factors (columns of X) to cluster on; default all.
    metric : str
        scipy ``pdist`` distance ("cityblock" = Manhattan, "euclidean", ...).
        Ward's update formula is applied to these distances as given (it
        is exact for Euclidean distances only).
    method : str
        scipy ``linkage`` method ("ward", "average", "complete", ...).
    label_limit : int
        Most leaves labelled (a larger tree is drawn without labels and a note).
    figsize : (width, height), optional
        Default ``(6, max(3, 0.17·s + 1))`` inches; the PNG is ``figsize × dpi`` pixels.
    dpi, title, save :
        As :func:`sparknmf.plots.basis_map`.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.sparknmf["leaf_order"]``: item indices from top to bottom.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    X = as_factor(X, "X", nonnegative=False)
    s = X.shape[0]
    if s < 2:
        raise ValueError(f"factor_dendrogram needs at least 2 items, got {s}")
    cols = _columns(range(X.shape[1]) if factors is None else factors, X.shape[1])
    names = as_names(names, s, "names", "item")
    try:
        Z = linkage(pdist(X[:, cols], metric=metric), method=method)
    except ValueError as err:
        raise ValueError(f"factor_dendrogram: metric={metric!r}, method={method!r}: {err}") from None
    label_limit = check_count(label_limit, "label_limit")
    fig = new_figure(figsize or (6.0, max(3.0, 0.17 * min(s, label_limit) + 1.0)), dpi)
    ax = fig.add_subplot()
    layout = tree_layout(Z)
    draw_tree(ax, layout, "left")
    ax.set_axis_on()
    for side in ("top", "left", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    if s <= label_limit:
        ax.set_yticks(np.arange(s), [names[i] for i in layout.order], fontsize="small")
        ax.yaxis.tick_right()
    else:
        ax.set_yticks([])
        add_note(fig, f"{s} leaves > label_limit={label_limit}: labels omitted")
    shown = "all factors" if factors is None else "factors " + ", ".join(str(c + 1) for c in cols)
    ax.set_xlabel(f"{method} linkage height ({metric} distance on {shown})", loc="left")
    fig.suptitle(title or "Items in factor space")
    fig.sparknmf["leaf_order"] = layout.order
    return finish(fig, save)


def top_features(W, names=None, *, n=10, factors=None, ncols=None, figsize=None, dpi=100,
                 title="Top features per factor", save=None):
    """Each factor's ``n`` heaviest features as horizontal bars, the heaviest on top.

    Parameters
    ----------
    W : ndarray of shape (n_features, k), or a fit (its W)
        Features in rows (for features in the columns of V pass ``H.T``).
    names : sequence of str of shape (n_features,), optional
    n : int
        Features per factor.
    factors : sequence of int, optional
        Factors to show (default all).
    ncols : int, optional
        Panels per row (default ``min(5, number of factors)``, fewer when long names need wider panels:
        at most 15 inches in all).
    figsize : (width, height), optional
        Default ``(w·ncols, (0.2·n + 0.8)·nrows + 0.4)`` inches with a panel width
        ``w = max(2.4, 1.2 + 0.065·longest name shown)``; the PNG is ``figsize × dpi`` pixels.
    dpi, title, save :
        As :func:`sparknmf.plots.basis_map`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    W = as_factor(W, "W")
    features, k = W.shape
    names = as_names(names, features, "names", "feature")
    n = min(check_count(n, "n"), features)
    cols = _columns(range(k) if factors is None else factors, k)
    tops = {q: np.argsort(-W[:, q], kind="stable")[:n] for q in cols}
    longest = max(len(names[i]) for top in tops.values() for i in top)
    panel = max(2.4, 1.2 + 0.065 * longest)  # inches: the names sit left of the bars
    ncols = min(5, cols.size, max(1, int(15 // panel))) if ncols is None else check_count(ncols, "ncols")
    nrows = math.ceil(cols.size / ncols)
    fig = new_figure(figsize or (panel * ncols, (0.2 * n + 0.8) * nrows + 0.4), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = palette_colors("basis", k)
    for ax, q in zip(axes.flat, cols):
        top = tops[q]
        ax.barh(np.arange(top.size), W[top, q], color=colors[q])
        ax.set_yticks(np.arange(top.size), [names[i] for i in top], fontsize="small")
        ax.set_ylim(top.size - 0.5, -0.5)
        ax.set_title(f"factor {q + 1}", fontsize="medium")
        ax.tick_params(axis="x", labelsize="x-small")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for ax in axes.flat[cols.size:]:
        ax.set_axis_off()
    fig.supxlabel("weight", fontsize="small")
    fig.suptitle(title)
    return finish(fig, save)
