"""Declarative Param checks and generated accessors for pyspark.ml classes.

pyspark's Python ``Param`` has only a type converter.  Each sparknmf Params
class declares a ``_constraints`` table ``{name: constraint}``;
:func:`check_params` runs it (plus any cross-parameter rule) in ``_fit``,
before any Spark job, and raises ``ValueError`` naming the parameter, the
value and what is allowed.

Numbers are finite: an :class:`Interval` refuses NaN always, and ±inf unless
that bound is itself infinite (``Interval(0, math.inf)`` admits ``inf``).  No
sparknmf Param takes an infinite value: every "no limit" has its own finite
spelling (``timeLimit=0``, ``maxIter``).  The job configuration
(:mod:`sparknmf.pipeline.jobconf`) applies the same rule to every number.

:func:`with_accessors` generates ``getFoo``/``setFoo`` for every Param a class
declares, so defaults live only in ``_setDefault``.
"""

from __future__ import annotations

import math
import numbers

from pyspark.ml.param import Param, Params, TypeConverters

__all__ = ["HasExecutionMode", "HasVerbose", "Interval", "OneOf", "RangePair", "check_param", "check_params",
           "with_accessors"]


class Interval:
    """A finite number in [low, high] (either bound may be None, either may be open); ``integer`` demands an int.

    NaN is never in an interval (``nan < low`` and ``nan > high`` are both False, so it is refused
    explicitly), and neither is ±inf unless the bound on that side is ±inf itself.
    """

    def __init__(self, low=None, high=None, *, integer=False, open_low=False, open_high=False):
        self.low, self.high, self.integer = low, high, integer
        self.open_low, self.open_high = open_low, open_high

    def describe(self, value=None):
        """What is allowed; "a finite number" when ``value`` (the one refused) is NaN or infinite."""
        real = isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
        finite = "a finite number" if real and not math.isfinite(value) else "a number"
        kind = "an integer" if self.integer else finite
        low = "" if self.low is None else f" {'>' if self.open_low else '>='} {self.low}"
        high = "" if self.high is None else f"{' and' if low else ''} {'<' if self.open_high else '<='} {self.high}"
        return f"{kind}{low}{high}"

    def _finite_or_allowed(self, value) -> bool:
        if isinstance(value, numbers.Integral) or math.isfinite(value):
            return True
        bound = self.high if value > 0 else self.low  # NaN: neither side, and NaN == bound is False
        return bound is not None and bound == value

    def __call__(self, value) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not self._finite_or_allowed(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)


class OneOf:
    """A value from a fixed collection (e.g. the keys of a registry)."""

    def __init__(self, options):
        self.options = tuple(options)

    def describe(self, value=None):
        return f"one of {list(self.options)}"

    def __call__(self, value) -> bool:
        return value in self.options


class RangePair:
    """``[]`` (no range) or ``[low, high]``: two finite numbers with ``low < high``."""

    def describe(self, value=None):
        return "[] or [low, high] of two finite numbers with low < high"

    def __call__(self, value) -> bool:
        if value is None or (isinstance(value, (list, tuple)) and not value):
            return True
        return (isinstance(value, (list, tuple)) and len(value) == 2
                and all(Interval()(v) for v in value) and value[0] < value[1])


def check_param(instance, name: str, value, allowed) -> None:
    """Raise ``ValueError`` naming ``instance``'s class, the Param, the value and what is allowed."""
    if not allowed(value):
        raise ValueError(f"{type(instance).__name__}: invalid {name}={value!r}; it must be {allowed.describe(value)}")


def check_params(instance) -> None:
    """Check every Param of ``instance`` named in its class's ``_constraints`` table."""
    for name, allowed in instance._constraints.items():
        param = instance.getParam(name)
        if instance.isDefined(param):
            check_param(instance, name, instance.getOrDefault(param), allowed)


def with_accessors(cls):
    """Add ``getX``/``setX`` for each Param declared in ``cls`` itself, unless defined."""
    for name, value in list(vars(cls).items()):
        if not isinstance(value, Param):
            continue
        cap = name[0].upper() + name[1:]

        def getter(self, _name=name):
            return self.getOrDefault(_name)

        def setter(self, value, _name=name):
            return self._set(**{_name: value})

        getter.__doc__ = f"Gets the value of {name} or its default value."
        setter.__doc__ = f"Sets the value of :py:attr:`{name}`."
        getter.__name__, setter.__name__ = f"get{cap}", f"set{cap}"
        for method in (getter, setter):
            if method.__name__ not in vars(cls):
                setattr(cls, method.__name__, method)
    return cls


@with_accessors
class HasExecutionMode(Params):
    """The ``executionMode`` Param of estimators that fit on Spark blocks (:mod:`sparknmf.engine.resident`)."""

    executionMode = Param(Params._dummy(), "executionMode",
                          "spark backend: 'resident' (one job whose tasks keep the blocks and serve every half-step), "
                          "'jobs' (a Spark job per half-step) or 'auto' (resident in classic sessions)",
                          typeConverter=TypeConverters.toString)

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(executionMode="auto")


def _to_verbose(value):
    """``verbose`` as an int, booleans included (scikit-learn accepts ``verbose=True``)."""
    return int(value) if isinstance(value, bool) else TypeConverters.toInt(value)


@with_accessors
class HasVerbose(Params):
    """The ``verbose`` Param (scikit-learn's name): show the fit's progress lines (:mod:`sparknmf.progress`)."""

    verbose = Param(Params._dummy(), "verbose",
                    "show the fit's progress (iteration, objective, elapsed) while it runs: 0 = silent, 1 = progress",
                    typeConverter=_to_verbose)

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(verbose=0)
