"""Exceptions raised by sparknmf.

* :class:`InvalidInputError` (a ``ValueError``) -- the data cannot be
  factorised as given: negative or non-finite entries, empty input,
  duplicate coordinates, unknown columns, malformed files.  Raised before
  any factorisation work starts.
* :class:`ModelFitError` (a ``RuntimeError``) -- the numerics failed during
  a fit (NaN or infinite factors or objective); the message names the
  iteration and suggests a remedy.
* Bad parameter values raise a plain ``ValueError`` naming the parameter,
  the value and what is allowed.
"""

__all__ = ["ConvergenceWarning", "InvalidInputError", "ModelFitError"]


class InvalidInputError(ValueError):
    """The input data is not a valid non-negative matrix for this operation."""


class ModelFitError(RuntimeError):
    """A fit produced NaN or infinite values."""


class ConvergenceWarning(UserWarning):
    """A fit stopped at ``maxIter`` before meeting its tolerance."""
