"""In-blocks of the executors placement (:mod:`sparknmf.ratings.distributed`): a rating block and what it sends
and receives, built once per fit.

MLlib's in/out blocks.  For a block of one side (say user block ``key``), the
in-block is one row ``(key, block, aux, out, index, local)``:

* ``block``, ``aux``: the block's ratings as stored (:mod:`sparknmf.ratings.store`);
* ``out``, its **out-lists** (:func:`out_lists`): for every block ``e`` of the
  other side, the rows of this block that block ``e``'s ratings refer to, i.e.
  the rows this block sends to ``e`` after each of its half-steps;
* ``index``, the rows of the other side this block **receives** (the distinct
  columns of its ratings, ascending, int32), and ``local``, each rating's column
  as a position in them (int32; :func:`received_index`).  The messages a block
  receives, stacked by source block, hold exactly the rows ``index`` in that
  order, so its ratings address them through ``local`` without re-indexing at
  every half-step (on 3.6M ratings, re-indexing took 0.3 s per half-step and
  block, more than the rank-10 row solves).

Two user blocks (step 2), two item blocks (step 2)::

    ratings            user in-blocks
    u0: i0, i3         key 0: u0,u1   out {0: [0, 1], 1: [0]}   index [0, 1, 3]   local [0, 2, 1]
    u1: i1             key 1: u2      out {0: [0], 1: [0]}      index [0, 2]      local [0, 1]
    u2: i0, i2
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sparknmf.engine import codec
from sparknmf.engine.calls import Call, block_function
from sparknmf.ratings.store import SIDES, other_side

__all__ = ["IN_DDL", "in_frame", "out_lists", "read_out_lists", "received_index"]

IN_DDL = "key int, block binary, aux binary, out binary, index binary, local binary"
_IN_SCHEMA = pa.schema([("key", pa.int32()), ("block", pa.binary()), ("aux", pa.binary()), ("out", pa.binary()),
                        ("index", pa.binary()), ("local", pa.binary())])


def out_lists(indptr: np.ndarray, cols: np.ndarray, other_step: int) -> bytes:
    """A block's out-lists: for every block of the other side, the block's rows its ratings refer to.

    ``indptr``/``cols`` are the block's CSR (``cols`` global indices of the
    other side, cut in blocks of ``other_step``).  Encoded as int32 ``[count,
    dst keys (count), offsets (count + 1), rows]``, destinations ascending,
    rows ascending within each.
    """
    b = indptr.size - 1
    rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(indptr))
    pairs = np.unique(np.asarray(cols, np.int64) // other_step * max(b, 1) + rows)
    dst, local = pairs // max(b, 1), pairs % max(b, 1)
    keys, starts = np.unique(dst, return_index=True)
    offsets = np.r_[starts, pairs.size]
    return np.concatenate([[keys.size], keys, offsets, local]).astype("<i4").tobytes()


def read_out_lists(payload: bytes) -> list:
    """Inverse of :func:`out_lists`: ``[(dst key, rows int64 array), ...]``."""
    data = np.frombuffer(payload, "<i4")
    count = int(data[0])
    keys, offsets, rows = data[1 : 1 + count], data[1 + count : 2 + 2 * count], data[2 + 2 * count :]
    return [(int(key), rows[offsets[j] : offsets[j + 1]].astype(np.int64)) for j, key in enumerate(keys)]


def received_index(cols: np.ndarray) -> tuple:
    """``(index, local)``: the rows of the other side a block receives, and each rating's position among them.

    Parameters
    ----------
    cols : ndarray of int of shape (nnz,)
        The block's columns: global indices of the other side.

    Returns
    -------
    index : ndarray of int32 of shape (r,)
        The distinct ``cols``, ascending: the rows the messages to the block carry, in their order.
    local : ndarray of int32 of shape (nnz,)
        ``index[local] == cols``.
    """
    cols = np.asarray(cols, np.int64)
    present = np.bincount(cols) > 0
    position = np.cumsum(present, dtype=np.int32) - 1  # position[c]: rank of column c among the present ones
    return np.flatnonzero(present).astype(np.int32), position[cols]


@block_function
def _in_blocks(batches, *, other_step):
    """mapInArrow body: stored blocks ``(key, block, aux)`` of one side -> in-blocks with their out-lists and
    their columns re-indexed into the rows they receive (:func:`received_index`), once per fit."""
    for batch in batches:
        out, index, local = [], [], []
        for block in batch.column("block"):
            csr = codec.decode(block.as_buffer())
            out.append(out_lists(csr.indptr, csr.indices, other_step))
            rows, positions = received_index(csr.indices)
            index.append(rows.astype("<i4").tobytes())
            local.append(positions.astype("<i4").tobytes())
        yield pa.RecordBatch.from_arrays([batch.column("key"), batch.column("block"), batch.column("aux"),
                                          *(pa.array(column, pa.binary()) for column in (out, index, local))],
                                         schema=_IN_SCHEMA)


def in_frame(blocks, side: str, partitions: int):
    """The in-blocks of ``side`` (``"user"`` or ``"item"``) of :class:`~sparknmf.ratings.store.RatingBlocks`
    ``blocks``: a DataFrame of :data:`IN_DDL` rows, hash partitioned by key in ``partitions`` partitions and sorted
    by key in each (what a cogroup by key needs: no shuffle nor sort of the in-blocks at each half-step), cached
    (computed when first used)."""
    from pyspark.sql import functions as F

    stored = blocks.store.filter(F.col("side") == SIDES.index(side)).select("key", "block", "aux")
    body = Call(_in_blocks, dict(other_step=blocks.steps[other_side(side)]))
    return stored.mapInArrow(body, IN_DDL).repartition(partitions, "key").sortWithinPartitions("key").cache()
