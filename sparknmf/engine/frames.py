"""DataFrames of blocks made on the driver, and their placement over the cluster's slots.

A block DataFrame has the rows ``(bi int, bj int, block binary)`` of
:data:`sparknmf.engine.matrix.BLOCK_SCHEMA`; the payloads are
:mod:`sparknmf.engine.codec` bytes.
"""

from __future__ import annotations

import functools
import logging

import pyarrow as pa

from sparknmf.engine.session import is_connect

__all__ = ["ddl", "local_frame", "release", "spread_blocks", "truncate"]

logger = logging.getLogger("sparknmf")

_DDL_TYPES = {pa.int32(): "int", pa.int64(): "bigint", pa.float64(): "double", pa.binary(): "binary",
              pa.string(): "string"}


def ddl(schema: pa.Schema) -> str:
    """The Spark DDL string of an Arrow schema of flat columns (one source for both)."""
    return ", ".join(f"{field.name} {_DDL_TYPES[field.type]}" for field in schema)


_UPLOAD_BYTES = 64 << 20  # driver data goes to Spark in DataFrames of at most this size


def local_frame(spark, rows):
    """A DataFrame of ``(bi, bj, block)`` rows from the driver, uploaded in bounded pieces.

    One ``createDataFrame`` per ≤64 MB of payload keeps each task's share of
    the driver's data (and a Connect request) small; the pieces are unioned.
    """
    pieces, piece, size = [], [], 0
    for row in rows:
        if piece and size + len(row[2]) > _UPLOAD_BYTES:
            pieces.append(piece)
            piece, size = [], 0
        piece.append(row)
        size += len(row[2])
    pieces.append(piece)
    frames = [
        spark.createDataFrame(pa.table({
            "bi": pa.array([r[0] for r in part], pa.int32()),
            "bj": pa.array([r[1] for r in part], pa.int32()),
            "block": pa.array([r[2] for r in part], pa.binary()),
        }))
        for part in pieces
    ]
    return functools.reduce(lambda a, b: a.unionByName(b), frames)


def spread_blocks(frame, count, partitions=None):
    """Blocks range-partitioned on their ordinal, cached: one per partition, or runs of
    consecutive blocks in ``partitions`` partitions."""
    from pyspark.sql import functions as F

    ordinal = F.col("bi") * F.lit(1 << 20) + F.col("bj")
    spread = frame.repartitionByRange(max(1, min(count, partitions or count)), ordinal).cache()
    spread.count()
    return spread


def truncate(frame):
    """``frame`` materialised now, with its lineage cut (a local checkpoint): its plan starts afresh.

    Works in classic and Connect sessions alike.  The blocks live in the
    executors' block managers (memory, then disk); a lost executor loses
    them, as MLlib's factors between its checkpoints.
    """
    return frame.localCheckpoint(eager=True)


def release(frame) -> None:
    """Free the blocks of a :func:`truncate`d frame now (classic sessions), or leave them to Spark's cleaner.

    A classic local checkpoint is an RDD held by the frame's plan; unpersisting
    it frees its blocks at once.  A Connect session frees them when the client
    drops the frame (its cached relation is released on garbage collection).
    """
    if frame is None or is_connect(frame.sparkSession):
        return
    try:
        plan = frame._jdf.queryExecution().logical()
        if plan.getClass().getSimpleName() == "LogicalRDD":
            plan.rdd().unpersist(False)
    except Exception:  # noqa: BLE001 - best effort: Spark's cleaner frees the blocks later anyway
        logger.debug("could not release a checkpointed frame", exc_info=True)
