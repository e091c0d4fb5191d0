"""A MaskedALSModel's files: metadata (JSON) plus ``users/`` and ``items/`` Parquet rows with their ids.

:class:`ModelWriter` writes a model from the driver's arrays or, for the executors placement, from its
parameter blocks (the same rows either way); :func:`load_state` reads them back on the driver, or as
blocks in the executors when the model does not fit the driver's budget
(:func:`~sparknmf.engine.placement.choose_placement`).  No pickle: every field is JSON or Parquet.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute below

from sparknmf.engine import persistence
from sparknmf.engine.frames import release, truncate
from sparknmf.engine.placement import choose_placement
from sparknmf.kernels.als import SideSpec
from sparknmf.ratings.factor_frames import load_step, param_rows, read_side, slice_blocks, write_side
from sparknmf.ratings.store import SIDES, StepContext

__all__ = ["ModelWriter", "load_state"]


def load_state(path, spark, metadata) -> dict:
    """A saved model's state: parameters, ids and fit record (on the driver, or as blocks in the executors)."""
    try:
        specs = {side: SideSpec(**metadata["specs"][side]) for side in SIDES}
        (n, m), c, implicit = metadata["shape"], metadata["context"], bool(metadata["implicit"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}/metadata lacks the model's layout (specs, shape, context)") from None
    k = specs["user"].rank
    width_u = specs["user"].width + (k if implicit else 0) + int(c["drift"])
    width_i = specs["item"].width + (k if implicit else 0)
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (n, m)):
        raise ValueError(f"{path}/metadata: shape={metadata['shape']!r} is not two counts of rows")
    # a model that does not fit the driver's budget stays in the executors (implicit vectors: driver only)
    placement = choose_placement(spark, "driver" if implicit else "auto", n + m, max(width_u, width_i),
                                 param="the loaded model's placement")
    if placement == "executors":
        return _frames_state(path, spark, metadata, specs, (n, m), (width_u, width_i))
    users, user_ids = persistence.read_rows(spark, f"{path}/users", n, width_u)
    items, item_ids = persistence.read_rows(spark, f"{path}/items", m, width_i)
    _check_loaded(path, metadata, c)
    wu, wi = specs["user"].width, specs["item"].width
    context = StepContext(weighted=c["weighted"], timed=c["timed"], bins=c["bins"], day_range=tuple(c["dayRange"]),
                          mean_days=users[:, -1].copy() if c["drift"] else None, beta=c["beta"])
    return {
        "P": {"user": users[:, :wu].copy(), "item": items[:, :wi].copy()},
        "Z": users[:, wu : wu + k].copy() if implicit else np.zeros((n, k)),
        "Y": items[:, wi : wi + k].copy() if implicit else None, "specs": specs, "mu": float(metadata["mu"]),
        "ids": {"user": user_ids, "item": item_ids}, "idTypes": metadata["idTypes"], "context": context,
        "history": metadata["history"], "nIter": metadata["nIter"], "stopReason": metadata["stopReason"],
        "elapsed": metadata["elapsed"], "implicitPrefs": bool(metadata.get("implicitPrefs", False)),
        "seen": _read_seen(spark, f"{path}/seen", n, m) if metadata.get("implicitPrefs") else None,
    }


def _frames_state(path, spark, metadata, specs, counts, widths) -> dict:
    """A saved model's state as parameter blocks read by the executors (never collected)."""
    c = metadata["context"]
    _check_loaded(path, metadata, c)
    steps = dict(metadata.get("steps") or {})
    frames, ids, mean_days = {}, {}, None
    for (side, name), count, width in zip((("user", "users"), ("item", "items")), counts, widths):
        step = steps.get(side) or load_step(spark, count, width)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"{path}/metadata: steps.{side}={step!r} is not a positive integer")
        blocks, ids[side] = read_side(spark, f"{path}/{name}", count, width, step)
        blocks = truncate(blocks)
        if side == "user" and c["drift"]:  # the drift's mean days go to the driver with the context (n values)
            rows = param_rows(blocks, step, width - 1, width).toArrow()
            mean_days = np.zeros(count)
            mean_days[rows.column("index").to_numpy()] = pa.compute.list_flatten(rows.column("values")).to_numpy()
        frames[side] = truncate(slice_blocks(blocks, specs[side].width)) if width != specs[side].width else blocks
        if frames[side] is not blocks:
            release(blocks)
        steps[side] = step
    context = StepContext(weighted=c["weighted"], timed=c["timed"], bins=c["bins"], day_range=tuple(c["dayRange"]),
                          mean_days=mean_days, beta=c["beta"])
    return {
        "frames": frames, "steps": steps, "counts": dict(zip(SIDES, counts)), "idFrames": ids,
        "P": None, "Z": None, "Y": None, "specs": specs, "mu": float(metadata["mu"]),
        "ids": {"user": None, "item": None}, "idTypes": metadata["idTypes"], "context": context,
        "history": metadata["history"], "nIter": metadata["nIter"], "stopReason": metadata["stopReason"],
        "elapsed": metadata["elapsed"], "implicitPrefs": bool(metadata.get("implicitPrefs", False)),
        "seen": _seen_frame(spark, f"{path}/seen", *counts) if metadata.get("implicitPrefs") else None,
    }


def _check_loaded(path, metadata, context) -> None:
    """The numbers and ids of a model's metadata: ``ValueError`` naming the file (the arrays are checked as read)."""
    numbers = {"mu": metadata.get("mu"), "context.beta": context.get("beta")}
    day_range = context.get("dayRange")
    if not (isinstance(day_range, list) and len(day_range) == 2):
        raise ValueError(f"{path}/metadata: context.dayRange={day_range!r} is not a pair of numbers")
    numbers.update({"context.dayRange[0]": day_range[0], "context.dayRange[1]": day_range[1]})
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{path}/metadata: {name}={value!r} is not a finite number (a fitted model has none)")
    types = metadata.get("idTypes")
    if not (isinstance(types, dict) and all(isinstance(types.get(side), str) for side in SIDES)):
        raise ValueError(f"{path}/metadata: idTypes={types!r} must give the Spark type of the user and item ids")


def _read_seen(spark, path, n, m):
    """The training events of a saved implicit model (n×m CSR of ones); ValueError on indices out of range."""
    import scipy.sparse as sp

    table = spark.read.parquet(path).toArrow()
    users = table.column("user").to_numpy().astype(np.int64)
    items = table.column("item").to_numpy().astype(np.int64)
    if users.size and (users.min() < 0 or users.max() >= n or items.min() < 0 or items.max() >= m):
        raise ValueError(f"{path}: event indices outside the model's {n} users and {m} items")
    return sp.csr_matrix((np.ones(users.size, np.float32), (users, items)), shape=(n, m))


def _seen_frame(spark, path, n, m):
    """:func:`_read_seen` left in the executors: a DataFrame ``(user int, item int)``, checked by one job."""
    from pyspark.sql import functions as F

    frame = spark.read.parquet(path).select(F.col("user").cast("int"), F.col("item").cast("int"))
    bad = frame.filter((F.col("user") < 0) | (F.col("user") >= n) | (F.col("item") < 0) | (F.col("item") >= m)
                       | F.col("user").isNull() | F.col("item").isNull())
    if bad.limit(1).count():
        raise ValueError(f"{path}: event indices outside the model's {n} users and {m} items")
    return frame


def _spec_dict(spec: SideSpec) -> dict:
    return {"rank": spec.rank, "bias": spec.bias, "kind": spec.kind, "bins": spec.bins}


class ModelWriter(persistence.ParamsWriter):
    """Writes a MaskedALSModel: metadata + ``users/`` and ``items/`` Parquet rows with their ids.

    User rows are ``[params | z (implicit) | mean day (drift)]``, item rows ``[params | y (implicit)]``.
    """

    def saveImpl(self, path):
        model, spark = self.instance, self.sparkSession
        state = model._require()
        ctx = state["context"]
        implicit = state["Y"] is not None
        if state.get("frames"):
            self._save_frames(path, model, state)
            return
        users = [state["P"]["user"]] + ([state["Z"]] if implicit else [])
        users += [ctx.mean_days[:, None]] if ctx.mean_days is not None else []
        items = [state["P"]["item"]] + ([state["Y"]] if implicit else [])
        extra = _extra_metadata(state, implicit)
        persistence.write_metadata(model, path, spark, extra, overwrite=self.shouldOverwrite)
        for name, parts, side in (("users", users, "user"), ("items", items, "item")):
            persistence.write_rows(spark, f"{path}/{name}", np.hstack(parts), state["ids"][side],
                                   overwrite=self.shouldOverwrite)
        if state.get("seen") is not None:  # an implicit model's training events (user, item indices)
            pairs = state["seen"].tocoo()
            table = pa.table({"user": pa.array(pairs.row, pa.int32()), "item": pa.array(pairs.col, pa.int32())})
            self._save_seen(path, spark.createDataFrame(table))

    def _save_seen(self, path, seen):
        """The training events ``(user int, item int)`` of an implicit model as Parquet at ``path/seen``."""
        seen.write.mode("overwrite" if self.shouldOverwrite else "errorifexists").parquet(f"{path}/seen")

    def _save_frames(self, path, model, state):
        """Metadata from the driver, parameter rows written by the executors (the driver placement's format)."""
        extra = {**_extra_metadata(state, False), "steps": dict(state["steps"])}
        persistence.write_metadata(model, path, self.sparkSession, extra, overwrite=self.shouldOverwrite)
        days = state["context"].mean_days
        for name, side in (("users", "user"), ("items", "item")):
            write_side(model._frame_side(side), persistence.check_path(f"{path}/{name}"),
                       extra=days if side == "user" else None, overwrite=self.shouldOverwrite)
        if state.get("seen") is not None:  # written by the executors, never collected
            self._save_seen(path, state["seen"])


def _extra_metadata(state, implicit) -> dict:
    """The model's fields in its metadata (layout, μ, ids' types, fit record)."""
    ctx = state["context"]
    counts = state.get("counts") or {side: len(state["ids"][side]) for side in SIDES}
    return {
        "specs": {side: _spec_dict(state["specs"][side]) for side in SIDES}, "mu": state["mu"],
        "implicit": implicit, "idTypes": state["idTypes"], "history": state["history"], "nIter": state["nIter"],
        "stopReason": state["stopReason"], "elapsed": state["elapsed"],
        "implicitPrefs": bool(state.get("implicitPrefs", False)),
        "context": {"weighted": ctx.weighted, "timed": ctx.timed, "bins": ctx.bins,
                    "dayRange": list(ctx.day_range), "drift": ctx.mean_days is not None, "beta": ctx.beta},
        "shape": [counts["user"], counts["item"]],
    }
