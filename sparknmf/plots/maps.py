"""Basis, coefficient and consensus maps (R NMF's ``basismap``, ``coefmap``, ``consensusmap``).

Each is an annotated heatmap (:mod:`._heatmap`): the matrix reordered by
hierarchical clustering with its dendrogram, and side tracks.

* :func:`basis_map` -- W (n×k): features in rows, clustered; a track of each
  feature's dominant basis; optional subset of the most basis-specific features.
* :func:`coef_map` -- H (k×m): samples in columns, clustered; tracks of each
  sample's dominant basis and of known classes.
* :func:`consensus_map` -- the consensus matrix C (s×s) of a multi-start fit,
  ordered by the average-linkage tree on ``1 − C`` that
  :func:`sparknmf.analysis.metrics.cophenetic_correlation` uses
  (:func:`sparknmf.analysis.metrics.consensus_linkage`); tracks of the consensus
  clusters (that tree cut into k groups), known classes and each sample's
  silhouette width on ``1 − C``.

Features (rows of W) and samples (columns of H) are scaled to sum to 1 by
default (R's ``scale="r1"`` / ``"c1"``) and clustered with complete linkage
on Euclidean distances (R's ``aheatmap`` defaults); beyond
:data:`CLUSTER_LIMIT` items they are ordered by dominant basis, then by
decreasing weight, instead (a note says so).  Every figure carries
``fig.sparknmf["row_order"]`` and ``["col_order"]``: the original indices in
display order.
"""

from __future__ import annotations

import numpy as np

from sparknmf.analysis import metrics
from sparknmf.plots._figure import add_note, finish, new_figure
from sparknmf.plots._heatmap import Track, annotated_heatmap
from sparknmf.plots._inputs import as_factor, as_labels, as_names, check_count, consensus_of

__all__ = ["CLUSTER_LIMIT", "basis_map", "coef_map", "consensus_map", "consensus_order"]

CLUSTER_LIMIT = 2000
_SUBSETS = ("kim", "max")


def _select_features(W, subset):
    """Indices of the features to show (module docstring of :func:`basis_map`)."""
    n = W.shape[0]
    if subset is None:
        return np.arange(n)
    if isinstance(subset, str):
        if subset not in _SUBSETS:
            raise ValueError(f"subset must be None, an int, an index array or one of {list(_SUBSETS)}, got {subset!r}")
        chosen = np.concatenate(metrics.extract_features(W, subset))
        if chosen.size == 0:
            raise ValueError(f"subset={subset!r}: extract_features selected no feature; try 'max' or an int")
        return np.sort(chosen)
    if isinstance(subset, (int, np.integer)) and not isinstance(subset, bool):
        count = check_count(subset, "subset")
        scores = metrics.feature_scores(W, "kim")
        return np.sort(np.argsort(-scores, kind="stable")[: min(count, n)])
    index = np.asarray(subset)
    if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError("subset must be None, an int, 'kim', 'max' or a non-empty 1-D array of feature indices")
    if index.min() < 0 or index.max() >= n:
        raise ValueError(f"subset has indices outside 0..{n - 1}")
    return index


def _item_order(X, scale, method, metric, fig):
    """Scale the items (rows of X, items×k); cluster them, or order them by dominant basis beyond the limit.

    Returns (scaled X, linkage or None, order or None).
    """
    from scipy.cluster.hierarchy import linkage

    if scale:
        totals = X.sum(axis=1, keepdims=True)
        X = np.divide(X, totals, out=np.zeros_like(X), where=totals > 0)
    if X.shape[0] < 2:
        return X, None, None
    if X.shape[0] > CLUSTER_LIMIT:
        add_note(fig, f"{X.shape[0]} > {CLUSTER_LIMIT} items: ordered by dominant basis and weight, not clustered")
        best = X.argmax(axis=1)
        return X, None, np.lexsort((-X[np.arange(X.shape[0]), best], best))
    return X, linkage(X, method=method, metric=metric), None


def _factor_map(X, side, names, tracks, index, notes, *, scale, method, metric, max_cells, figsize, dpi, title,
                save):
    """The basis or coefficient map of the items of a factor (rows of X, items×k, original positions ``index``).

    ``side`` is where the items go: "rows" (W) or "columns" (H).  Adds the
    dominant-basis track before ``tracks`` and the ``notes`` under the figure.
    """
    max_cells = check_count(max_cells, "max_cells", 2)
    fig = new_figure(figsize, dpi)
    for note in notes:
        add_note(fig, note)
    X, tree, order = _item_order(X, scale, method, metric, fig)
    bases = [str(q + 1) for q in range(X.shape[1])]
    tracks = [Track("basis", X.argmax(axis=1), bases, "basis"), *tracks]
    common = {"cmap": "YlOrRd", "vmin": 0, "colorbar_label": "relative weight" if scale else "weight",
              "max_cells": max_cells}
    if side == "rows":
        info = annotated_heatmap(fig, X, row_tree=tree, row_order=order, row_tracks=tracks, row_names=names,
                                 col_names=bases, **common)
        fig.sparknmf.update(row_order=index[info["row_order"]], col_order=np.arange(len(bases)))
    else:
        info = annotated_heatmap(fig, X.T, col_tree=tree, col_order=order, col_tracks=tracks, row_names=bases,
                                 col_names=names, **common)
        fig.sparknmf.update(row_order=np.arange(len(bases)), col_order=index[info["col_order"]])
    fig.suptitle(title)
    return finish(fig, save)


def basis_map(W, *, features=None, subset=None, scale=True, method="complete", metric="euclidean", max_cells=500,
              figsize=(5.0, 6.0), dpi=100, title="Basis components", save=None):
    """Heatmap of the basis W (n×k): features clustered, with their dominant basis.

    Parameters
    ----------
    W : ndarray of shape (n, k), or a fit (FitResult, MultiFit, NMFModel)
    features : sequence of str of shape (n,), optional
        Feature names, shown when at most 60 rows are displayed.
    subset : None, int, {"kim", "max"} or array of int
        Rows to show: all; the ``subset`` features with the highest Kim &
        Park score; those chosen by :func:`sparknmf.analysis.metrics.extract_features`;
        or the given indices.
    scale : bool
        Scale each feature's row to sum to 1 (R's ``scale="r1"``).
    method, metric : str
        scipy ``linkage`` method and distance for the feature tree.
    max_cells : int
        Most rows displayed; more are shown as means of consecutive rows.
    figsize, dpi :
        The saved PNG is ``figsize[0]·dpi × figsize[1]·dpi`` pixels.
    title : str
    save : path ending in .png or .svg, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    W = as_factor(W, "W")
    names = as_names(features, W.shape[0], "features")
    index = _select_features(W, subset)
    notes = [f"{index.size} of {W.shape[0]} features shown"] if index.size < W.shape[0] else []
    return _factor_map(W[index], "rows", names and [names[i] for i in index], [], index, notes, scale=scale,
                       method=method, metric=metric, max_cells=max_cells, figsize=figsize, dpi=dpi, title=title,
                       save=save)


def coef_map(H, *, labels=None, samples=None, scale=True, method="complete", metric="euclidean", max_cells=500,
             figsize=(7.0, 4.0), dpi=100, title="Mixture coefficients", save=None):
    """Heatmap of the coefficients H (k×m): samples clustered, tracks of dominant basis and known classes.

    Parameters
    ----------
    H : ndarray of shape (k, m), or a fit (FitResult, MultiFit, NMFModel)
    labels : sequence of shape (m,), optional
        Known class of each sample: a track and a legend.
    samples : sequence of str of shape (m,), optional
        Sample names, shown when at most 60 columns are displayed.
    scale : bool
        Scale each sample's column to sum to 1 (R's ``scale="c1"``).
    method, metric, max_cells, figsize, dpi, title, save :
        As :func:`basis_map` (for columns).

    Returns
    -------
    matplotlib.figure.Figure
    """
    H = as_factor(H, "H")
    labels = as_labels(labels, H.shape[1])
    tracks = [Track.of_classes("labels", labels)] if labels is not None else []
    return _factor_map(H.T, "columns", as_names(samples, H.shape[1], "samples"), tracks, np.arange(H.shape[1]), [],
                       scale=scale, method=method, metric=metric, max_cells=max_cells, figsize=figsize, dpi=dpi,
                       title=title, save=save)


def consensus_order(fit) -> np.ndarray:
    """Samples in the order of the consensus map: the leaves of :func:`sparknmf.analysis.metrics.consensus_linkage`.

    Parameters
    ----------
    fit : MultiFit, MultiStartNMFModel, or ndarray of shape (s, s)

    Returns
    -------
    ndarray of int of shape (s,)
        Sample positions (in V's samples; for a sampled consensus, the
        sampled ones, ``fit.consensus().index``).
    """
    from scipy.cluster.hierarchy import leaves_list

    cons, _, _ = consensus_of(fit)
    return cons.index[leaves_list(metrics.consensus_linkage(cons.matrix))]


def consensus_map(fit, *, labels=None, k=None, samples=None, max_cells=500, figsize=(7.0, 6.0), dpi=100,
                  title="Consensus matrix", save=None):
    """Heatmap of the consensus matrix of a multi-start fit, ordered by its average-linkage tree on ``1 − C``.

    Parameters
    ----------
    fit : MultiFit, MultiStartNMFModel, or ndarray of shape (s, s)
        Multi-start runs (``sparknmf.nmf(V, k, nrun=30)``) or a consensus
        matrix.  A single fit raises ValueError (it has no consensus).
    labels : sequence, optional
        Known class of each sample (of the s consensus samples, or of all
        samples when the consensus is a seeded sample of them).
    k : int, optional
        Number of consensus clusters for the cluster and silhouette tracks
        (default: the fit's rank; no such tracks for a bare matrix without k).
    samples : sequence of str, optional
        Sample names, shown when at most 60 samples are displayed.
    max_cells, figsize, dpi, title, save :
        As :func:`basis_map`.

    Returns
    -------
    matplotlib.figure.Figure
        With ``fig.sparknmf["row_order"]`` = :func:`consensus_order`.

    Examples
    --------
    >>> from sparknmf import plots
    >>> from sparknmf import multistart
    >>> from sparknmf.datasets import block_diagonal
    >>> V, labels = block_diagonal((8, 8), features=16, seed=2)
    >>> fit = multistart(V, 2, nrun=4, mode="local")
    >>> fig = plots.consensus_map(fit, labels=labels, figsize=(4, 3), dpi=50)
    >>> fig.get_size_inches().tolist(), len(set(labels[fig.sparknmf["row_order"][:8]]))
    ([4.0, 3.0], 1)
    """
    cons, k, total = consensus_of(fit, k)
    C, s = cons.matrix, cons.matrix.shape[0]
    if labels is not None:
        labels = np.asarray(labels)
        labels = as_labels(labels[cons.index] if cons.sampled and labels.size == total else labels, s)
    names = as_names(samples, total, "samples")
    max_cells = check_count(max_cells, "max_cells", 2)
    fig = new_figure(figsize, dpi)
    if cons.sampled:
        add_note(fig, f"consensus of a seeded sample of {s} of {total} samples")
    tree = metrics.consensus_linkage(C)
    tracks = []
    if k is not None:
        clusters = metrics.consensus_clusters(C, k)
        tracks.append(Track.of_classes("consensus", _by_first_leaf(clusters, tree) + 1, "basis"))
        tracks.append(Track("silhouette", metrics.silhouette_widths(1.0 - C, clusters)))
    if labels is not None:
        tracks.append(Track.of_classes("labels", labels))
    shown = None if names is None else [names[i] for i in cons.index]
    info = annotated_heatmap(
        fig, C, row_tree=tree, col_tree=tree, col_tracks=tracks, row_names=shown, col_names=shown, cmap="RdYlBu_r",
        vmin=0, vmax=1, colorbar_label="fraction of runs together", max_cells=max_cells,
    )
    fig.sparknmf.update(row_order=cons.index[info["row_order"]], col_order=cons.index[info["col_order"]])
    fig.suptitle(title)
    return finish(fig, save)


def _by_first_leaf(clusters, tree):
    """Renumber clusters 0, 1, ... in the order they first appear along the tree's leaves."""
    from scipy.cluster.hierarchy import leaves_list

    along = clusters[leaves_list(tree)]
    _, first = np.unique(along, return_index=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[np.searchsorted(np.unique(along), clusters)]
