"""Ratings on Spark: validated, indexed, stored twice (by user block and by item block).

Layout
------
Users and items keep their own ids (any type); they are mapped once to dense
indices in sorted order.  Users are cut into ``p`` contiguous user blocks of
``user_step`` users, items into ``q`` item blocks of ``item_step`` items.  The
ratings are stored twice, in one cached DataFrame with a row per block
``(side int, key int, block binary, aux binary, ...)``:

* side 0, by user block: ``block`` is a CSR matrix (users of the block × all
  items) whose values are the ratings, ``aux`` the per-rating weight and day
  (when used), in the CSR order;
* side 1, by item block: the same ratings as (items of the block × all users).

Three users, four items, two user blocks (user_step 2), two item blocks::

    ratings (user, item, r)      user blocks (side 0)         item blocks (side 1)
    ("ann", "m1", 4)             key 0: ann, bob × m1..m4     key 0: m1, m2 × ann, bob, cy
    ("ann", "m3", 2)                 ann: m1=4, m3=2              m1: ann=4, cy=5
    ("bob", "m2", 5)                 bob: m2=5                    m2: bob=5
    ("cy",  "m1", 5)             key 1: cy × m1..m4           key 1: m3, m4 × ann, bob, cy
    ("cy",  "m4", 1)                 cy: m1=5, m4=1               m3: ann=2;  m4: cy=1

The DataFrame has as many partitions as the side with more blocks has blocks,
at most one per task slot; block ``key`` of either side sits in partition
``key % partitions``, so none is empty.

Updating the users needs, for the ratings of a user block, only the item
factors of the items they rated and gives the new rows of the block.  A fit
runs its half-steps on resident tasks (:mod:`sparknmf.engine.resident`: one barrier
job whose tasks decode their blocks once) or as one Spark job per half-step
over one side's blocks; the new rows come back to the driver.  The factors
live on the driver between half-steps, so the plan never grows and no
checkpoint directory is needed however many iterations run.  A resident task
receives only the rows of the other side its blocks refer to (MLlib's
out-block routing; ``needs`` lists them per block), unless shipping all of
them is no more bytes; a job per half-step carries them all in its function,
which Spark broadcasts once per executor.
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from sparknmf.engine import codec, faults
from sparknmf.engine.calls import Call, block_function, block_type
from sparknmf.engine.ingest import check_columns, distinct_ids
from sparknmf.engine.resident import resident_fit, task_state
from sparknmf.engine.session import conf_bytes, describe_jobs, is_local_master, parallelism, placement_keys
from sparknmf.errors import InvalidInputError
from sparknmf.kernels.als import Entries, drift
from sparknmf.kernels.updates import one_blas_thread

__all__ = ["DUPLICATE_POLICIES", "RatingBlocks", "StepContext", "build_entries", "ingest_ratings", "use_driver"]

DUPLICATE_POLICIES = ("error", "mean", "last")
SECONDS_PER_DAY = 86400.0
_BLOCK_DDL = (
    "side int, key int, block binary, aux binary, nnz long, wsum double, wrsum double, days binary, needs binary, "
    "problem string"
)
_PIECE_DDL = "_p int, side int, key int, piece binary"
_PIECE_SCHEMA = pa.schema([("_p", pa.int32()), ("side", pa.int32()), ("key", pa.int32()), ("piece", pa.binary())])
SIDES = ("user", "item")
# backend="auto" on a local master: the collected ratings take at most these shares of the driver's limits
# (a quarter of the heap, which also holds the cached input and receives the collected batches)
_DRIVER_SHARES = (("spark.driver.maxResultSize", 0.5), ("spark.driver.memory", 0.25))
_BLOCK_SCHEMA = pa.schema([
    ("side", pa.int32()), ("key", pa.int32()), ("block", pa.binary()), ("aux", pa.binary()), ("nnz", pa.int64()),
    ("wsum", pa.float64()), ("wrsum", pa.float64()), ("days", pa.binary()), ("needs", pa.binary()),
    ("problem", pa.string()),
])
_TARGET_BLOCK_NNZ = 1 << 22


@block_type
@dataclass
class StepContext:
    """Everything a task needs besides its block: small, shipped with the function.

    ``bins``/``day_range`` give each rating's time bin, ``mean_days`` (n users)
    and ``beta`` its user drift ``dev_u(t)``; ``weighted`` says whether the aux
    payload starts with a weight column.
    """

    weighted: bool = False
    timed: bool = False
    bins: int = 0
    day_range: tuple = (0.0, 1.0)
    mean_days: np.ndarray | None = None
    beta: float = 0.4

    def time_terms(self, days: np.ndarray, users: np.ndarray):
        """``(bins, dev)`` of ratings made at ``days`` by ``users`` (indices); each None when off.

        Days outside the training range fall in the first or last bin.
        """
        bins = dev = None
        if self.bins:
            low, high = self.day_range
            width = max(high - low, 1e-12) / self.bins
            bins = np.clip(((days - low) // width).astype(np.int64), 0, self.bins - 1)
        if self.mean_days is not None:
            dev = drift(days, self.mean_days[users], self.beta)
        return bins, dev


def build_entries(side: str, key: int, step: int, payload: bytes, aux: bytes | None, ctx: StepContext) -> Entries:
    """Entries of one stored block (side ``"user"`` or ``"item"``), with bins and drift filled in."""
    csr = codec.decode(payload)
    columns = codec.decode(aux) if aux else np.zeros((csr.nnz, 0))
    weights = columns[:, 0] if ctx.weighted else None
    bins = dev = None
    if ctx.timed:
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        users = key * step + rows if side == "user" else csr.indices
        bins, dev = ctx.time_terms(columns[:, int(ctx.weighted)], users)
    return Entries(csr.indptr.astype(np.int64), csr.indices.astype(np.int64), np.asarray(csr.data, np.float64),
                   weights=weights, bins=bins, dev=dev)


@dataclass
class RatingBlocks:
    """Ratings indexed and stored by user block and by item block (module docstring).

    Attributes
    ----------
    spark : SparkSession
    user_ids, item_ids : pyarrow Array
        Ids in index order (sorted).
    store : cached DataFrame ``(side int, key int, block binary, aux binary, ...)``
        Both copies, in ``partitions`` partitions (≤ the task slots): block
        ``key`` of either side sits in partition ``key % partitions``.
    steps : dict side -> rows per block
    nnz : int
    mu : float
        Weighted mean rating.
    context : StepContext
    id_types : dict side -> Spark DDL type of the ids
    local : dict side -> {"key", "block", "aux"} lists, or None
        Blocks held on the driver (local backend) instead of in ``store``.
    partitions : int
    execution : str
        How fits run on ``store``: one of :data:`~sparknmf.engine.resident.EXECUTION_MODES`.
    needs : dict (side, key) -> int32 array
        The sorted indices of the other side that each block's ratings refer to.
    route_factors : bool
        Resident tasks receive only the rows of the other side's arrays their
        blocks refer to, when that ships fewer bytes (:meth:`map_blocks`).
    shipped_bytes : int
        Bytes the driver sent to resident tasks so far (requests, factors included).
    """

    spark: object
    user_ids: pa.Array
    item_ids: pa.Array
    store: object
    steps: dict
    nnz: int
    mu: float
    context: StepContext
    id_types: dict = field(default_factory=dict)
    local: dict | None = None
    partitions: int = 1
    execution: str = "auto"
    needs: dict = field(default_factory=dict, repr=False)
    route_factors: bool = True
    shipped_bytes: int = 0
    _resident: object = field(default=None, repr=False)
    _routes: dict = field(default_factory=dict, repr=False)  # (side, a task's keys) -> the rows they refer to
    _entries: dict = field(default_factory=dict, repr=False)  # local blocks decoded, with their scratch

    @property
    def shape(self):
        return len(self.user_ids), len(self.item_ids)

    def ids(self, side):
        return self.user_ids if side == "user" else self.item_ids

    def unpersist(self):
        if self.store is not None:
            self.store.unpersist()

    def describe(self, text):
        """Context manager naming the Spark jobs of a half-step (resident tasks start none)."""
        return contextlib.nullcontext() if self._resident is not None else describe_jobs(self.spark, text)

    @contextlib.contextmanager
    def serving(self, description: str):
        """Context of one fit: its half-steps run on resident tasks when :attr:`execution` allows.

        The tasks hold the blocks of both sides and keep them decoded between
        half-steps (:func:`~sparknmf.engine.resident.resident_fit`).
        """
        from pyspark.sql import functions as F

        if self.local is not None or self._resident is not None:
            yield self
            return
        frame = self.store.select(F.col("side").alias("bi"), F.col("key").alias("bj"), "block", "aux")
        width = 1 + int(self.context.weighted) + int(self.context.timed)
        stored = 2 * self.nnz * (12 + 8 * width) * 2  # both copies, as stored and decoded
        with resident_fit(self.spark, self.execution, frame, self.partitions, stored, description) as tasks:
            self._resident = tasks
            try:
                yield self
            finally:
                self._resident = None

    def map_blocks(self, side: str, task: Call, ddl: str, *, own=(), other=()) -> pa.Table:
        """Run ``task(key, entries, scratch, own_rows, other) -> dict`` on every block of ``side``.

        ``entries`` are the block's :class:`~sparknmf.kernels.als.Entries`;
        ``scratch`` is a dict kept with them, where a task may leave what a
        later request can reuse; ``own_rows`` are the block's rows of the
        arrays ``own`` (each with a row per index of ``side``), and ``other``
        the arrays ``other`` (a row per index of the other side), in which only
        the rows the block's ratings refer to are guaranteed: resident tasks
        receive just those rows when that is smaller (:attr:`route_factors`,
        MLlib's out-block routing), zeros elsewhere.

        The task returns one row (a dict of the ``ddl`` columns) per block;
        the result is sorted by ``key``.  It runs in one Spark job, or as one
        request to the resident tasks of a fit (:meth:`serving`), or on the
        driver for ``local`` blocks, on ``partitions`` threads (numpy releases
        the GIL; each block is computed alone, so the result does not depend
        on the threads); resident tasks and the driver decode each block once
        and keep its scratch, a job starts both afresh.
        """
        schema, step, code = _ddl_schema(ddl), self.steps[side], SIDES.index(side)
        if self.local is not None:
            stored = self.local[side]

            def run(key, block, aux):
                own_rows = [A[key * step : (key + 1) * step] for A in own]
                return _run_task(task, self._entries, side, key, step, block, aux, self.context, own_rows, list(other))

            rows = _in_threads(self.partitions, run, stored["key"], stored["block"], stored["aux"])
            return pa.Table.from_pylist(rows, schema=schema)
        count = math.ceil(self.shape[code] / step)
        own_parts = [[codec.encode(A[key * step : (key + 1) * step]) for A in own] for key in range(count)]
        whole = (None, [codec.encode(A) for A in other])
        size = self.shape[1 - code]

        def body(keys, others):
            return Call(_block_run, dict(side=side, step=step, ctx=self.context, task=task, ddl=ddl,
                                         own_parts={k: own_parts[k] for k in keys}, others=others, size=size))

        if self._resident is not None:
            def body_for(held):  # this task's blocks, their rows of own and the rows of other they refer to
                keys = [key for held_side, key in held if held_side == code]
                if not keys:
                    return body(keys, (None, []))
                needed = self._needed(side, keys, sum(A.shape[1] for A in other))
                routed = whole if needed is None else (needed.tobytes(), [codec.encode(A[needed]) for A in other])
                return body(keys, routed)

            table = self._resident.run("bj", body_for)
            self.shipped_bytes += self._resident.last_request_bytes
            return table.sort_by("key")
        from pyspark.sql import functions as F

        frame = self.store.filter(F.col("side") == code).select(F.col("side").alias("bi"), "key", "block", "aux")
        return frame.mapInArrow(body(range(count), whole), ddl).toArrow().sort_by("key")

    def _needed(self, side, keys, width):
        """Sorted rows of the other side that the blocks ``keys`` of ``side`` refer to, or None.

        None (ship every row) when routing is off or would not ship fewer bytes
        than the whole arrays (``width`` columns in all).
        """
        if not self.route_factors or not keys or not width:
            return None
        rows = self._routes.get((side, tuple(keys)))
        if rows is None:
            rows = self._routes[(side, tuple(keys))] = np.unique(np.concatenate([self.needs[(side, k)] for k in keys]))
        size = self.shape[1 - SIDES.index(side)]
        return rows if rows.size * (8 * width + 4) < size * 8 * width else None


@block_function
def _block_run(batches, *, side, step, ctx, task, ddl, own_parts, others, size):
    """mapInArrow body of :meth:`RatingBlocks.map_blocks`: rows ``(bi = side code, key, block, aux)`` -> ``ddl`` rows.

    ``task`` is the block task (a :class:`~sparknmf.engine.calls.Call`);
    ``own_parts``: key -> the block's rows of each own array (payloads);
    ``others``: ``(rows, payloads)``, the other arrays whole (rows None) or
    only ``rows`` of them (int32 bytes), scattered back into zeros of ``size`` rows.
    """
    code, schema = SIDES.index(side), _ddl_schema(ddl)
    decoded = task_state()
    rows, payloads = others
    other = [codec.decode(p) for p in payloads]
    if rows is not None:
        index = np.frombuffer(rows, "<i4")
        other = [_scatter(index, A, size) for A in other]
    for batch in batches:
        mine = batch.filter(pc.equal(batch.column("bi"), code))
        out = {name: [] for name in schema.names}
        for key, block, aux in zip(mine.column("key").to_pylist(), mine.column("block"), mine.column("aux")):
            faults.inject(f"als-{side}", key)
            own = [codec.decode(p) for p in own_parts[key]]
            row = _run_task(task, decoded, side, key, step, block.as_buffer(), aux.as_buffer(), ctx, own, other)
            for name, value in row.items():
                out[name].append(value)
        yield pa.RecordBatch.from_pydict(out, schema=schema)


def _run_task(task, kept, side, key, step, block, aux, ctx, own, other) -> dict:
    """``task`` on one block, whose entries (decoded once) and scratch are kept in ``kept`` by ``(side, key)``."""
    entries = kept.get((side, key))
    if entries is None:
        entries = kept[(side, key)] = (build_entries(side, key, step, block, aux, ctx), {})
    return task(key, *entries, own, other)


def _scatter(index, values, size):
    """Rows ``values`` put at ``index`` of a zero array of ``size`` rows."""
    full = np.zeros((size, values.shape[1]), values.dtype)
    full[index] = values
    return full


def _ddl_schema(ddl: str) -> pa.Schema:
    types = {"int": pa.int32(), "long": pa.int64(), "double": pa.float64(), "binary": pa.binary(), "string": pa.string()}
    fields = [part.strip().split() for part in ddl.split(",")]
    return pa.schema([(name, types[kind]) for name, kind in fields])


# ------------------------------------------------------------------------------------------ ingest
def _check_type(frame, column, whom, kinds, what):
    dtype = frame.schema[column].dataType
    if not isinstance(dtype, kinds):
        raise InvalidInputError(f"{whom}: column {column!r} must be {what}, got {dtype.simpleString()}")


def _validate(frame, cols, rating_range, whom):
    """One aggregation job: counts of every problem; raise on the first with an example row."""
    from pyspark.sql import functions as F

    user, item, rating, weight, time = cols
    r = F.col(rating).cast("double")
    bad_rating = r.isNull() | F.isnan(r) | (F.abs(r) == float("inf"))
    checks = [
        (f"null ids in column {user!r}", F.col(user).isNull()),
        (f"null ids in column {item!r}", F.col(item).isNull()),
        ("null, NaN or infinite ratings", bad_rating),
    ]
    if rating_range:
        low, high = rating_range
        checks.append((f"ratings outside the declared ratingRange [{low}, {high}]", ~bad_rating & ((r < low) | (r > high))))
    if weight:
        w = F.col(weight).cast("double")
        checks.append((f"null, NaN, infinite or negative weights in column {weight!r}",
                       w.isNull() | F.isnan(w) | (F.abs(w) == float("inf")) | (w < 0)))
    if time:
        checks.append((f"null timestamps in column {time!r}", F.col(time).isNull()))
    aggs = [F.count(F.lit(1)).alias("rows")]
    aggs += [F.sum(cond.cast("long")).alias(f"c{n}") for n, (_, cond) in enumerate(checks)]
    if time:
        day = _day_column(frame, time)
        aggs += [F.min(day).alias("dmin"), F.max(day).alias("dmax")]
    stats = frame.agg(*aggs).first()
    if stats["rows"] == 0:
        raise InvalidInputError(f"{whom} is empty (no ratings)")
    for n, (what, cond) in enumerate(checks):
        count = stats[f"c{n}"] or 0
        if count:
            example = frame.filter(cond).select(user, item, rating).first()
            raise InvalidInputError(
                f"{whom} has {count} {what}, e.g. ({user}={example[0]!r}, {item}={example[1]!r}, {rating}={example[2]!r})"
            )
    return stats


def _day_column(frame, time):
    """The timestamp column in days (seconds since the epoch / 86400, or a timestamp type)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

    dtype = frame.schema[time].dataType
    if isinstance(dtype, (TimestampType, TimestampNTZType, DateType)):
        seconds = F.unix_timestamp(F.col(time).cast("timestamp")).cast("double")
    else:
        seconds = F.col(time).cast("double")
    return seconds / SECONDS_PER_DAY


def _dedupe(frame, cols, policy):
    """Apply the opt-in duplicate policy in the DataFrame: mean of duplicates, or the latest one."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    user, item, rating, weight, time = cols
    if policy == "mean":
        aggs = [F.avg(rating).alias(rating)]
        aggs += [F.avg(weight).alias(weight)] if weight else []
        aggs += [F.max(time).alias(time)] if time else []
        return frame.groupBy(user, item).agg(*aggs)
    order = F.col(time).desc() if time else F.lit(0)
    window = Window.partitionBy(user, item).orderBy(order)
    return frame.withColumn("_rank", F.row_number().over(window)).filter("_rank = 1").drop("_rank")


def _piece_builder(user_col, item_col, user_ids, item_ids, steps, extra_cols, placement):
    """mapInArrow body: a partition's ratings cut into one piece per (side, block).

    A piece (:func:`_pack`) holds the global row and column indices (``row``
    on the side's own axis) and the values ``[rating, extras...]``, so only a
    few binary rows per partition are shuffled, not the ratings one by one.
    ``_p`` is ``placement[key % len(placement)]``: the stored block's partition
    (:func:`~sparknmf.engine.session.placement_keys`).
    """

    def run(batches):
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        table = pa.Table.from_batches(batches)
        users = pc.index_in(table.column(user_col), value_set=user_ids).to_numpy(zero_copy_only=False)
        items = pc.index_in(table.column(item_col), value_set=item_ids).to_numpy(zero_copy_only=False)
        values = [table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in ("_r", *extra_cols)]
        data = np.column_stack(values)
        for side, rows, cols in ((0, users, items), (1, items, users)):
            keys = rows // steps[SIDES[side]]
            order = np.argsort(keys, kind="stable")
            bounds = np.flatnonzero(np.diff(keys[order])) + 1
            for chunk in np.split(order, bounds):
                key = int(keys[chunk[0]])
                piece = _pack(rows[chunk], cols[chunk], data[chunk])
                yield pa.RecordBatch.from_pydict({"_p": [placement[key % len(placement)]], "side": [side],
                                                  "key": [key], "piece": [piece]}, schema=_PIECE_SCHEMA)

    return run


def _pack(rows, cols, values) -> bytes:
    """A piece as raw little-endian bytes: nnz and width (int64), rows and cols (int32), values (nnz × width f8)."""
    nnz, width = values.shape
    return b"".join((np.array([nnz, width], "<i8").tobytes(), rows.astype("<i4").tobytes(),
                     cols.astype("<i4").tobytes(), np.ascontiguousarray(values, "<f8").tobytes()))


def _unpack(payload: bytes):
    """Inverse of :func:`_pack`: ``(rows, cols, values)``."""
    nnz, width = (int(x) for x in np.frombuffer(payload, "<i8", count=2))
    rows = np.frombuffer(payload, "<i4", count=nnz, offset=16)
    cols = np.frombuffer(payload, "<i4", count=nnz, offset=16 + 4 * nnz)
    values = np.frombuffer(payload, "<f8", count=nnz * width, offset=16 + 8 * nnz).reshape(nnz, width)
    return rows, cols, values


def _block_merger(sizes, weighted, timed, policy):
    """applyInArrow body: the pieces of one (side, block) -> the stored block (+ stats and duplicate check)."""

    def merge(table):
        side, key = table.column("side")[0].as_py(), table.column("key")[0].as_py()
        parts = [_unpack(p) for p in table.column("piece").to_pylist()]
        name = SIDES[side]
        step, n_rows, n_other = sizes[name][0], sizes[name][1], sizes[SIDES[1 - side]][1]
        rows = np.concatenate([q[0] for q in parts]).astype(np.int64) - key * step
        cols = np.concatenate([q[1] for q in parts]).astype(np.int64)
        data = np.vstack([q[2] for q in parts])
        order = np.argsort(rows * n_other + cols)  # by row, then column
        rows, cols, data = rows[order], cols[order], data[order]
        vals = data[:, 0]
        aux = data[:, 1:]
        problem = None
        dup = np.flatnonzero((np.diff(rows) == 0) & (np.diff(cols) == 0))
        if policy == "error" and dup.size:
            pair = (rows[dup[0]] + key * step, cols[dup[0]])
            user, item = pair if name == "user" else pair[::-1]
            problem = f"{dup.size}:{user}:{item}"
        b = min(step, n_rows - key * step)
        indptr = np.searchsorted(rows, np.arange(b + 1))
        csr = sp.csr_matrix((vals, cols.astype(np.int32), indptr), shape=(b, n_other))
        w = aux[:, 0] if weighted else np.ones_like(vals)
        days = b"" if not (timed and name == "user") else codec.encode(_mean_days(indptr, aux[:, -1])[:, None])
        return pa.Table.from_pylist([{
            "side": side, "key": key, "block": codec.encode(csr), "aux": codec.encode(aux) if aux.shape[1] else b"",
            "nnz": int(vals.size), "wsum": float(w.sum()), "wrsum": float(np.dot(w, vals)), "days": days,
            "needs": np.flatnonzero(np.bincount(cols, minlength=n_other)).astype("<i4").tobytes(),
            "problem": problem,
        }], schema=_BLOCK_SCHEMA)

    return merge


def _mean_days(indptr, days):
    counts = np.diff(indptr)
    sums = np.add.reduceat(np.append(days, 0.0), indptr[:-1]) * (counts > 0)
    return sums / np.maximum(counts, 1)


def _grid(spark, n, blocks, nnz):
    """Rows per block: ``blocks`` blocks, or automatically a multiple of the cores with ≤ ~4M ratings each."""
    cores = parallelism(spark)
    count = blocks or cores * math.ceil(nnz / (_TARGET_BLOCK_NNZ * cores))
    count = max(1, min(count, n))
    return math.ceil(n / count)


def use_driver(spark, backend: str, rows: int, row_bytes: int, local_limit: int) -> bool:
    """Whether ratings are fitted on the driver (``MaskedALS.backend``).

    ``"local"`` always, ``"spark"`` never.  ``"auto"``: at most
    ``local_limit`` ratings; and on a local master, where every task runs on
    the driver's machine, whenever the collected ratings (``rows ×
    row_bytes``) take at most half of ``spark.driver.maxResultSize`` (0: no
    limit) and a quarter of ``spark.driver.memory``: the driver then fits the
    same blocks on the same cores, without storing them in the JVM, copying
    them into Python workers or shuffling them.
    """
    if backend != "auto":
        return backend == "local"
    if rows <= local_limit:
        return True
    if not is_local_master(spark):
        return False
    budgets = [share * conf_bytes(spark, key, "1g") for key, share in _DRIVER_SHARES]
    return rows * row_bytes <= min(budget for budget in budgets if budget)


def _row_bytes(frame) -> int:
    """Rough size of one collected row: 8 bytes per numeric or time column, 32 per string or binary one."""
    from pyspark.sql.types import BinaryType, StringType

    return sum(32 if isinstance(f.dataType, (StringType, BinaryType)) else 8 for f in frame.schema.fields)


def _local_ids(column, name, whom) -> pa.Array:
    """Sorted distinct ids of a collected column (as :func:`~sparknmf.engine.ingest.distinct_ids` on the driver)."""
    ids = pc.unique(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    if ids.null_count:
        raise InvalidInputError(f"{whom}: column {name!r} has null ids")
    return pc.take(ids, pc.sort_indices(ids))


def _in_threads(workers: int, fn, *iterables) -> list:
    """``list(map(fn, *iterables))`` on ``workers`` threads: numpy's and Arrow's kernels release the GIL.

    The threads already take every core, so BLAS runs on one thread meanwhile
    (as in the Python workers of a session from :func:`~sparknmf.engine.session.get_session`):
    each thread's BLAS pool would otherwise compete for the same cores.
    """
    if workers <= 1:
        return list(map(fn, *iterables))
    with one_blas_thread(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, *iterables))


def _build_on_driver(table, pieces, merge, workers):
    """The same two steps on the driver: pieces of the collected table, merged per (side, block).

    The table is cut into ``workers`` slices and both steps run on
    ``workers`` threads; a block does not depend on how the table was sliced
    (the merge sorts its entries by row and column).
    """
    size = -(-table.num_rows // workers)
    slices = [table.slice(start, size) for start in range(0, table.num_rows, size)]
    groups = {}
    for batches in _in_threads(workers, lambda part: list(pieces(part.to_batches())), slices):
        for batch in batches:
            groups.setdefault((batch.column("side")[0].as_py(), batch.column("key")[0].as_py()), []).append(batch)
    keys = sorted(groups)
    return pa.concat_tables(_in_threads(workers, lambda g: merge(pa.Table.from_batches(groups[g])), keys))


def _prepared(frame, cols):
    """The input with the numeric columns the builders read: ``_r``, ``_w`` and ``_day`` (days)."""
    from pyspark.sql import functions as F

    user, item, rating, weight, time = cols
    out = [F.col(user), F.col(item), F.col(rating).cast("double").alias("_r")]
    out += [F.col(weight).cast("double").alias("_w")] if weight else []
    out += [_day_column(frame, time).alias("_day")] if time else []
    return frame.select(*out)


def ingest_ratings(frame, *, user_col, item_col, rating_col, weight_col="", time_col="", rating_range=(),
                   duplicates="error", user_blocks=0, item_blocks=0, bins=0, drift_on=False, beta=0.4,
                   backend="spark", local_limit=0, whom="MaskedALS (input ratings)") -> RatingBlocks:
    """Validate, index and store ratings twice; every data check runs before any fitting.

    ``backend="local"`` (or ``"auto"`` when :func:`use_driver` says so)
    collects the checked ratings and builds the blocks on the driver, where
    :meth:`RatingBlocks.map_blocks` then runs; ``"spark"`` keeps both copies
    in one cached DataFrame with at most one partition per task slot.

    Raises
    ------
    InvalidInputError
        Unknown columns, non-numeric ratings / weights, empty input, null ids,
        NaN / infinite ratings, ratings outside ``rating_range``, bad weights,
        null timestamps, duplicate (user, item) pairs (with ``duplicates="error"``).
    """
    from pyspark.sql.types import DateType, NumericType, TimestampNTZType, TimestampType

    cols = (user_col, item_col, rating_col, weight_col or None, time_col or None)
    check_columns(frame, [c for c in cols if c], whom)
    _check_type(frame, rating_col, whom, NumericType, "numeric")
    if weight_col:
        _check_type(frame, weight_col, whom, NumericType, "numeric")
    if time_col:
        _check_type(frame, time_col, whom, (NumericType, TimestampType, TimestampNTZType, DateType),
                    "numeric seconds or a timestamp")
    spark = frame.sparkSession
    id_types = {"user": frame.schema[user_col].dataType.simpleString(), "item": frame.schema[item_col].dataType.simpleString()}
    frame = frame.select(*[c for c in cols if c])
    stats = _validate(frame, cols, rating_range, whom)
    if duplicates != "error":
        frame = _dedupe(frame, cols, duplicates)
    prepared = _prepared(frame, cols)
    local = use_driver(spark, backend, stats["rows"], _row_bytes(prepared), local_limit)
    if local:
        with describe_jobs(spark, "sparknmf: collect ratings"):
            table = prepared.toArrow()
        user_ids = _local_ids(table.column(user_col), user_col, whom)
        item_ids = _local_ids(table.column(item_col), item_col, whom)
    else:
        user_ids = distinct_ids(frame, user_col, whom)
        item_ids = distinct_ids(frame, item_col, whom)
    n, m = len(user_ids), len(item_ids)
    steps = {"user": _grid(spark, n, user_blocks, stats["rows"]), "item": _grid(spark, m, item_blocks, stats["rows"])}
    # block key of either side goes to partition key % partitions: the side with more blocks fills every one
    partitions = max(1, min(max(math.ceil(n / steps["user"]), math.ceil(m / steps["item"])), parallelism(spark)))
    timed = bool(time_col)
    context = StepContext(weighted=bool(weight_col), timed=timed, bins=bins if timed else 0,
                          day_range=(float(stats["dmin"]), float(stats["dmax"])) if timed else (0.0, 1.0), beta=beta)
    blocks = RatingBlocks(spark, user_ids, item_ids, None, steps, 0, 0.0, context, id_types, {} if local else None,
                          partitions)
    extra_cols = (["_w"] if weight_col else []) + (["_day"] if timed else [])
    pieces = _piece_builder(user_col, item_col, user_ids, item_ids, steps, extra_cols, placement_keys(partitions))
    merge = _block_merger({"user": (steps["user"], n), "item": (steps["item"], m)}, bool(weight_col), timed, duplicates)
    if local:
        info = _build_on_driver(table, pieces, merge, partitions)
    else:
        # one shuffle: hash partitioning on _p places each block (both sides) in partition key % partitions,
        # and satisfies the grouping on (_p, side, key) without a second exchange
        blocks.store = (prepared.mapInArrow(pieces, _PIECE_DDL).repartition(partitions, "_p")
                        .groupBy("_p", "side", "key").applyInArrow(merge, _BLOCK_DDL).cache())
        with describe_jobs(spark, "sparknmf: store ratings by user block and by item block"):
            info = blocks.store.drop("block", "aux").toArrow()
    info = info.sort_by([("side", "ascending"), ("key", "ascending")])
    if local and not any(info.column("problem").to_pylist()):
        for code, side in enumerate(SIDES):
            mine = info.filter(pc.equal(info.column("side"), code))
            blocks.local[side] = mine.select(["key", "block", "aux"]).to_pydict()
    users = info.filter(pc.equal(info.column("side"), 0))
    _check_duplicates(users, blocks, whom, user_col, item_col)
    blocks.needs = {(SIDES[code], key): np.frombuffer(needs, "<i4") for code, key, needs in
                    zip(*(info.column(c).to_pylist() for c in ("side", "key", "needs")))}
    blocks.nnz = int(pc.sum(users.column("nnz")).as_py())
    wsum = float(pc.sum(users.column("wsum")).as_py())
    if wsum <= 0:
        blocks.unpersist()
        raise InvalidInputError(f"{whom}: every rating has weight 0")
    blocks.mu = float(pc.sum(users.column("wrsum")).as_py()) / wsum
    if timed and drift_on:
        context.mean_days = np.concatenate([codec.decode(d)[:, 0] for d in users.column("days").to_pylist()])
    return blocks


def _check_duplicates(info, blocks, whom, user_col, item_col):
    """Raise (after releasing the blocks) when a block builder found duplicate pairs."""
    problems = [p for p in info.column("problem").to_pylist() if p]
    if not problems:
        return
    blocks.unpersist()
    _, i, j = (int(x) for x in problems[0].split(":"))
    count = sum(int(p.split(":")[0]) for p in problems)
    raise InvalidInputError(
        f"{whom} has {count} duplicate ({user_col}, {item_col}) pairs, e.g. "
        f"({user_col}={blocks.user_ids[i].as_py()!r}, {item_col}={blocks.item_ids[j].as_py()!r}); "
        "pass duplicates='mean' or 'last' to merge them"
    )
