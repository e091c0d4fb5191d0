"""Ratings on Spark: validated, indexed, stored twice (by user block and by item block).

Layout
------
Users and items keep their own ids (any type); they are mapped once to dense
indices in sorted order.  Users are cut into ``p`` contiguous user blocks of
``user_step`` users, items into ``q`` item blocks of ``item_step`` items.  The
ratings are stored twice, as two cached DataFrames with one row per block
``(key int, block binary, aux binary)``:

* by user block: ``block`` is a CSR matrix (users of the block × all items)
  whose values are the ratings, ``aux`` the per-rating weight and day (when
  used), in the CSR order;
* by item block: the same ratings as (items of the block × all users).

Three users, four items, two user blocks (user_step 2), two item blocks::

    ratings (user, item, r)      user blocks                  item blocks
    ("ann", "m1", 4)             key 0: ann, bob × m1..m4     key 0: m1, m2 × ann, bob, cy
    ("ann", "m3", 2)                 ann: m1=4, m3=2              m1: ann=4, cy=5
    ("bob", "m2", 5)                 bob: m2=5                    m2: bob=5
    ("cy",  "m1", 5)             key 1: cy × m1..m4           key 1: m3, m4 × ann, bob, cy
    ("cy",  "m4", 1)                 cy: m1=5, m4=1               m3: ann=2;  m4: cy=1

Updating the users needs, for the ratings of a user block, only the item
factors (shipped to every task with the function) and gives the new rows of
the block: each half-step is one Spark job over one of the two copies, whose
results (the new factor rows) come back to the driver with ``toArrow``.  The
factors live on the driver between half-steps, so the plan never grows and
no checkpoint directory is needed however many iterations run.  This is
MLlib's in-block / out-block routing with the out-blocks replaced by one
broadcast of the other side: with q item blocks a user block would need the
factors of the items its users rated, which at rank ≥ 10 is nearly all of
them; a broadcast of m×k numbers per executor is cheaper than a join that
ships them per block (and needs no shuffle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from . import codec, faults
from .errors import InvalidInputError
from .ingest import check_columns, distinct_ids
from .kernels.ratings import Entries, drift
from .matrix import _spread
from .session import describe_jobs, parallelism

__all__ = ["DUPLICATE_POLICIES", "RatingBlocks", "StepContext", "build_entries", "ingest_ratings"]

DUPLICATE_POLICIES = ("error", "mean", "last")
SECONDS_PER_DAY = 86400.0
_BLOCK_DDL = (
    "side int, key int, block binary, aux binary, nnz long, wsum double, wrsum double, days binary, problem string"
)
_PIECE_DDL = "side int, key int, piece binary"
_PIECE_SCHEMA = pa.schema([("side", pa.int32()), ("key", pa.int32()), ("piece", pa.binary())])
SIDES = ("user", "item")
_BLOCK_SCHEMA = pa.schema([
    ("side", pa.int32()), ("key", pa.int32()), ("block", pa.binary()), ("aux", pa.binary()), ("nnz", pa.int64()),
    ("wsum", pa.float64()), ("wrsum", pa.float64()), ("days", pa.binary()), ("problem", pa.string()),
])
_TARGET_BLOCK_NNZ = 1 << 22


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
    frames : dict side -> cached DataFrame ``(key int, block binary, aux binary)``
    steps : dict side -> rows per block
    nnz : int
    mu : float
        Weighted mean rating.
    context : StepContext
    id_types : dict side -> Spark DDL type of the ids
    local : dict side -> {"key", "block", "aux"} lists, or None
        Blocks held on the driver (local backend) instead of in ``frames``.
    """

    spark: object
    user_ids: pa.Array
    item_ids: pa.Array
    frames: dict
    steps: dict
    nnz: int
    mu: float
    context: StepContext
    id_types: dict = field(default_factory=dict)
    local: dict | None = None

    @property
    def shape(self):
        return len(self.user_ids), len(self.item_ids)

    def ids(self, side):
        return self.user_ids if side == "user" else self.item_ids

    def unpersist(self):
        for frame in self.frames.values():
            frame.unpersist()

    def describe(self, text):
        return describe_jobs(self.spark, text)

    def map_blocks(self, side: str, task, ddl: str) -> pa.Table:
        """Run ``task(side, key, step, block, aux) -> dict`` on every block of ``side``: one Spark job.

        The task returns one row (a dict of the ``ddl`` columns) per block; the
        collected Arrow table is sorted by ``key``.  After :meth:`collect_local`
        (``local`` blocks) the same task runs on the driver instead.
        """
        step = self.steps[side]
        schema = _ddl_schema(ddl)
        if self.local is not None:
            stored = self.local[side]
            rows = [task(side, key, step, block, aux)
                    for key, block, aux in zip(stored["key"], stored["block"], stored["aux"])]
            return pa.Table.from_pylist(rows, schema=schema)

        def run(batches):
            for batch in batches:
                cols = batch.to_pydict()
                out = {name: [] for name in schema.names}
                for key, block, aux in zip(cols["key"], cols["block"], cols["aux"]):
                    faults.inject(f"als-{side}", key)
                    for name, value in task(side, key, step, block, aux).items():
                        out[name].append(value)
                yield pa.RecordBatch.from_pydict(out, schema=schema)

        return self.frames[side].mapInArrow(run, ddl).toArrow().sort_by("key")


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


def _piece_builder(user_col, item_col, user_ids, item_ids, steps, extra_cols):
    """mapInArrow body: a partition's ratings cut into one piece per (side, block).

    A piece (:func:`_pack`) holds the global row and column indices (``row``
    on the side's own axis) and the values ``[rating, extras...]``, so only a
    few binary rows per partition are shuffled, not the ratings one by one.
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
                piece = _pack(rows[chunk], cols[chunk], data[chunk])
                yield pa.RecordBatch.from_pydict({"side": [side], "key": [int(keys[chunk[0]])], "piece": [piece]},
                                                 schema=_PIECE_SCHEMA)

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
        order = np.lexsort((cols, rows))
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


def _local_ids(column, name, whom) -> pa.Array:
    """Sorted distinct ids of a collected column (as :func:`~sparknmf.ingest.distinct_ids` on the driver)."""
    ids = pc.unique(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    if ids.null_count:
        raise InvalidInputError(f"{whom}: column {name!r} has null ids")
    return pc.take(ids, pc.sort_indices(ids))


def _build_on_driver(table, pieces, merge):
    """The same two steps on the driver: pieces of the collected table, merged per (side, block)."""
    groups = {}
    for batch in pieces(table.to_batches()):
        groups.setdefault((batch.column(0)[0].as_py(), batch.column(1)[0].as_py()), []).append(batch)
    return pa.concat_tables([merge(pa.Table.from_batches(groups[g])) for g in sorted(groups)])


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

    ``backend="local"`` (or ``"auto"`` with at most ``local_limit`` ratings)
    collects the checked ratings and builds the blocks on the driver, where
    :meth:`RatingBlocks.map_blocks` then runs; ``"spark"`` keeps them in
    cached DataFrames, one block per partition.

    Raises
    ------
    InvalidInputError
        Unknown columns, non-numeric ratings / weights, empty input, null ids,
        NaN / infinite ratings, ratings outside ``rating_range``, bad weights,
        null timestamps, duplicate (user, item) pairs (with ``duplicates="error"``).
    """
    from pyspark.sql import functions as F
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
    local = backend == "local" or (backend == "auto" and stats["rows"] <= local_limit)
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
    timed = bool(time_col)
    context = StepContext(weighted=bool(weight_col), timed=timed, bins=bins if timed else 0,
                          day_range=(float(stats["dmin"]), float(stats["dmax"])) if timed else (0.0, 1.0), beta=beta)
    blocks = RatingBlocks(spark, user_ids, item_ids, {}, steps, 0, 0.0, context, id_types, {} if local else None)
    extra_cols = (["_w"] if weight_col else []) + (["_day"] if timed else [])
    pieces = _piece_builder(user_col, item_col, user_ids, item_ids, steps, extra_cols)
    merge = _block_merger({"user": (steps["user"], n), "item": (steps["item"], m)}, bool(weight_col), timed, duplicates)
    if local:
        info = _build_on_driver(table, pieces, merge)
    else:
        built = prepared.mapInArrow(pieces, _PIECE_DDL).groupBy("side", "key").applyInArrow(merge, _BLOCK_DDL).cache()
        with describe_jobs(spark, "sparknmf: store ratings by user block and by item block"):
            info = built.drop("block", "aux").toArrow()
    info = info.sort_by([("side", "ascending"), ("key", "ascending")])
    problems = any(info.column("problem").to_pylist())
    for code, side in enumerate(SIDES):
        if problems:
            continue
        if local:
            mine = info.filter(pc.equal(info.column("side"), code))
            blocks.local[side] = mine.select(["key", "block", "aux"]).to_pydict()
        else:
            spread = built.filter(F.col("side") == code).select(F.col("key").alias("bi"), F.lit(0).alias("bj"),
                                                                "block", "aux")
            count = int(pc.sum(pc.equal(info.column("side"), code)).as_py())
            blocks.frames[side] = _spread(spread, count).withColumnRenamed("bi", "key")
    if not local:
        built.unpersist()
    users = info.filter(pc.equal(info.column("side"), 0))
    _check_duplicates(users, blocks, whom, user_col, item_col)
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
