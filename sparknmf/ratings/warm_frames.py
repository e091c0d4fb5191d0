"""Warm starts of MaskedALS with its parameters in the executors: the initial model's rows joined in Spark.

With the parameters on the driver, :class:`~sparknmf.ratings.fit.FitLoop`
starts from the random draw and overwrites the rows of the ids the initial
model knows (``_carry``).  With ``factorPlacement="executors"`` the same
happens without collecting either side (:class:`WarmStart`):

1. the initial model's rows as a DataFrame ``(id, values array<double>)``:
   made by the executors from its parameter blocks when the model is in the
   executors (:func:`~sparknmf.ratings.factor_frames.id_rows`, ids joined
   by a shuffle), uploaded in pieces of at most 64 MB when it is on the driver;
2. joined (a shuffle, never a broadcast) with the fit's ids ``(index, id)``
   (an :class:`~sparknmf.engine.id_index.IdIndex` frame, or the ids the driver
   holds), so that each known id has its index in the new fit, and keyed by
   the new block ``index // step``;
3. cogrouped with the fit's in-blocks: each block draws its rows as a cold
   start does, overwrites those of its known ids and writes its parameter
   row and its messages (:func:`~sparknmf.ratings.distributed.initial_rows`).

New ids keep the random draw, ids the new ratings lack are dropped by the
join, and every column of a row is carried (factors, biases, time terms).
With SVD++ (``implicitFeedback``) an initial model on the driver also carries
its implicit vectors: item rows are ``[parameters | y_j]`` and user rows hold
w_u = stored factor − z_u, as ``FitLoop`` does; a model in the executors keeps
no vectors (its user factors include z_u), so Y starts at zero, as on the driver.

Same seed, same input: the initial blocks equal the driver placement's warm
start row for row, so the fits agree as cold starts do.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from sparknmf.engine.calls import block_function
from sparknmf.ratings.distributed import _STEP_SCHEMA, STEP_DDL, initial_rows
from sparknmf.ratings.factor_frames import id_frame, id_rows, shuffled

__all__ = ["WarmStart", "lay_rows"]

_UPLOAD_BYTES = 64 << 20  # rows of a driver model go to Spark in DataFrames of at most this size


def _uploaded(spark, ids: pa.Array, values: np.ndarray):
    """DataFrame ``(id, values array<double>)`` of rows held on the driver, uploaded in bounded pieces.

    Parameters
    ----------
    spark : SparkSession
    ids : pyarrow Array of length r
    values : ndarray of shape (r, c)
    """
    r, c = values.shape
    size = max(1, _UPLOAD_BYTES // (8 * max(1, c)))
    frames = []
    for start in range(0, max(r, 1), size):
        part = np.ascontiguousarray(values[start : start + size], np.float64)
        offsets = pa.array(np.arange(part.shape[0] + 1, dtype=np.int32) * c)
        listed = pa.ListArray.from_arrays(offsets, pa.array(part.ravel()))
        frames.append(spark.createDataFrame(pa.table({"id": ids[start : start + size], "values": listed})))
    return functools.reduce(lambda a, b: a.unionByName(b), frames)


@block_function
def _warm_group(left, right, **arguments):
    """cogroup body: one in-block (``left``) and the initial model's rows of its ids (``right``: ``key, index,
    values``, maybe none) -> the block's initial rows (:func:`~sparknmf.ratings.distributed.initial_rows`)."""
    key = left.column("key")[0].as_py()
    known = None
    if right.num_rows:
        local = right.column("index").to_numpy() - key * arguments["step"]
        flat = right.column("values").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        known = (local, flat.reshape(local.size, -1))
    rows = initial_rows(key, left.column("out")[0].as_buffer(), known, **arguments)
    return pa.Table.from_pydict(rows, schema=_STEP_SCHEMA)


class WarmStart:
    """The rows of a warm start's initial model, laid into a fit's initial blocks by the executors (module docstring).

    Parameters
    ----------
    initial : MaskedALSModel
        Its parameters have the widths the fit needs (checked by the estimator before any work).
    blocks : RatingBlocks
        The fit's ratings: their ids (``id_index`` frames, or arrays on the driver), steps and partitions.
    implicit : bool
        The fit has SVD++ terms: an initial model with implicit vectors carries them (and its z_u).
    """

    def __init__(self, initial, blocks, implicit: bool):
        self.initial, self.blocks = initial, blocks
        self.vectors = implicit and initial.placement == "driver" and initial.implicitVectors is not None

    def rows(self, side):
        """DataFrame ``(id, values array<double>)``: the initial model's rows of ``side`` (see the module)."""
        model = self.initial
        if model.placement == "executors":
            return id_rows(model._frame_side(side)).select("id", "values")
        P = model.parameters(side)
        if self.vectors and side == "item":
            P = np.hstack([P, model.implicitVectors])
        elif self.vectors:  # the stored user factors include z_u
            P = P.copy()
            P[:, : model.rank] -= model.implicitSums
        return _uploaded(self.blocks.spark, model.ids(side), P)

    def _fit_ids(self, side):
        """DataFrame ``(index long, id)`` of the fit's ids."""
        frame = self.blocks.id_frames()[side]
        return frame if frame is not None else id_frame(self.blocks.spark, self.blocks.ids(side))

    def initial_blocks(self, side, in_blocks, arguments):
        """The ``side``'s initial rows (:data:`~sparknmf.ratings.distributed.STEP_DDL`, not materialised).

        ``in_blocks``: the fit's in-blocks of ``side`` (hash partitioned by key); ``arguments``: those of
        :func:`~sparknmf.ratings.distributed.initial_rows`.
        """
        known = self.rows(side).join(shuffled(self._fit_ids(side)), "id").select("index", "values")
        return lay_rows(in_blocks, known, arguments, self.blocks.partitions)


def lay_rows(in_blocks, rows, arguments, partitions):
    """Initial blocks with ``rows`` laid over the draw: in-blocks cogrouped with ``(index, values)`` rows by key.

    Parameters
    ----------
    in_blocks : DataFrame ``(key, block, aux, out)``
        One side's in-blocks, hash partitioned by key in ``partitions`` partitions.
    rows : DataFrame ``(index long, values array<double>)``
        The known rows of that side (any subset), by their index in the fit.
    arguments : dict
        The keyword arguments of :func:`~sparknmf.ratings.distributed.initial_rows`.
    partitions : int

    Returns
    -------
    DataFrame of :data:`~sparknmf.ratings.distributed.STEP_DDL` rows, not materialised.
    """
    from pyspark.sql import functions as F

    keyed = rows.select((F.col("index") / F.lit(arguments["step"])).cast("int").alias("key"), "index", "values")
    keyed = keyed.repartition(max(1, partitions), "key")
    body = functools.partial(_warm_group, **arguments)  # a partial: pyspark reads the arguments (left, right)
    return in_blocks.groupBy("key").cogroup(keyed.groupBy("key")).applyInArrow(body, STEP_DDL)
