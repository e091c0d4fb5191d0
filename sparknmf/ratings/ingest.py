"""Ratings in: a rating DataFrame validated, indexed and built into :class:`~sparknmf.ratings.store.RatingBlocks`.

Every data check runs before any fitting, in one aggregation job (:func:`ingest_ratings`): columns and
their types, empty input, null ids, NaN/inf ratings, ratings outside the declared range, bad weights,
null, NaN or infinite timestamps; duplicate (user, item) pairs are found while the blocks are built, and
raise unless a :data:`DUPLICATE_POLICIES` merge was chosen.  The checks that need no data (the column
Params name different columns, ids of an atomic type) run before any Spark job.

Column names are used as given, whatever they contain (dots, backticks): every Spark expression refers
to a column through :func:`column_ref`, never by parsing its name.

The blocks (layout in :mod:`sparknmf.ratings.store`) are built in two steps: every input partition cuts
its ratings into one *piece* per (side, block) (:func:`_piece_builder`), then the pieces of a block are
merged into its stored CSR row with the block's statistics (:func:`_block_merger`).  On Spark that is
one shuffle of a few binary rows per partition; on the driver (:func:`use_driver`) the same two steps
run on the collected ratings, on one thread per core.  Ids are ranked in sorted order: on the driver, or,
for ratings on Spark, first counted (one job, counts only) so that the placement can decide, then collected
when the parameters go to the driver, or ranked by :func:`~sparknmf.engine.id_index.index_ids` without
collecting them when they stay in the executors.  One module (near 500 lines) because the checks, the
pieces and the merge share the column layout of one rating frame; the store they build is
:mod:`sparknmf.ratings.store`.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from sparknmf.engine import codec
from sparknmf.engine.id_index import column_ref, index_ids
from sparknmf.engine.ingest import check_columns, count_ids, distinct_id_pair, id_at, index_frame
from sparknmf.engine.placement import driver_budget
from sparknmf.engine.session import describe_jobs, is_local_master, parallelism, placement_keys
from sparknmf.errors import InvalidInputError
from sparknmf.ratings.factor_frames import shuffled
from sparknmf.ratings.store import SIDES, RatingBlocks, StepContext, in_threads

__all__ = ["DUPLICATE_POLICIES", "check_distinct_columns", "check_id_column", "check_id_type", "check_time_column",
           "column_ref", "day_column", "ingest_ratings", "same_id_type", "use_driver", "with_indices"]

DUPLICATE_POLICIES = ("error", "mean", "last")
SECONDS_PER_DAY = 86400.0
_BLOCK_DDL = (
    "side int, key int, block binary, aux binary, nnz long, wsum double, wrsum double, days binary, needs binary, "
    "problem string"
)
_PIECE_DDL = "_p int, side int, key int, piece binary"
_PIECE_SCHEMA = pa.schema([("_p", pa.int32()), ("side", pa.int32()), ("key", pa.int32()), ("piece", pa.binary())])
_BLOCK_SCHEMA = pa.schema([
    ("side", pa.int32()), ("key", pa.int32()), ("block", pa.binary()), ("aux", pa.binary()), ("nnz", pa.int64()),
    ("wsum", pa.float64()), ("wrsum", pa.float64()), ("days", pa.binary()), ("needs", pa.binary()),
    ("problem", pa.string()),
])
_TARGET_BLOCK_NNZ = 1 << 22
# rows per block at most: a block's parameters are one binary value in Spark (the executors placement's rows and
# messages); at rank 50 this is ~100 MB, where 2M users in one block (8M ratings, 2 blocks) overflowed an 8 GB heap
_MAX_BLOCK_ROWS = 1 << 18
_PARTITION_ROWS = 1 << 20  # executors placement: parameter rows of a side per cached partition, at most


def check_distinct_columns(named: dict, whom: str) -> None:
    """``ValueError`` when two column Params name the same column (``named``: {Param: column}; '' = unset)."""
    seen = {}
    for param, column in named.items():
        if column and column in seen:
            raise ValueError(f"{whom}: {seen[column]} and {param} are both {column!r}; each must name its own column")
        seen.setdefault(column, param)


_ID_TYPES = "string, integer, decimal, floating point, boolean, date, timestamp or binary"


def check_id_column(frame, column: str, whom: str) -> None:
    """Ids must be of an atomic type (they are sorted, hashed and joined): not an array, map, struct or UDT."""
    from pyspark.sql.types import AtomicType

    dtype = frame.schema[column].dataType
    if not isinstance(dtype, AtomicType):
        raise InvalidInputError(f"{whom}: id column {column!r} has type {dtype.simpleString()}; ids must be one "
                                f"value of an atomic type ({_ID_TYPES}), not an array, map or struct")


_INTEGER_TYPES = ("tinyint", "smallint", "int", "bigint")


def same_id_type(found: str, trained: str) -> bool:
    """Whether ids of the Spark type ``found`` match ids of the type ``trained`` exactly (equal types, or two
    integer types)."""
    return found == trained or (found in _INTEGER_TYPES and trained in _INTEGER_TYPES)


def check_id_type(frame, column: str, trained: str, whom: str) -> None:
    """The ids in ``column`` must have the type the model was trained on (``trained``, a Spark DDL type).

    Ids are matched exactly, by value, so the type must be the same; the one exception is the integer
    types (tinyint, smallint, int, bigint), which compare exactly with each other.  Anything else (int
    ids for a model trained on strings) would be cast by Spark's join: "1" and "01" both become 1, and
    a non-numeric string fails the cast.
    """
    found = frame.schema[column].dataType.simpleString()
    if not same_id_type(found, trained):
        raise InvalidInputError(
            f"{whom}: column {column!r} holds ids of type {found}, but the model was trained on ids of type "
            f"{trained}; ids are matched exactly, so give them as {trained} (cast the column yourself if every "
            f"id converts exactly)")


def check_time_column(frame, column: str, whom: str) -> None:
    """Rating times are numbers (seconds since the epoch) or timestamps / dates."""
    from pyspark.sql.types import DateType, NumericType, TimestampNTZType, TimestampType

    _check_type(frame, column, whom, (NumericType, TimestampType, TimestampNTZType, DateType),
                "numeric seconds or a timestamp")


def _check_type(frame, column, whom, kinds, what):
    dtype = frame.schema[column].dataType
    if not isinstance(dtype, kinds):
        raise InvalidInputError(f"{whom}: column {column!r} must be {what}, got {dtype.simpleString()}")


def _validate(frame, cols, rating_range, whom):
    """One aggregation job: counts of every problem; raise on the first with an example row."""
    from pyspark.sql import functions as F

    user, item, rating, weight, time = cols
    r = column_ref(rating).cast("double")
    bad_rating = r.isNull() | F.isnan(r) | (F.abs(r) == float("inf"))
    checks = [
        (f"null ids in column {user!r}", column_ref(user).isNull()),
        (f"null ids in column {item!r}", column_ref(item).isNull()),
        ("null, NaN or infinite ratings", bad_rating),
    ]
    if rating_range:
        low, high = rating_range
        checks.append((f"ratings outside the declared ratingRange [{low}, {high}]",
                       ~bad_rating & ((r < low) | (r > high))))
    if weight:
        w = column_ref(weight).cast("double")
        checks.append((f"null, NaN, infinite or negative weights in column {weight!r}",
                       w.isNull() | F.isnan(w) | (F.abs(w) == float("inf")) | (w < 0)))
    if time:
        # a NaN day would make the day range (low, nan) and put every rating in bin 0
        day = day_column(frame, time)
        checks.append((f"null, NaN or infinite timestamps in column {time!r}",
                       day.isNull() | F.isnan(day) | (F.abs(day) == float("inf"))))
    aggs = [F.count(F.lit(1)).alias("rows")]
    aggs += [F.sum(cond.cast("long")).alias(f"c{n}") for n, (_, cond) in enumerate(checks)]
    if time:
        aggs += [F.min(day).alias("dmin"), F.max(day).alias("dmax")]
    stats = frame.agg(*aggs).first()
    if stats["rows"] == 0:
        raise InvalidInputError(f"{whom} is empty (no ratings)")
    for n, (what, cond) in enumerate(checks):
        count = stats[f"c{n}"] or 0
        if count:
            example = frame.filter(cond).select(*map(column_ref, (user, item, rating))).first()
            raise InvalidInputError(
                f"{whom} has {count} {what}, e.g. "
                f"({user}={example[0]!r}, {item}={example[1]!r}, {rating}={example[2]!r})"
            )
    return stats


def day_column(frame, time):
    """The timestamp column ``time`` of ``frame`` in days (seconds since the epoch / 86400, or a timestamp type)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

    dtype = frame.schema[time].dataType
    if isinstance(dtype, (TimestampType, TimestampNTZType, DateType)):
        seconds = F.unix_timestamp(column_ref(time).cast("timestamp")).cast("double")
    else:
        seconds = column_ref(time).cast("double")
    return seconds / SECONDS_PER_DAY


def _dedupe(frame, cols, policy):
    """Apply the opt-in duplicate policy in the DataFrame: mean of duplicates, or the latest one."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    user, item, rating, weight, time = cols
    if policy == "mean":
        aggs = [F.avg(column_ref(rating)).alias(rating)]
        aggs += [F.avg(column_ref(weight)).alias(weight)] if weight else []
        aggs += [F.max(column_ref(time)).alias(time)] if time else []
        return frame.groupBy(column_ref(user), column_ref(item)).agg(*aggs)
    order = column_ref(time).desc() if time else F.lit(0)
    window = Window.partitionBy(column_ref(user), column_ref(item)).orderBy(order)
    return frame.withColumn("_rank", F.row_number().over(window)).filter("_rank = 1").drop("_rank")


def _piece_builder(user_col, item_col, user_ids, item_ids, steps, extra_cols, placement):
    """mapInArrow body: a partition's ratings cut into one piece per (side, block).

    Ratings are indexed by looking their ids up in ``user_ids`` / ``item_ids``
    (held on the driver, shipped with the function), or, when those are None,
    carry their indices in columns ``_u`` / ``_i`` (joined in Spark: :func:`_joined_indices`).

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
        users, items = (table.column(index).to_numpy() if ids is None else
                        pc.index_in(table.column(column), value_set=ids).to_numpy(zero_copy_only=False)
                        for column, ids, index in ((user_col, user_ids, "_u"), (item_col, item_ids, "_i")))
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


def _partitions(spark, blocks: int, rows: int, received: bool) -> int:
    """Partitions of ``blocks`` blocks (``rows`` rows on the larger side): block key goes to ``key % partitions``.

    As many as the cores (the side with more blocks fills every one), and under the executors placement
    (``received``) also as many as keep a partition within ``_PARTITION_ROWS`` parameter rows, so that a
    cached partition of parameters and messages stays a few hundred MB (16M users at rank 50 in 2
    partitions were 3 GB each).
    """
    cores = parallelism(spark)
    if received:
        cores *= math.ceil(rows / (_PARTITION_ROWS * cores))
    return max(1, min(blocks, cores))


def _grid(spark, n, blocks, nnz, received=False, other=None):
    """Rows per block: ``blocks`` blocks, or automatically a multiple of the cores with ≤ ~4M ratings and at
    most ``_MAX_BLOCK_ROWS`` rows each.

    ``received`` (the executors placement): also as many blocks as keep the rows a block *receives* from the
    other side within ``_MAX_BLOCK_ROWS``, since they arrive as one group of a cogroup: 8M ratings of 4M users
    over 20,000 items in 2 item blocks sent each item block 1.6 GB of user rows at rank 50.  A block receives
    at most one row per rating and at most ``other`` rows (the other side's count; None: unknown), so when
    ``other`` ≤ ``_MAX_BLOCK_ROWS`` the bound holds with any number of blocks, and more blocks would only
    multiply the rows sent (each is sent once per block of this side that refers to it).
    """
    cores = parallelism(spark)
    bounded = other is not None and other <= _MAX_BLOCK_ROWS
    rows = max(n, nnz) if received and not bounded else n
    waves = max(math.ceil(nnz / (_TARGET_BLOCK_NNZ * cores)), math.ceil(rows / (_MAX_BLOCK_ROWS * cores)))
    count = blocks or cores * waves
    count = max(1, min(count, n))
    return math.ceil(n / count)


def use_driver(spark, backend: str, rows: int, row_bytes: int, local_limit: int) -> bool:
    """Whether ratings are fitted on the driver (``MaskedALS.backend``).

    ``"local"`` always, ``"spark"`` never.  ``"auto"``: at most
    ``local_limit`` ratings that fit the driver's budget; and on a local master, where every task runs on
    the driver's machine, whenever the collected ratings (``rows ×
    row_bytes``) take at most half of ``spark.driver.maxResultSize`` (0: no
    limit) and a quarter of ``spark.driver.memory``: the driver then fits the
    same blocks on the same cores, without storing them in the JVM, copying
    them into Python workers or shuffling them.
    """
    if backend != "auto":
        return backend == "local"
    fits = rows * row_bytes <= driver_budget(spark)[0]  # else collecting them would exceed maxResultSize
    if rows <= local_limit:
        return fits
    return is_local_master(spark) and fits


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



def _build_on_driver(table, pieces, merge, workers):
    """The same two steps on the driver: pieces of the collected table, merged per (side, block).

    The table is cut into ``workers`` slices and both steps run on
    ``workers`` threads; a block does not depend on how the table was sliced
    (the merge sorts its entries by row and column).
    """
    size = -(-table.num_rows // workers)
    slices = [table.slice(start, size) for start in range(0, table.num_rows, size)]
    groups = {}
    for batches in in_threads(workers, lambda part: list(pieces(part.to_batches())), slices):
        for batch in batches:
            groups.setdefault((batch.column("side")[0].as_py(), batch.column("key")[0].as_py()), []).append(batch)
    keys = sorted(groups)
    return pa.concat_tables(in_threads(workers, lambda g: merge(pa.Table.from_batches(groups[g])), keys))


def _prepared(frame, cols):
    """The input with the numeric columns the builders read: ``_r``, ``_w`` and ``_day`` (days)."""
    user, item, rating, weight, time = cols
    out = [column_ref(user), column_ref(item), column_ref(rating).cast("double").alias("_r")]
    out += [column_ref(weight).cast("double").alias("_w")] if weight else []
    out += [day_column(frame, time).alias("_day")] if time else []
    return frame.select(*out)


def ingest_ratings(frame, *, user_col, item_col, rating_col, weight_col="", time_col="", rating_range=(),
                   duplicates="error", user_blocks=0, item_blocks=0, bins=0, drift_on=False, beta=0.4,
                   backend="spark", local_limit=0, placement=None,
                   whom="MaskedALS (input ratings)") -> RatingBlocks:
    """Validate, index and store ratings twice; every data check runs before any fitting.

    ``backend="local"`` (or ``"auto"`` when :func:`use_driver` says so)
    collects the checked ratings and builds the blocks on the driver, where
    :meth:`RatingBlocks.map_blocks` then runs; ``"spark"`` keeps both copies
    in one cached DataFrame with at most one partition per task slot.

    ``placement(n, m)``, when given, says where the fit's parameters will live
    for n users and m items (``MaskedALS.factorPlacement``), once the ids are
    known and before the blocks are built: ``"executors"`` keeps the blocks
    on Spark whatever ``backend`` chose (it may raise a ValueError for what
    that placement does not support).

    Raises
    ------
    ValueError
        Two column Params naming the same column.
    InvalidInputError
        Unknown columns, ids of a non-atomic type (array, map, struct), non-numeric ratings / weights,
        empty input, null ids, NaN / infinite ratings, ratings outside ``rating_range``, bad weights,
        null / NaN / infinite timestamps, duplicate (user, item) pairs (with ``duplicates="error"``).
    """
    from pyspark.sql.types import NumericType

    check_distinct_columns({"userCol": user_col, "itemCol": item_col, "ratingCol": rating_col,
                            "weightCol": weight_col, "timestampCol": time_col}, whom)
    cols = (user_col, item_col, rating_col, weight_col or None, time_col or None)
    check_columns(frame, [c for c in cols if c], whom)
    check_id_column(frame, user_col, whom)
    check_id_column(frame, item_col, whom)
    _check_type(frame, rating_col, whom, NumericType, "numeric")
    if weight_col:
        _check_type(frame, weight_col, whom, NumericType, "numeric")
    if time_col:
        check_time_column(frame, time_col, whom)
    spark = frame.sparkSession
    id_types = {side: frame.schema[column].dataType.simpleString() for side, column in zip(SIDES, (user_col, item_col))}
    frame = frame.select(*[column_ref(c) for c in cols if c])
    stats = _validate(frame, cols, rating_range, whom)
    if duplicates != "error":
        frame = _dedupe(frame, cols, duplicates)
    prepared = _prepared(frame, cols)
    on_driver = use_driver(spark, backend, stats["rows"], _row_bytes(prepared), local_limit)
    indexes = None  # side -> IdIndex: ids indexed in Spark, not collected
    if on_driver:
        with describe_jobs(spark, "sparknmf: collect ratings"):
            table = prepared.toArrow()
        user_ids = _local_ids(table.column(user_col), user_col, whom)
        item_ids = _local_ids(table.column(item_col), item_col, whom)
        n, m = len(user_ids), len(item_ids)
    else:  # counted first (one job, counts only): the placement decides whether the ids are collected
        with describe_jobs(spark, "sparknmf: count user and item ids"):
            n, m = count_ids(frame, (user_col, item_col), whom)
        user_ids = item_ids = None
    factors = placement(n, m) if placement is not None else "driver"
    if user_ids is None and factors == "executors":
        with describe_jobs(spark, "sparknmf: index user and item ids"):
            indexes = {side: index_ids(frame, column, whom) for side, column in zip(SIDES, (user_col, item_col))}
    elif user_ids is None:  # the driver holds the parameters, and so their ids
        with describe_jobs(spark, "sparknmf: collect user and item ids"):
            user_ids, item_ids = distinct_id_pair(frame, user_col, item_col, whom)
    if factors == "executors" and on_driver:  # parameters beyond the driver: so are the blocks
        on_driver, table = False, None
    received = factors == "executors"
    steps = {"user": _grid(spark, n, user_blocks, stats["rows"], received, other=m),
             "item": _grid(spark, m, item_blocks, stats["rows"], received, other=n)}
    partitions = _partitions(spark, max(math.ceil(n / steps["user"]), math.ceil(m / steps["item"])), max(n, m),
                             received)
    timed = bool(time_col)
    extra_cols = (["_w"] if weight_col else []) + (["_day"] if timed else [])
    pieces = _piece_builder(user_col, item_col, user_ids, item_ids, steps, extra_cols, placement_keys(partitions))
    merge = _block_merger({"user": (steps["user"], n), "item": (steps["item"], m)}, bool(weight_col), timed, duplicates)
    store = None
    if on_driver:
        info = _build_on_driver(table, pieces, merge, partitions)
    else:
        # one shuffle: hash partitioning on _p places each block (both sides) in partition key % partitions,
        # and satisfies the grouping on (_p, side, key) without a second exchange
        source = prepared if indexes is None else _joined_indices(prepared, cols, indexes)
        store = (source.mapInArrow(pieces, _PIECE_DDL).repartition(partitions, "_p")
                 .groupBy("_p", "side", "key").applyInArrow(merge, _BLOCK_DDL).cache())
        # the lists of rows each block needs route the driver's factors; the executors placement has its own
        # (its in-blocks' out lists), so they stay in the executors: O(ratings) bytes, 125 MB at 32M ratings
        dropped = ("block", "aux") if factors == "driver" else ("block", "aux", "needs")
        with describe_jobs(spark, "sparknmf: store ratings by user block and by item block"):
            info = store.drop(*dropped).toArrow()
    info = info.sort_by([("side", "ascending"), ("key", "ascending")])
    users = info.filter(pc.equal(info.column("side"), 0))
    wsum = float(pc.sum(users.column("wsum")).as_py())
    try:
        sides = indexes or {"user": user_ids, "item": item_ids}
        _check_duplicates(users, lambda side, i: id_at(sides[side], i), whom, user_col, item_col)
        if wsum <= 0:
            raise InvalidInputError(f"{whom}: every rating has weight 0")
    except InvalidInputError:
        if store is not None:
            store.unpersist()
        for index in (indexes or {}).values():
            index.release()
        raise
    mean_days = None
    if timed and drift_on:
        mean_days = np.concatenate([codec.decode(d)[:, 0] for d in users.column("days").to_pylist()])
    context = StepContext(weighted=bool(weight_col), timed=timed, bins=bins if timed else 0,
                          day_range=(float(stats["dmin"]), float(stats["dmax"])) if timed else (0.0, 1.0),
                          mean_days=mean_days, beta=beta)
    local = None
    if on_driver:
        local = {side: info.filter(pc.equal(info.column("side"), code)).select(["key", "block", "aux"]).to_pydict()
                 for code, side in enumerate(SIDES)}
    needs = {}
    if "needs" in info.schema.names:
        needs = {(SIDES[code], key): np.frombuffer(rows, "<i4") for code, key, rows in
                 zip(*(info.column(c).to_pylist() for c in ("side", "key", "needs")))}
    return RatingBlocks(spark, user_ids, item_ids, store, steps, nnz=int(pc.sum(users.column("nnz")).as_py()),
                        mu=float(pc.sum(users.column("wrsum")).as_py()) / wsum, context=context, id_types=id_types,
                        local=local, partitions=partitions, needs=needs, placement=factors, id_index=indexes)


def _joined_indices(prepared, cols, indexes):
    """The prepared ratings ``(_r, ...)`` with their user and item indices ``_u``, ``_i``, joined in Spark.

    Shuffle joins with the :class:`~sparknmf.engine.id_index.IdIndex` frames: a
    broadcast would send the ids through the driver.
    """
    from pyspark.sql import functions as F

    out = prepared
    for column, side, name in zip(cols[:2], SIDES, ("_u", "_i")):
        ids = indexes[side].frame.select(F.col("id").alias("_sparknmf_id"), F.col("index").alias(name))
        out = out.join(shuffled(ids), column_ref(column) == F.col("_sparknmf_id")).drop("_sparknmf_id")
    return out.select("_u", "_i", *prepared.columns[2:])


def _check_duplicates(info, id_at, whom, user_col, item_col):
    """Raise when a block builder found duplicate pairs (``info``: the user blocks' rows; ``id_at(side, i)``)."""
    problems = [p for p in info.column("problem").to_pylist() if p]
    if not problems:
        return
    _, i, j = (int(x) for x in problems[0].split(":"))
    count = sum(int(p.split(":")[0]) for p in problems)
    raise InvalidInputError(
        f"{whom} has {count} duplicate ({user_col}, {item_col}) pairs, e.g. "
        f"({user_col}={id_at('user', i)!r}, {item_col}={id_at('item', j)!r}); "
        "pass duplicates='mean' or 'last' to merge them"
    )


def with_indices(dataset, columns):
    """``dataset`` with an index column per id column: ``columns`` lists ``(ids, column, index)``.

    ``ids`` are the known ids in index order (a pyarrow Array); ``index`` is
    null for an id not among them.  One broadcast join per id column.
    """
    from pyspark.sql import functions as F

    spark = dataset.sparkSession
    out = dataset
    for ids, column, index in columns:
        out = out.join(F.broadcast(index_frame(spark, ids, column, index)), column, "left")
    return out
