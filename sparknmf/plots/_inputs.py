"""What the plots accept: factors from arrays or fitted objects, names, and the consensus of several runs."""

from __future__ import annotations

import numpy as np

from sparknmf.analysis.consensus import Consensus

__all__ = ["as_factor", "as_names", "as_labels", "consensus_of", "check_count"]

_FIT_TYPES = "an ndarray, a FitResult, a MultiFit, an NMFModel or a MultiStartNMFModel"


def as_factor(obj, name: str, nonnegative: bool = True) -> np.ndarray:
    """Factor ``name`` ("W" or "H") of a fit object, or ``obj`` itself as a finite (non-negative) 2-D array."""
    value = getattr(obj, name, obj)
    try:
        X = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {_FIT_TYPES}, got {type(obj).__name__}") from None
    if X.ndim != 2 or X.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} has NaN or infinite entries; plots need finite factors")
    if nonnegative and (X < 0).any():
        raise ValueError(f"{name} has negative entries; these plots show non-negative factors")
    return X


def as_names(names, size: int, whom: str, default: str | None = None) -> list[str] | None:
    """``size`` display names: the given ones (checked), else ``default`` numbered from 1 (None without a default)."""
    if names is None:
        return None if default is None else [f"{default} {i + 1}" for i in range(size)]
    names = [str(x) for x in names]
    if len(names) != size:
        raise ValueError(f"{whom} has {len(names)} entries for {size} items; give one name per item")
    return names


def as_labels(labels, size: int, whom: str = "labels") -> np.ndarray | None:
    """Known classes as a 1-D array of ``size`` (any values), or None."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size != size:
        raise ValueError(f"{whom} has {labels.size} entries but there are {size} samples; give one class per sample")
    return labels


def check_count(value, whom: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{whom} must be an integer >= {low}, got {value!r}")
    return int(value)


def consensus_of(obj, k=None):
    """``(Consensus, k, total samples)`` from a multi-start fit or a consensus matrix.

    ``obj`` is a :class:`~sparknmf.analysis.clustering.MultiFit`, a
    :class:`~sparknmf.analysis.estimator.MultiStartNMFModel` or a square array C in
    [0, 1]; k (number of consensus clusters) comes from the fit unless given.
    A single fit has no consensus: ValueError.
    """
    runs = getattr(obj, "runs", None) or obj
    if hasattr(runs, "assignments") and hasattr(runs, "consensus"):
        if runs.nrun < 2:
            raise ValueError(
                "a consensus map needs several runs; this fit has nrun=1: fit with nrun >= 2, "
                "e.g. sparknmf.nmf(V, k, nrun=30)")
        k = runs.k if k is None else check_count(k, "k", 2)
        return runs.consensus(), int(k), int(runs.assignments.shape[1])
    if hasattr(obj, "W") and hasattr(obj, "H"):
        raise ValueError(
            f"a consensus map needs the assignments of several runs, but {type(obj).__name__} is a single fit: "
            "fit with sparknmf.nmf(V, k, nrun=30) or MultiStartNMF(k=, nrun=30)")
    try:
        C = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"consensus: expected a MultiFit, a MultiStartNMFModel or a square array, "
                        f"got {type(obj).__name__}") from None
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] < 2:
        raise ValueError(f"a consensus matrix must be square with at least 2 samples, got shape {C.shape}")
    if not np.isfinite(C).all() or C.min() < 0 or C.max() > 1:
        raise ValueError("a consensus matrix holds fractions of runs: every entry must be in [0, 1]")
    if k is not None:
        k = check_count(k, "k", 2)
    return Consensus(C, np.arange(C.shape[0])), k, C.shape[0]
