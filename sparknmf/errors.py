"""Exceptions raised by sparknmf.

* :class:`InvalidInputError` (a ``ValueError``) -- the data cannot be
  factorised as given: negative or non-finite entries, empty input,
  duplicate coordinates, unknown columns, malformed files.  Raised before
  any factorisation work starts.
* :class:`ModelFitError` (a ``RuntimeError``) -- the numerics failed during
  a fit: NaN or infinite factors or objective, or an objective that grew to
  more than :data:`DIVERGENCE` times the first one (every update rule and
  the ALS half-steps decrease it, so that is divergence); the message names
  the iteration and suggests a remedy.  :func:`check_objective` and
  :func:`check_factors` are these checks, shared by the NMF and MaskedALS
  loops: a fit never returns NaN factors.
* Bad parameter values raise a plain ``ValueError`` naming the parameter,
  the value and what is allowed.
"""

import numpy as np

__all__ = ["ConvergenceWarning", "InvalidInputError", "ModelFitError", "check_factors", "check_objective"]

DIVERGENCE = 10.0


class InvalidInputError(ValueError):
    """The input data is not a valid non-negative matrix for this operation."""


class ModelFitError(RuntimeError):
    """A fit produced NaN or infinite values."""


class ConvergenceWarning(UserWarning):
    """A fit stopped at ``maxIter`` before meeting its tolerance."""


def _fault(whom: str, iteration: int, problem: str, remedy: str) -> ModelFitError:
    return ModelFitError(f"{whom}: {problem} at iteration {iteration}; the fit was stopped. {remedy}")


def check_objective(whom: str, iteration: int, objective: float, history, remedy: str) -> None:
    """Raise :class:`ModelFitError` when ``objective`` is NaN/inf or has diverged from ``history[0]``."""
    if not np.isfinite(objective):
        raise _fault(whom, iteration, f"NaN or infinite objective ({objective})", remedy)
    if history and history[0] > 0 and objective > DIVERGENCE * history[0]:
        raise _fault(whom, iteration, f"the objective diverged to {objective:.6g}, more than {DIVERGENCE:g} times "
                                      f"the first one ({history[0]:.6g})", remedy)


def check_factors(whom: str, iteration: int, remedy: str, factors: dict) -> None:
    """Raise :class:`ModelFitError` naming the first of ``factors`` ({name: array}) with NaN or infinite entries.

    A factor's Gram (k×k) is as good a witness as the factor and costs nothing: a NaN or infinite entry of X
    makes XᵀX (or 1ᵀX) non-finite, and so does an overflow of X.
    """
    for name, values in factors.items():
        if not np.isfinite(values).all():
            raise _fault(whom, iteration, f"NaN or infinite values in {name}", remedy)
