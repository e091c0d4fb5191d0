"""Objective history of a fit: the loss of the initial factors, then after each iteration."""

from __future__ import annotations

import numpy as np

from sparknmf.plots._figure import finish, new_figure

__all__ = ["history_plot"]


def _history(fit, whom):
    """The objective history of a FitResult, MultiFit (its best run), NMFModel, or a sequence of numbers."""
    best = getattr(fit, "best", fit)
    values = getattr(best, "history", best)
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{whom}: expected a fit with a history or a sequence of objectives, "
                        f"got {type(fit).__name__}") from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{whom}: the objective history is empty or not 1-D (shape {values.shape})")
    return values


def history_plot(fit, *, log=True, figsize=(5.0, 3.5), dpi=100, title="Objective by iteration", save=None):
    """The objective of one or several fits against the iteration.

    Parameters
    ----------
    fit : FitResult, MultiFit, NMFModel, sequence of float, or dict of them
        A dict draws one line per entry, its keys as the legend (e.g. to
        compare algorithms).  Iteration 0 is the initial factors.
    log : bool
        Logarithmic objective axis (when every value is positive).
    figsize, dpi, title, save :
        As :func:`sparknmf.plots.basis_map`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fits = fit if isinstance(fit, dict) else {None: fit}
    if not fits:
        raise ValueError("history_plot: the dict of fits is empty")
    series = {name: _history(value, f"history_plot[{name!r}]" if name is not None else "history_plot")
              for name, value in fits.items()}
    fig = new_figure(figsize, dpi)
    ax = fig.add_subplot()
    for name, values in series.items():
        ax.plot(np.arange(values.size), values, marker="o" if values.size < 30 else None, markersize=3,
                label=None if name is None else str(name))
    if log and all((v > 0).all() for v in series.values()):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, color="0.9")
    if len(series) > 1 or None not in series:
        ax.legend(frameon=False, fontsize="small")
    ax.set_title(title)
    return finish(fig, save)
