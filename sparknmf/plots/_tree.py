"""Dendrograms drawn from a scipy linkage matrix, in leaf positions that line up with a heatmap.

scipy's own ``dendrogram`` plotting goes through pyplot and recurses once per
level (deep trees of thousands of leaves overflow the stack); this draws the
same tree iteratively on a given Axes, with leaf i of the order at position i.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TreeLayout", "tree_layout", "draw_tree"]


class TreeLayout:
    """A linkage tree laid out for drawing.

    Attributes
    ----------
    order : ndarray of int of shape (s,)
        Leaves from first to last (``scipy.cluster.hierarchy.leaves_list``).
    segments : ndarray of shape (s − 1, 4, 2)
        One ⊓-shaped path per merge, as (leaf position, height) points.
    height : float
        Height of the root.
    """

    def __init__(self, order, segments, height):
        self.order, self.segments, self.height = order, segments, height


def tree_layout(Z) -> TreeLayout:
    """Leaf order and merge paths of a linkage matrix Z ((s − 1)×4)."""
    from scipy.cluster.hierarchy import leaves_list

    Z = np.asarray(Z, dtype=np.float64)
    s = Z.shape[0] + 1
    order = leaves_list(Z)
    x = np.empty(2 * s - 1)
    y = np.zeros(2 * s - 1)
    x[order] = np.arange(s)
    segments = np.empty((s - 1, 4, 2))
    for i, (a, b, h, _) in enumerate(Z):
        a, b = int(a), int(b)
        x[s + i], y[s + i] = (x[a] + x[b]) / 2.0, h
        segments[i] = ((x[a], y[a]), (x[a], h), (x[b], h), (x[b], y[b]))
    return TreeLayout(order, segments, float(Z[:, 2].max()) if s > 1 else 0.0)


def draw_tree(ax, layout: TreeLayout, side: str, *, size: int | None = None, max_merges: int = 200, color="0.25",
              linewidth=0.7):
    """Draw ``layout`` on ``ax`` with its leaves towards the heatmap.

    Parameters
    ----------
    side : {"left", "top"}
        Where the tree sits: "left" of the rows (leaf positions downwards, as
        image rows) or on "top" of the columns.
    size : int, optional
        Number of display cells along the leaves (a downsampled heatmap);
        leaf positions are scaled to match.  Default: one cell per leaf.
    max_merges : int
        Draw only the last (highest, for a monotone linkage) merges: the
        thousands of low merges of a large tree would only paint a solid band.
    """
    from matplotlib.collections import LineCollection

    s = layout.order.size
    size = s if size is None else size
    segments = layout.segments[-max_merges:]
    pos = (segments[..., 0] + 0.5) * (size / s) - 0.5
    height = segments[..., 1]
    top = layout.height if layout.height > 0 else 1.0
    points = np.stack([pos, height], axis=-1) if side == "top" else np.stack([height, pos], axis=-1)
    ax.add_collection(LineCollection(points, colors=color, linewidths=linewidth))
    if side == "top":
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(0, top * 1.02)
    else:
        ax.set_ylim(size - 0.5, -0.5)
        ax.set_xlim(top * 1.02, 0)
    ax.set_axis_off()
