"""A MaskedALS model's parameters as DataFrames of row blocks (``factorPlacement="executors"``), used in place.

A side (users or items) is a :class:`FrameSide`: its parameter blocks ``(key
int, x binary)`` (block ``key`` holds rows ``key·step ... key·step + step − 1``,
each ``[factor (k) | bias | extras]``) and its ids ``(index long, id)``.
Everything a model offers is computed from them by executors, never by
collecting a side:

* :func:`param_rows`: one row per user or item ``(index, values array<double>)``,
  a slice of its parameter columns (the factors, the bias, ...);
* :func:`recommend_blocks`: top-N by pairs of blocks (a query block and a target
  block meet once, in one task: one matrix product per chunk of 4096 queries ×
  8192 targets with :func:`~sparknmf.kernels.topn.top_n`), the candidates of
  each query merged over the target blocks by query block, then ids put back
  by joins;
* :func:`write_side` / :func:`read_side`: the saved model's Parquet rows
  ``(index, id, features)`` (the driver placement's format, so either placement
  reads what the other wrote), written and read by executors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sparknmf.engine import codec
from sparknmf.kernels.topn import top_n

__all__ = ["FrameSide", "blocks_from_rows", "id_frame", "id_rows", "load_step", "param_rows", "read_side",
           "recommend_blocks", "shuffled", "slice_blocks", "write_side"]

_QUERY_CHUNK = 4096  # queries scored by one matrix product (per target chunk of top_n)
ROWS_DDL = "index long, values array<double>"


@dataclass(frozen=True)
class FrameSide:
    """One side of a model in the executors.

    Attributes
    ----------
    name : str
        ``"user"`` or ``"item"``.
    column : str
        Its id column in the DataFrames given and returned.
    ids : DataFrame ``(index long, id)``
    id_type : str
        Spark DDL type of the ids.
    blocks : DataFrame ``(key int, x binary)``
    step : int
        Rows per block.
    count : int
        Rows in all.
    rank : int
    bias : bool
        Column ``rank`` holds the bias.
    """

    name: str
    column: str
    ids: object
    id_type: str
    blocks: object
    step: int
    count: int
    rank: int
    bias: bool


def shuffled(frame):
    """``frame`` joined by a shuffle, never broadcast: a broadcast goes through the driver, and its result
    size limit (``spark.driver.maxResultSize``) is what the executors placement avoids.

    A sort-merge join, which spills to disk: a shuffled hash join holds a partition's side in memory, and an
    executor of 512 MB ran out of it joining 80 MB of parameter rows in 2 partitions.
    """
    return frame.hint("shuffle_merge")


def id_frame(spark, ids: pa.Array):
    """``(index long, id)`` of ids held on the driver (in index order)."""
    return spark.createDataFrame(pa.table({"index": pa.array(np.arange(len(ids)), pa.int64()), "id": ids}))


def _rows_body(batches, *, step, start, stop, extra):
    """mapInArrow body: blocks ``(key, x)`` -> ``(index, values)`` rows, columns ``start:stop`` (+ ``extra``)."""
    for batch in batches:
        for key, x in zip(batch.column("key").to_pylist(), batch.column("x")):
            X = codec.decode(x.as_buffer())
            values = X[:, start:stop]
            index = key * step + np.arange(X.shape[0], dtype=np.int64)
            if extra is not None:
                values = np.hstack([values, np.asarray(extra)[index][:, None]])
            flat = pa.array(np.ascontiguousarray(values, np.float64).ravel())
            offsets = pa.array(np.arange(values.shape[0] + 1, dtype=np.int32) * values.shape[1])
            yield pa.RecordBatch.from_arrays([pa.array(index), pa.ListArray.from_arrays(offsets, flat)],
                                             names=["index", "values"])


def param_rows(blocks, step: int, start: int = 0, stop: int | None = None, extra=None):
    """DataFrame ``(index long, values array<double>)``: columns ``start:stop`` of every row of the blocks.

    ``extra`` (an array with a value per row, e.g. the users' mean days) is appended as a last column.
    """
    body = functools.partial(_rows_body, step=step, start=start, stop=stop, extra=extra)
    return blocks.select("key", "x").mapInArrow(body, ROWS_DDL)


def _merge_rows(table, *, step, width, count):
    """applyInArrow body: the rows ``(key, index, values)`` of one block -> ``(key, x)``, checked whole."""
    key = table.column("key")[0].as_py()
    order = np.argsort(table.column("index").to_numpy())
    index = table.column("index").to_numpy()[order]
    values = table.column("values").combine_chunks()
    flat = values.flatten().to_numpy(zero_copy_only=False)
    rows = min(step, count - key * step)
    if (not np.array_equal(index, key * step + np.arange(rows)) or values.null_count or flat.size != rows * width
            or not np.isfinite(flat).all()):
        raise ValueError(f"parameter block {key} is malformed: expected rows {key * step}..{key * step + rows - 1} "
                         f"of {width} finite values")
    X = np.ascontiguousarray(flat.reshape(-1, width)[order])
    return pa.table({"key": pa.array([key], pa.int32()), "x": pa.array([codec.encode(X)], pa.binary())})


def blocks_from_rows(rows, step: int, width: int, count: int):
    """Parameter blocks ``(key, x)`` from rows ``(index, values)`` (one shuffle, by block)."""
    from pyspark.sql import functions as F

    body = functools.partial(_merge_rows, step=step, width=width, count=count)
    keyed = rows.select((F.col("index") / F.lit(step)).cast("int").alias("key"), "index", "values")
    return keyed.groupBy("key").applyInArrow(body, "key int, x binary")


def _slice_body(batches, *, stop):
    for batch in batches:
        xs = [codec.encode(np.ascontiguousarray(codec.decode(x.as_buffer())[:, :stop])) for x in batch.column("x")]
        yield pa.RecordBatch.from_arrays([batch.column("key"), pa.array(xs, pa.binary())], names=["key", "x"])


def slice_blocks(blocks, stop: int):
    """Parameter blocks ``(key, x)`` keeping the first ``stop`` columns."""
    return blocks.select("key", "x").mapInArrow(functools.partial(_slice_body, stop=stop), "key int, x binary")


_BLOCK_BYTES = 64 << 20  # a loaded model's parameter block holds at most this much


def load_step(spark, count: int, width: int) -> int:
    """Rows per block of a loaded model: one block per task slot, at most ``_BLOCK_BYTES`` each."""
    from sparknmf.engine.session import parallelism

    return max(1, min(-(-count // max(1, parallelism(spark))), _BLOCK_BYTES // (8 * max(1, width))))


def id_rows(side: FrameSide, extra=None):
    """DataFrame ``(index, values, id)``: the side's parameter rows with their ids, joined by the executors."""
    return param_rows(side.blocks, side.step, extra=extra).join(shuffled(side.ids), "index")


# -------------------------------------------------------------------------------- persistence
def write_side(side: FrameSide, path: str, *, extra=None, overwrite=False) -> None:
    """The side's rows ``(index, id, features)`` as Parquet at ``path``, written by the executors."""
    from pyspark.sql import functions as F

    out = id_rows(side, extra=extra).select("index", "id", F.col("values").alias("features"))
    out.write.mode("overwrite" if overwrite else "error").parquet(path)


def read_side(spark, path: str, count: int, width: int, step: int):
    """``(blocks, ids)`` of the Parquet rows at ``path`` (as :func:`write_side` and the driver write them).

    Checked by one aggregation job (row count, indices, widths, finite
    values), then cut into blocks of ``step`` rows; nothing is collected.
    ``ValueError`` naming the path on a mismatch.
    """
    from pyspark.sql import functions as F

    try:
        frame = spark.read.parquet(path)
        names = set(frame.columns)
    except Exception as err:  # noqa: BLE001 - any read failure is a malformed model directory
        raise ValueError(f"cannot read {path}: {type(err).__name__}") from None
    if names != {"index", "id", "features"}:
        raise ValueError(f"{path} is malformed: expected rows of (index, id, features)")
    stats = frame.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("index").alias("distinct"),
                      F.min("index").alias("low"), F.max("index").alias("high"),
                      F.sum((F.coalesce(F.size("features"), F.lit(-1)) != width).cast("long")).alias("bad"),
                      F.sum((~F.forall("features", lambda v: ~(F.isnan(v) | (F.abs(v) == float("inf")))))
                            .cast("long")).alias("infinite")).first()
    span = (stats["low"], stats["high"]) if count else (0, -1)
    if stats["rows"] != count or stats["distinct"] != count or span != (0, count - 1):
        raise ValueError(f"{path} is malformed: expected {count} rows with indices 0..{count - 1}")
    if stats["bad"]:
        raise ValueError(f"{path} is malformed: expected {width} values per row")
    if stats["infinite"]:
        raise ValueError(f"{path} is malformed: NaN or infinite values (a fitted model has none)")
    rows = frame.select(F.col("index").cast("long"), F.col("features").alias("values"))
    return blocks_from_rows(rows, step, width, count), frame.select(F.col("index").cast("long"), "id")


# -------------------------------------------------------------------------------- recommendations
_PAIR_DDL = "qkey int, queries binary, targets binary, scores binary"


def _pair_body(batches, *, query_step, target_step, k, query_bias, bias, mu, num, candidates, excluded):
    """mapInArrow body: pairs of blocks -> each query's best ``num`` targets of the target block (global indices).

    Rows ``(qkey, qx, qrows, tkey, tx[, eq, et])``: ``qrows`` the queries
    asked (global indices; null = all the block's), ``eq``/``et`` the
    excluded pairs of this block pair.  Scores are ``μ + b_q + b_t + qᵀt``
    (summed in the driver placement's order).
    """
    for batch in batches:
        columns = {name: batch.column(name) for name in batch.schema.names}
        for j in range(batch.num_rows):
            qkey, tkey = columns["qkey"][j].as_py(), columns["tkey"][j].as_py()
            Q, T = codec.decode(columns["qx"][j].as_buffer()), codec.decode(columns["tx"][j].as_buffer())
            asked = columns["qrows"][j].as_py()
            queries = (np.arange(Q.shape[0], dtype=np.int64) if asked is None
                       else np.unique(np.asarray(asked, np.int64)) - qkey * query_step)
            allowed = None
            if candidates is not None:
                allowed = candidates[(candidates >= tkey * target_step) & (candidates < tkey * target_step
                                                                             + T.shape[0])] - tkey * target_step
                if allowed.size == 0:
                    continue
            pairs = None
            if excluded:
                eq, et = columns["eq"][j].as_py(), columns["et"][j].as_py()
                if eq:  # only the pairs of the queries asked (the block's other rows are not scored)
                    local, targets = np.asarray(eq, np.int64) - qkey * query_step, np.asarray(et, np.int64)
                    asked_pair = np.isin(local, queries)
                    pairs = (np.searchsorted(queries, local[asked_pair]),
                             targets[asked_pair] - tkey * target_step)
            t_bias = T[:, k] if bias else None
            best_t, best_s = [], []
            for start in range(0, queries.size, _QUERY_CHUNK):
                chunk = queries[start : start + _QUERY_CHUNK]
                mask = None
                if pairs is not None:
                    inside = (pairs[0] >= start) & (pairs[0] < start + chunk.size)
                    mask = (pairs[0][inside] - start, pairs[1][inside])
                t, s = top_n(Q[chunk, :k], T[:, :k], num, bias=t_bias, candidates=allowed, exclude=mask)
                best_t.append(t + tkey * target_step)
                best_s.append(s + mu + (Q[chunk, k][:, None] if query_bias else 0.0))
            yield pa.RecordBatch.from_pydict({
                "qkey": [qkey], "queries": [(queries + qkey * query_step).astype("<i8").tobytes()],
                "targets": [codec.encode(np.vstack(best_t).astype(np.float64))],
                "scores": [codec.encode(np.vstack(best_s))],
            }, schema=pa.schema([("qkey", pa.int32()), ("queries", pa.binary()), ("targets", pa.binary()),
                                 ("scores", pa.binary())]))


_MERGED_DDL = "q long, pos int, t long, rating float"


def _merge_body(table, *, num):
    """applyInArrow body: one query block's candidates from every target block -> ``(q, pos, t, rating)`` rows.

    A query left without any target gets one row with ``pos = -1``.
    """
    queries = np.frombuffer(table.column("queries")[0].as_buffer(), "<i8")
    targets = np.hstack([codec.decode(x) for x in table.column("targets").to_pylist()]).astype(np.int64)
    scores = np.hstack([codec.decode(x) for x in table.column("scores").to_pylist()])
    keep = min(num, scores.shape[1])
    part = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
    best_t, best_s = np.take_along_axis(targets, part, axis=1), np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_t, best_s = np.take_along_axis(best_t, order, axis=1), np.take_along_axis(best_s, order, axis=1)
    valid = np.isfinite(best_s)
    rows_q = np.repeat(queries, valid.sum(axis=1))
    pos = np.concatenate([np.arange(c) for c in valid.sum(axis=1)]) if queries.size else np.zeros(0, np.int64)
    rating = best_s[valid]
    empty = queries[valid.sum(axis=1) == 0]
    return pa.table({
        "q": pa.array(np.r_[rows_q, empty], pa.int64()), "pos": pa.array(np.r_[pos, -np.ones(empty.size)], pa.int32()),
        "t": pa.array(np.r_[best_t[valid], -np.ones(empty.size, np.int64)], pa.int64()),
        "rating": pa.array(np.r_[rating, np.zeros(empty.size)].astype(np.float32)),
    })


def recommend_blocks(query: FrameSide, target: FrameSide, num: int, mu: float, *, subset=None, exclude=None,
                     candidates=None):
    """Top ``num`` targets per query by pairs of blocks, as ``(query.column, recommendations)`` (see the module).

    ``subset``: a DataFrame ``(_q long)`` of the query indices asked (None:
    all); ``exclude``: a DataFrame ``(_q long, _t long)`` of index pairs never
    recommended; ``candidates``: sorted target indices allowed (None: all).
    """
    from pyspark.sql import functions as F

    k = query.rank
    qblocks = query.blocks.select(F.col("key").alias("qkey"), F.col("x").alias("qx"))
    if subset is not None:
        asked = (subset.select((F.col("_q") / F.lit(query.step)).cast("int").alias("qkey"), "_q")
                 .groupBy("qkey").agg(F.collect_list("_q").alias("qrows")))
        qblocks = qblocks.join(shuffled(asked), "qkey")
    else:
        qblocks = qblocks.withColumn("qrows", F.lit(None).cast("array<bigint>"))
    tblocks = target.blocks.select(F.col("key").alias("tkey"), F.col("x").alias("tx"))
    pairs = qblocks.crossJoin(tblocks.hint("shuffle_replicate_nl"))  # a cartesian product, never a broadcast
    if exclude is not None:
        grouped = (exclude.select((F.col("_q") / F.lit(query.step)).cast("int").alias("qkey"),
                                  (F.col("_t") / F.lit(target.step)).cast("int").alias("tkey"), "_q", "_t")
                   .groupBy("qkey", "tkey").agg(F.collect_list("_q").alias("eq"), F.collect_list("_t").alias("et")))
        pairs = pairs.join(shuffled(grouped), ["qkey", "tkey"], "left")
    body = functools.partial(_pair_body, query_step=query.step, target_step=target.step, k=k, query_bias=query.bias,
                             bias=target.bias, mu=mu, num=num, candidates=candidates, excluded=exclude is not None)
    scored = pairs.mapInArrow(body, _PAIR_DDL)
    merge = functools.partial(_merge_body, num=num)
    merged = scored.groupBy("qkey").applyInArrow(merge, _MERGED_DDL)
    qids = query.ids.select(F.col("index").alias("q"), F.col("id").alias("_qid"))
    tids = target.ids.select(F.col("index").alias("t"), F.col("id").alias("_tid"))
    named = merged.join(shuffled(qids), "q").join(shuffled(tids), "t", "left")
    entry = F.struct(F.col("pos"), F.col("_tid"), F.col("rating"))
    grouped = named.groupBy("_qid").agg(F.sort_array(F.collect_list(entry)).alias("_recs"))
    recs = F.transform(F.filter("_recs", lambda s: s["pos"] >= 0),
                       lambda s: F.struct(s["_tid"].alias(target.column), s["rating"].alias("rating")))
    return grouped.select(F.col("_qid").alias(query.column), recs.alias("recommendations"))
