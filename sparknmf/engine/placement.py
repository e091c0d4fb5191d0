"""Where a fit's factors live between half-steps: on the driver, or in the executors (``factorPlacement``).

``driver``: the factors (NMF's W and H, MaskedALS's user and item parameters)
are numpy arrays on the driver; each half-step sends them to the blocks and
collects the new rows.  Fastest while they are small.

``executors``: the factors are cached DataFrames of row blocks keyed by block;
each half-step joins V's blocks with the factor blocks they need and writes the
new factor blocks as a new cached DataFrame.  Only k×k Grams, data terms, counts
and the objective reach the driver, so the driver's memory and
``spark.driver.maxResultSize`` no longer bound the factors (MLlib's design).

``auto`` picks ``executors`` when the factors' bytes exceed the driver's budget
(:func:`driver_budget`): half of ``spark.driver.maxResultSize`` (0: no limit) and
a quarter of ``spark.driver.memory``, the same shares that decide whether
ratings are collected to the driver.

``executors`` runs every half-step as a Spark job, also under
``executionMode="resident"`` (:func:`warn_resident_runs_jobs`): resident tasks
receive their factor rows from the driver over its socket, the traffic this
placement exists to avoid.
"""

from __future__ import annotations

import warnings

from sparknmf.engine.session import conf_bytes

__all__ = ["PLACEMENTS", "DRIVER_SHARES", "driver_budget", "factor_bytes", "choose_placement",
           "warn_resident_runs_jobs"]

PLACEMENTS = ("auto", "driver", "executors")
# what a driver may hold: these shares of its limits (a quarter of the heap, which also receives collected batches)
DRIVER_SHARES = (("spark.driver.maxResultSize", 0.5), ("spark.driver.memory", 0.25))


def driver_budget(spark) -> tuple[float, str]:
    """``(bytes, setting)``: the most the driver should hold or collect, and the setting that bounds it.

    The smaller of the :data:`DRIVER_SHARES` of the session's limits; a limit of
    0 (``maxResultSize=0``: unlimited) does not count.
    """
    budgets = [(share * conf_bytes(spark, key, "1g"), key) for key, share in DRIVER_SHARES]
    budgets = [budget for budget in budgets if budget[0]]
    return min(budgets) if budgets else (float("inf"), "")


def factor_bytes(rows: int, width: int, itemsize: int = 8) -> int:
    """Bytes of ``rows`` factor rows of ``width`` values (k plus biases, time terms, ...)."""
    return int(rows) * int(width) * int(itemsize)


def choose_placement(spark, requested: str, rows: int, width: int, *, param: str = "factorPlacement",
                     itemsize: int = 8) -> str:
    """``"driver"`` or ``"executors"`` for factors of ``rows`` (n + m) rows of ``width`` values.

    ``auto`` picks ``executors`` when :func:`factor_bytes` exceed :func:`driver_budget`.
    A forced ``driver`` beyond the budget is a ValueError, raised before any
    work, naming the sizes, the limit and the Param to change.
    """
    if requested not in PLACEMENTS:
        raise ValueError(f"{param} must be one of {list(PLACEMENTS)}, got {requested!r}")
    if requested == "executors":
        return requested
    size = factor_bytes(rows, width, itemsize)
    budget, setting = driver_budget(spark)
    if size <= budget:
        return "driver"
    if requested == "auto":
        return "executors"
    raise ValueError(
        f"{param}='driver': the factors take {size / 2**20:.1f} MiB ({rows} rows × {width} values × {itemsize} "
        f"bytes), more than the driver's budget of {budget / 2**20:.1f} MiB (set by {setting}); use "
        f"{param}='executors' or 'auto', or raise {setting}"
    )


def warn_resident_runs_jobs(execution: str, requested: str, *, stacklevel: int = 3) -> None:
    """Warn once per fit that ``executionMode='resident'`` runs Spark jobs when the factors are in the executors.

    ``execution`` is the fit's ``executionMode``, ``requested`` its
    ``factorPlacement`` (``"executors"``, or ``"auto"`` that chose it).  Nothing
    happens unless ``execution`` is ``"resident"``.
    """
    if execution != "resident":
        return
    chosen = "" if requested == "executors" else f" (chosen by factorPlacement={requested!r})"
    warnings.warn(
        f"executionMode='resident' with factorPlacement='executors'{chosen}: the half-steps run as Spark jobs, "
        "since resident tasks would route every factor row through the driver's socket, which the executors "
        "placement exists to avoid; set executionMode='jobs' or 'auto' to silence this warning, or "
        "factorPlacement='driver' (factors within the driver's budget) for resident tasks",
        UserWarning, stacklevel=stacklevel)
