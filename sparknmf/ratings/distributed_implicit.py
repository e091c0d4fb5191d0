"""Implicit-feedback ALS (``implicitPrefs=True``) with its parameters in the executors.

The half-steps are those of :class:`~sparknmf.ratings.distributed.ExecutorFit`
(in-blocks cogrouped with the messages that carry exactly the rows of the other
side a block's events refer to); only the row solves differ.  Under the
implicit preference model (Hu, Koren & Volinsky; :mod:`sparknmf.kernels.implicit`)
every user's equations need YᵀY over **all** items, not only the rated ones::

    (YᵀY + Σ_{i∈Ω_u} (c_ui − 1) y_i y_iᵀ + λ s_u I) x_u = Σ_{i∈Ω_u} c_ui p_ui y_i

so before each half-step every parameter block of the other side computes its
k×k Gram in the executors (:func:`side_gram`); the driver sums those k×k pieces
in key order and ships YᵀY with the half-step, whose groups solve their rows
with :func:`~sparknmf.ratings.fit.implicit_prefs_rows`, the driver placement's
own call.  The loss of every row is the all-pairs loss from the same
equations (``Σ_i c (p − xᵀy_i)² = Σ c p² − 2 xᵀb + xᵀ A x`` with ``A`` built
on YᵀY), so the objective over all n×m pairs reaches the driver as one number
per block, never the factors.

The training events an implicit model keeps to filter its recommendations
(``filterRated``) stay in Spark too: a DataFrame ``(user int, item int)`` of
indices, cut from the user rating blocks by the executors (:func:`seen_pairs`).
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from sparknmf.engine import codec
from sparknmf.engine.calls import Call, block_function
from sparknmf.engine.frames import truncate
from sparknmf.ratings.distributed import (
    _STEP_SCHEMA,
    PARAMS,
    ExecutorFit,
    _block_view,
    _rows_out,
)
from sparknmf.ratings.fit import implicit_prefs_options, implicit_prefs_rows
from sparknmf.ratings.store import SIDES, other_side

__all__ = ["SEEN_DDL", "PrefsExecutorFit", "seen_pairs", "side_gram"]

SEEN_DDL = "user int, item int"


@block_function
def _gram_blocks(batches, *, k):
    """mapInArrow body: parameter blocks ``(key, x)`` -> ``(key, gram)``, each block's XᵀX of its k factor columns."""
    for batch in batches:
        grams = []
        for x in batch.column("x"):
            X = codec.decode(x.as_buffer())[:, :k]
            grams.append(codec.encode(np.ascontiguousarray(X.T @ X)))
        yield pa.RecordBatch.from_arrays([batch.column("key"), pa.array(grams, pa.binary())], names=["key", "gram"])


def side_gram(frame, k: int) -> np.ndarray:
    """XᵀX (k×k) over every row of the ``PARAMS`` blocks of ``frame``: one k×k piece per block, summed in key order.

    Parameters
    ----------
    frame : DataFrame ``(kind, key, x, ...)``
        A side's step output (:data:`~sparknmf.ratings.distributed.STEP_DDL`).
    k : int
        The rank: the first k columns of every block are the factors.

    Returns
    -------
    gram : ndarray of shape (k, k)
    """
    from pyspark.sql import functions as F

    blocks = frame.filter(F.col("kind") == PARAMS).select("key", "x")
    table = blocks.mapInArrow(Call(_gram_blocks, dict(k=k)), "key int, gram binary").toArrow().sort_by("key")
    gram = np.zeros((k, k))
    for piece in table.column("gram").to_pylist():
        gram += codec.decode(piece)
    return gram


@block_function
def _prefs_group(left, right, *, side, step, other_step, ctx, k, gram, options):
    """cogroup body of one block under the implicit preference model: in-block + own rows + messages -> new rows.

    The messages' rows are the other side's rows the block's events refer to
    (its columns are re-indexed into them); ``gram`` is YᵀY over all of them.
    The block's previous rows warm-start NNLS and the conjugate-gradient steps, as on the driver.
    """
    key, entries, payload, _, own = _block_view(left, right, side=side, step=step, other_step=other_step, ctx=ctx)
    warm = options["nonnegative"] or options["cg_steps"]
    init = np.array(own) if warm and own is not None else None
    X, loss, penalty = implicit_prefs_rows(entries, payload[:, :k], gram, init, options)
    rows = _rows_out(key, X, left.column("out")[0].as_buffer(), bool(np.isfinite(X).all()), loss, penalty)
    return pa.Table.from_pydict(rows, schema=_STEP_SCHEMA)


@block_function
def _seen_rows(batches, *, step):
    """mapInArrow body: stored user blocks ``(key, block)`` -> their event pairs ``(user, item)`` (global indices)."""
    for batch in batches:
        users, items = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
        for key, block in zip(batch.column("key").to_pylist(), batch.column("block")):
            csr = codec.decode(block.as_buffer())
            users.append((key * step + np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))).astype(np.int32))
            items.append(csr.indices.astype(np.int32))
        yield pa.RecordBatch.from_arrays([pa.array(np.concatenate(users)), pa.array(np.concatenate(items))],
                                         names=["user", "item"])


def seen_pairs(blocks):
    """The events of :class:`~sparknmf.ratings.store.RatingBlocks` as a materialised DataFrame ``(user, item)``.

    Indices, one row per stored event, made by the executors from the user
    blocks (:func:`~sparknmf.engine.frames.truncate`: it outlives the blocks).
    """
    from pyspark.sql import functions as F

    stored = blocks.store.filter(F.col("side") == SIDES.index("user")).select("key", "block")
    return truncate(stored.mapInArrow(Call(_seen_rows, dict(step=blocks.steps["user"])), SEEN_DDL))


class PrefsExecutorFit(ExecutorFit):
    """:class:`~sparknmf.ratings.distributed.ExecutorFit` under the implicit preference model (``implicitPrefs``).

    Each half-step first aggregates the other side's Gram from its blocks (:func:`side_gram`, k×k to the
    driver), then solves every block's rows by :func:`~sparknmf.ratings.fit.implicit_prefs_rows`.  The state
    it returns has μ = 0, ``implicitPrefs`` and the training events as the DataFrame ``seen`` (:func:`seen_pairs`).
    """

    def __init__(self, est, blocks, specs, callback, warm=None, checkpoint=None):
        super().__init__(est, blocks, specs, callback, warm, checkpoint)
        self.options = implicit_prefs_options(est)

    def _warm(self) -> bool:
        return self.options["nonnegative"] or bool(self.options["cg_steps"])

    def _step_body(self, side):
        other = other_side(side)
        gram = side_gram(self.frames[other], self.k)
        # a partial, not a Call: pyspark reads the function's positional arguments (left, right)
        return functools.partial(_prefs_group, side=side, step=self.blocks.steps[side],
                                 other_step=self.blocks.steps[other], ctx=self.blocks.context, k=self.k, gram=gram,
                                 options=self.options)

    def run(self, resume=False):
        state = super().run(resume)
        state.update(mu=0.0, implicitPrefs=True, seen=seen_pairs(self.blocks))
        return state
