"""Figure plumbing shared by every plot: the optional matplotlib import, headless figures, saving, notes.

Figures are plain :class:`matplotlib.figure.Figure` objects with an Agg
canvas attached: no pyplot, no global state, no display needed (headless
servers and Spark drivers), and nothing to close afterwards.  A PNG saved
by :func:`save_figure` is exactly ``figsize × dpi`` pixels (no tight
bounding box), the size each plot function documents.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = [
    "PLOT_EXTRA", "FORMATS", "PALETTES", "palette_colors", "require_matplotlib", "new_figure", "save_figure", "finish",
    "add_note",
]

PLOT_EXTRA = 'pip install "sparknmf[plot]"'
FORMATS = ("png", "svg")
# categorical palettes: the factors keep the same colour on every map; classes use a different set
PALETTES = {
    "basis": ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
              "#17becf"),
    "classes": ("#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#b3b3b3"),
}


def palette_colors(palette: str, count: int) -> list:
    """``count`` RGB colours of a categorical palette: "basis" (factors, the same on every plot) or "classes"."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    base = PALETTES[palette]
    if count > len(base):
        cmap = colormaps["tab20" if palette == "basis" else "Set3"]
        base = [cmap(i % cmap.N) for i in range(count)]
    return [to_rgb(c) for c in base[:count]]


def require_matplotlib():
    """The ``matplotlib`` module, or an ImportError that names the extra to install."""
    try:
        import matplotlib
        from matplotlib.backends import backend_agg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"sparknmf's plots need matplotlib, the optional extra 'plot': {PLOT_EXTRA} ({err})"
        ) from err
    return matplotlib


def _check_size(figsize, dpi):
    try:
        width, height = (float(x) for x in figsize)
    except (TypeError, ValueError):
        raise ValueError(f"figsize must be (width, height) in inches, got {figsize!r}") from None
    if not (width > 0 and height > 0):
        raise ValueError(f"figsize must be positive, got {figsize!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not dpi > 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    return (width, height), float(dpi)


def new_figure(figsize, dpi, *, constrained: bool = True):
    """An empty headless Figure (Agg canvas) of ``figsize`` inches at ``dpi``.

    ``constrained=False`` leaves the layout to the caller (fixed margins),
    for plots that place text by measuring it.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figsize, dpi = _check_size(figsize, dpi)
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    fig.sparknmf = {"notes": []}
    return fig


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG or SVG, chosen by the file's suffix; returns the path.

    The PNG is ``figsize × dpi`` pixels.  Missing parent folders are created.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"save: the file name must end in one of {['.' + f for f in FORMATS]}, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=fig.dpi)
    return path


def finish(fig, save=None):
    """Show the notes collected by :func:`add_note`, save if asked, return the Figure."""
    notes = getattr(fig, "sparknmf", {}).get("notes")
    if notes:
        width = max(20, int(fig.get_figwidth() * 15))  # characters of a "small" font per line, roughly
        fig.supxlabel("\n".join(textwrap.fill(note, width) for note in notes), fontsize="small", color="0.35")
    if save is not None:
        save_figure(fig, save)
    return fig


def add_note(fig, text: str) -> None:
    """A remark printed under the figure (e.g. that a matrix was downsampled for display)."""
    fig.sparknmf["notes"].append(text)
