"""Progress people can see: the library's log lines shown on request, without touching :mod:`logging`.

Every loop logs its progress on the ``"sparknmf"`` logger at INFO: NMF's
``iteration 3 objective 12.5 elapsed 0.041s`` (:mod:`sparknmf.decomposition.factorize`),
masked ALS's ``ALS iteration ...``, multi-start runs, and each rank of
:func:`~sparknmf.rank_survey` as it finishes (on ``"sparknmf.survey"``).
Python shows nothing below WARNING unless logging is configured, so two
switches make these lines visible:

* ``verbose`` -- scikit-learn's name -- on :func:`~sparknmf.nmf`,
  :func:`~sparknmf.rank_survey` and as a Param of the ``NMF`` and ``MaskedALS``
  Estimators: for the duration of that one call, a :class:`ProgressHandler`
  prints the lines (``0``: nothing, the default; ``1``: progress; ``2``: for
  :func:`~sparknmf.rank_survey`, also every run's iterations);
* :func:`show_progress` installs the same handler until it is called with
  ``False``: every later fit prints its progress.

Lines go to ``sys.stdout`` as it is when a line is written, so a notebook
shows them under the cell that runs the fit.  Only the driver's lines are
shown: runs executed inside Spark tasks (multi-start ``mode="tasks"``) log
in the executors.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import sys

__all__ = ["ProgressHandler", "check_verbose", "progress", "show_progress"]

_LOGGER = logging.getLogger("sparknmf")
_FORMAT = "[sparknmf] %(message)s"


class ProgressHandler(logging.StreamHandler):
    """A handler that writes the ``"sparknmf"`` log lines, one per line, prefixed ``[sparknmf]``.

    Parameters
    ----------
    stream : file-like, optional
        Where to write; None (default): ``sys.stdout`` at the time of each line.
    names : tuple of str, optional
        Show only records of these loggers (e.g. ``("sparknmf.survey",)``); None: all.
    """

    def __init__(self, stream=None, names=None):
        super().__init__(stream if stream is not None else sys.stdout)
        self._follow_stdout = stream is None
        self.setFormatter(logging.Formatter(_FORMAT))
        if names is not None:
            names = tuple(names)
            self.addFilter(lambda record: record.name in names)

    def emit(self, record):
        if self._follow_stdout:
            self.stream = sys.stdout
        super().emit(record)


def check_verbose(verbose, whom: str) -> int:
    """``verbose`` as an int >= 0 (True is 1); a ValueError naming ``whom`` otherwise, before any work."""
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise ValueError(f"{whom}: invalid verbose={verbose!r}; it must be an integer >= 0 or a bool "
                         "(0: silent, 1: progress, 2: more detail)")
    return int(verbose)


def _attach(handler: ProgressHandler) -> int:
    """Add ``handler`` to the ``"sparknmf"`` logger and let INFO through; returns the level to restore."""
    level = _LOGGER.level
    _LOGGER.addHandler(handler)
    if _LOGGER.getEffectiveLevel() > logging.INFO:
        _LOGGER.setLevel(logging.INFO)
    return level


@contextlib.contextmanager
def progress(verbose, whom: str = "verbose", *, summary=None, stream=None):
    """Show the progress lines of the calls inside the block when ``verbose`` asks for them.

    Parameters
    ----------
    verbose : int or bool
        0 / False: do nothing.  1 / True: show progress; with ``summary``,
        only the records of those loggers.  2 or more: show every record.
    whom : str
        Name used in the error message for a bad ``verbose``.
    summary : tuple of str, optional
        Logger names shown at ``verbose=1`` (e.g. ``("sparknmf.survey",)``).
    stream : file-like, optional
        Where to write (default: the current ``sys.stdout``).
    """
    verbose = check_verbose(verbose, whom)
    if not verbose:
        yield
        return
    handler = ProgressHandler(stream, summary if verbose == 1 else None)
    level = _attach(handler)
    try:
        yield
    finally:
        _LOGGER.removeHandler(handler)
        _LOGGER.setLevel(level)


_installed: list = []  # the handler of show_progress and the level it replaced


def show_progress(enabled: bool = True, *, stream=None) -> None:
    """Print the library's progress lines from now on (``enabled=False``: stop, restoring the logger's level).

    Parameters
    ----------
    enabled : bool
    stream : file-like, optional
        Where to write (default: ``sys.stdout`` at the time of each line).

    Examples
    --------
    >>> import numpy as np, sparknmf
    >>> sparknmf.show_progress()
    >>> fit = sparknmf.nmf(np.ones((4, 3)), 1, max_iter=1, tol=0)  # doctest: +ELLIPSIS
    [sparknmf] iteration 0 objective ... elapsed ...s
    [sparknmf] iteration 1 objective ... elapsed ...s
    >>> sparknmf.show_progress(False)
    """
    if enabled not in (True, False):
        raise ValueError(f"show_progress: enabled must be True or False, got {enabled!r}")
    while _installed:  # one handler at most: calling it twice does not print lines twice
        handler, level = _installed.pop()
        _LOGGER.removeHandler(handler)
        _LOGGER.setLevel(level)
    if enabled:
        handler = ProgressHandler(stream)
        _installed.append((handler, _attach(handler)))
