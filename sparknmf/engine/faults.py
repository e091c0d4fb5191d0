"""Fault injection for the reliability tests: make one Spark task fail, once.

Off unless the environment variable ``SPARKNMF_FAULTS`` names a folder (set
it before the session starts, so that Python workers inherit it).  Every
block task calls :func:`inject` with its stage and block key; when the file
``<folder>/<stage>-<key>`` exists the task claims it (removes it) and then

* raises ``RuntimeError`` when the file holds ``raise``, or
* kills its Python worker with ``os._exit(1)`` when it holds ``exit``.

Spark retries the task (``spark.task.maxFailures``; in local mode only with
``local[N, F]``), and the retry finds no file.  A test drops the file from a
fit's ``callback`` to fail a task mid-fit.  Stages: ``nmf-W``, ``nmf-H``
(NMF half-steps) and ``als-user``, ``als-item`` (MaskedALS block jobs).
With the variable unset the cost is one environment lookup per block.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV", "inject", "plant"]

ENV = "SPARKNMF_FAULTS"
ACTIONS = ("raise", "exit")


def plant(folder, stage: str, key: int, action: str = "raise") -> Path:
    """Arm the fault: the next task of ``stage`` on block ``key`` fails with ``action``."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    marker = Path(folder) / f"{stage}-{key}"
    marker.write_text(action)
    return marker


def inject(stage: str, key: int) -> None:
    """Fail this task if a fault is armed for ``(stage, key)`` (see the module docstring)."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    marker = Path(folder) / f"{stage}-{key}"
    try:
        action = marker.read_text()
        marker.unlink()  # claims the fault: a concurrent or retried task finds nothing
    except FileNotFoundError:
        return
    if action == "exit":
        os._exit(1)
    raise RuntimeError(f"sparknmf: fault injected in {stage} block {key}")
