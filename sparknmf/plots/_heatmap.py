"""The annotated heatmap behind the basis, coefficient and consensus maps.

One layout, R NMF's ``aheatmap`` in spirit::

               [ column tree   ]
               [ column tracks ]
    [row tree][row tracks][ matrix ][colour bar][legend]

Rows and columns are reordered by the leaves of their trees; a matrix with
more than ``max_cells`` rows or columns is shown as means of consecutive
(ordered) rows/columns, categorical tracks as the most frequent class of
each group, and a note under the figure says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparknmf.plots._figure import add_note, palette_colors
from sparknmf.plots._tree import draw_tree, tree_layout

__all__ = ["Track", "annotated_heatmap", "group_starts", "reduce_groups"]

_LEGEND_LIMIT = 20


@dataclass
class Track:
    """An annotation strip along the rows or columns of a heatmap.

    Attributes
    ----------
    name : str
    values : ndarray of shape (size,)
        In the matrix's original order.  Categorical tracks hold codes
        0..len(categories)-1; bar tracks hold numbers (e.g. silhouette widths).
    categories : list of str, optional
        Names of the codes; None makes a bar track.
    palette : str
        Key of the categorical palette.
    """

    name: str
    values: np.ndarray
    categories: list | None = None
    palette: str = "basis"

    @classmethod
    def of_classes(cls, name, labels, palette="classes"):
        """A categorical track from any class values (sorted class names)."""
        categories, codes = np.unique(np.asarray(labels), return_inverse=True)
        return cls(name, codes.ravel(), [str(c) for c in categories], palette)

    def colors(self):
        """(list of RGB per category, ListedColormap of them)."""
        from matplotlib.colors import ListedColormap

        colors = palette_colors(self.palette, len(self.categories))
        return colors, ListedColormap(colors)


def group_starts(size: int, limit: int) -> np.ndarray | None:
    """Starts of ``limit`` nearly equal consecutive groups of ``size`` items, or None when size <= limit."""
    if size <= limit:
        return None
    return np.linspace(0, size, limit, endpoint=False).astype(np.int64)


def reduce_groups(X, starts, axis: int, categorical: bool = False):
    """Mean of each group along ``axis`` (the most frequent code for categorical 1-D input)."""
    if starts is None:
        return X
    if categorical:
        X = np.asarray(X)
        counts = np.add.reduceat(np.eye(X.max() + 1)[X], starts, axis=0)
        return counts.argmax(axis=1)
    sizes = np.diff(np.append(starts, X.shape[axis]))
    shape = [1] * X.ndim
    shape[axis] = -1
    return np.add.reduceat(X, starts, axis=axis) / sizes.reshape(shape)


def _draw_track(ax, track: Track, order, starts, along: str):
    values = np.asarray(track.values)[order]
    if track.categories is not None:
        codes = reduce_groups(values, starts, 0, categorical=True)
        _, cmap = track.colors()
        image = codes[None, :] if along == "columns" else codes[:, None]
        ax.imshow(image, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-0.5,
                  vmax=len(track.categories) - 0.5)
    else:
        values = reduce_groups(values.astype(np.float64), starts, 0)
        pos = np.arange(values.size)
        colors = np.where(values >= 0, "0.45", "#d62728")
        low = min(0.0, float(np.nanmin(values))) if np.isfinite(values).any() else 0.0
        if along == "columns":
            ax.bar(pos, values, width=1.0, color=colors)
            ax.set_xlim(-0.5, values.size - 0.5)
            ax.set_ylim(low, 1.0)
        else:
            ax.barh(pos, values, height=1.0, color=colors)
            ax.set_ylim(values.size - 0.5, -0.5)
            ax.set_xlim(low, 1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if along == "columns":
        ax.yaxis.set_label_position("right")
        ax.set_ylabel(track.name, rotation=0, ha="left", va="center", fontsize="small")
    else:
        ax.set_xlabel(track.name, rotation=90, ha="center", va="top", fontsize="small")
    for spine in ax.spines.values():
        spine.set_visible(False)


def _legend(ax, tracks):
    from matplotlib.patches import Patch

    handles = []
    for track in tracks:
        if track.categories is None or len(track.categories) > _LEGEND_LIMIT:
            continue
        colors, _ = track.colors()
        handles.append(Patch(visible=False, label=track.name))
        handles += [Patch(facecolor=c, edgecolor="none", label=name) for c, name in zip(colors, track.categories)]
    ax.set_axis_off()
    if handles:
        legend = ax.legend(handles=handles, loc="upper left", frameon=False, fontsize="small", handlelength=1.0,
                           borderaxespad=0.0)
        for text, handle in zip(legend.get_texts(), handles):
            if not handle.get_visible():
                text.set_fontweight("bold")
    return bool(handles)


def annotated_heatmap(fig, matrix, *, row_tree=None, col_tree=None, row_order=None, col_order=None, row_tracks=(),
                      col_tracks=(), row_names=None, col_names=None, cmap="YlOrRd", vmin=None, vmax=None,
                      colorbar_label="", max_cells=500, name_limit=60):
    """Draw the layout of the module docstring on ``fig``; returns the display order.

    Parameters
    ----------
    matrix : ndarray of shape (r, c)
    row_tree, col_tree : linkage matrix, optional
        Trees over the rows / columns (scipy linkage, (r − 1)×4 / (c − 1)×4),
        drawn and giving the order of that axis.
    row_order, col_order : array of int, optional
        Order of an axis without a tree (default: as given).
    row_tracks, col_tracks : sequence of Track
    row_names, col_names : list of str, optional
        Shown when there are at most ``name_limit`` of them (and no downsampling).
    max_cells : int
        Most display cells per axis (see the module docstring).

    Returns
    -------
    dict with ``row_order``, ``col_order`` (ndarrays of original indices)
    and ``display_shape``.
    """
    r, c = matrix.shape
    rows = tree_layout(row_tree) if row_tree is not None else None
    cols = tree_layout(col_tree) if col_tree is not None else None
    row_order = rows.order if rows else np.arange(r) if row_order is None else np.asarray(row_order)
    col_order = cols.order if cols else np.arange(c) if col_order is None else np.asarray(col_order)
    row_starts, col_starts = group_starts(r, max_cells), group_starts(c, max_cells)
    shown = matrix[np.ix_(row_order, col_order)]
    shown = reduce_groups(reduce_groups(shown, row_starts, 0), col_starts, 1)
    if row_starts is not None or col_starts is not None:
        add_note(fig, f"downsampled for display: {r}×{c} shown as {shown.shape[0]}×{shown.shape[1]} "
                      "(means of consecutive ordered rows/columns)")

    has_legend = any(t.categories is not None and len(t.categories) <= _LEGEND_LIMIT
                     for t in (*row_tracks, *col_tracks))
    widths = ([1.2] if rows else []) + [0.22] * len(row_tracks) + [8.0, 0.25] + ([2.0] if has_legend else [])
    heights = ([1.2] if cols else []) + [0.22] * len(col_tracks) + [8.0]
    grid = fig.add_gridspec(len(heights), len(widths), width_ratios=widths, height_ratios=heights,
                            wspace=0.02, hspace=0.02)
    mi, mj = len(heights) - 1, (1 if rows else 0) + len(row_tracks)
    ax = fig.add_subplot(grid[mi, mj])
    image = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    _names(ax.yaxis, row_names, row_order, row_starts, name_limit, right=True)
    _names(ax.xaxis, col_names, col_order, col_starts, name_limit, right=False)
    fig.colorbar(image, cax=fig.add_subplot(grid[mi, mj + 1]), label=colorbar_label)
    if rows:
        draw_tree(fig.add_subplot(grid[mi, 0]), rows, "left", size=shown.shape[0])
    if cols:
        draw_tree(fig.add_subplot(grid[0, mj]), cols, "top", size=shown.shape[1])
    for t, track in enumerate(row_tracks):
        _draw_track(fig.add_subplot(grid[mi, mj - len(row_tracks) + t]), track, row_order, row_starts, "rows")
    for t, track in enumerate(col_tracks):
        _draw_track(fig.add_subplot(grid[mi - len(col_tracks) + t, mj]), track, col_order, col_starts, "columns")
    if has_legend:
        _legend(fig.add_subplot(grid[:, -1]), (*col_tracks, *row_tracks))
    return {"row_order": row_order, "col_order": col_order, "display_shape": shown.shape}


def _names(axis, names, order, starts, limit, right):
    if names is None or starts is not None or len(names) > limit:
        axis.set_ticks([])
        return
    axis.set_ticks(np.arange(len(order)))
    axis.set_ticklabels([names[i] for i in order], fontsize="small", rotation=0 if right else 90)
    if right:
        axis.tick_right()
