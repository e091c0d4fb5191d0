"""The rating-block store: ratings held twice (by user block and by item block), and block tasks run on them.

Built by :func:`~sparknmf.ratings.ingest.ingest_ratings` (which validates and indexes the ratings);
:meth:`RatingBlocks.map_blocks` runs one task on every block of a side, in one Spark job, on resident
tasks or on the driver.

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

from sparknmf.engine import codec, faults
from sparknmf.engine.calls import Call, block_function, block_type
from sparknmf.engine.channel import frame_limit
from sparknmf.engine.resident import resident_fit, task_state
from sparknmf.engine.session import describe_jobs
from sparknmf.kernels.als import Entries, drift
from sparknmf.kernels.updates import one_blas_thread

__all__ = ["SIDES", "RatingBlocks", "StepContext", "build_entries", "in_threads", "other_side"]

SIDES = ("user", "item")  # side code 0 and 1 of the stored blocks


def other_side(side: str) -> str:
    """``"item"`` for ``"user"`` and ``"user"`` for ``"item"``."""
    return "item" if side == "user" else "user"


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
    user_ids, item_ids : pyarrow Array, or None
        Ids in index order (sorted); None when they were indexed in Spark (``id_index``).
    store : cached DataFrame ``(side int, key int, block binary, aux binary, ...)``, or None
        Both copies, in ``partitions`` partitions (≤ the task slots): block
        ``key`` of either side sits in partition ``key % partitions``; None
        when the blocks are ``local``.
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
    placement : str
        Where the fit's parameters were to live when the blocks were built
        (``"driver"`` or ``"executors"``, :mod:`sparknmf.ratings.distributed`).
    id_index : dict side -> :class:`~sparknmf.engine.id_index.IdIndex`, or None
        The ids and their indices as DataFrames (executors placement on Spark: never collected).
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
    placement: str = "driver"
    id_index: dict | None = None
    _resident: object = field(default=None, repr=False)
    _routes: dict = field(default_factory=dict, repr=False)  # (side, a task's keys) -> the rows they refer to
    _entries: dict = field(default_factory=dict, repr=False)  # local blocks decoded, with their scratch

    @property
    def shape(self):
        if self.id_index is not None:
            return self.id_index["user"].count, self.id_index["item"].count
        return len(self.user_ids), len(self.item_ids)

    def id_frames(self) -> dict:
        """side -> DataFrame ``(index long, id)`` of the ids indexed in Spark (None: the ids are on the driver)."""
        return {side: None if self.id_index is None else self.id_index[side].frame for side in SIDES}

    def ids(self, side):
        return self.user_ids if side == "user" else self.item_ids

    def unpersist(self):
        if self.store is not None:
            self.store.unpersist()

    def describe(self, text):
        """Context manager naming the Spark jobs of a half-step (resident tasks start none)."""
        return contextlib.nullcontext() if self._resident is not None else describe_jobs(self.spark, text)

    @contextlib.contextmanager
    def serving(self, description: str, rank: int | None = None):
        """Context of one fit: its half-steps run on resident tasks when :attr:`execution` allows.

        The tasks hold the blocks of both sides and keep them decoded between
        half-steps (:func:`~sparknmf.engine.resident.resident_fit`); ``rank``
        (the fit's) bounds the frames they exchange (n + m when not given).
        """
        from pyspark.sql import functions as F

        if self.local is not None or self._resident is not None:
            yield self
            return
        frame = self.store.select(F.col("side").alias("bi"), F.col("key").alias("bj"), "block", "aux")
        width = 1 + int(self.context.weighted) + int(self.context.timed)
        stored = 2 * self.nnz * (12 + 8 * width) * 2  # both copies, as stored and decoded
        n, m = self.shape
        # a side's parameters (factor, bias, drift or time bins) and the implicit vectors
        columns = n + m if rank is None else 2 * rank + 2 + self.context.bins
        count = sum(math.ceil(size / self.steps[side]) for side, size in zip(SIDES, self.shape))
        limit = frame_limit(stored, n + m, columns, count)
        with resident_fit(self.spark, self.execution, frame, self.partitions, stored, description,
                          frame_limit=limit) as tasks:
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

            rows = in_threads(self.partitions, run, stored["key"], stored["block"], stored["aux"])
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

        None (ship every row) when routing is off, the lists were left in the
        executors (ingested for the executors placement) or routing would not
        ship fewer bytes than the whole arrays (``width`` columns in all).
        """
        if not self.route_factors or not keys or not width or not self.needs:
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
    types = {"int": pa.int32(), "long": pa.int64(), "double": pa.float64(), "binary": pa.binary(),
             "string": pa.string()}
    fields = [part.strip().split() for part in ddl.split(",")]
    return pa.schema([(name, types[kind]) for name, kind in fields])


def in_threads(workers: int, fn, *iterables) -> list:
    """``list(map(fn, *iterables))`` on ``workers`` threads: numpy's and Arrow's kernels release the GIL.

    The threads already take every core, so BLAS runs on one thread meanwhile
    (as in the Python workers of a session from :func:`~sparknmf.engine.session.get_session`):
    each thread's BLAS pool would otherwise compete for the same cores.
    """
    if workers <= 1:
        return list(map(fn, *iterables))
    with one_blas_thread(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, *iterables))

