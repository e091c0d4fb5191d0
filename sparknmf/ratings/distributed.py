"""MaskedALS with its parameters in the executors (``factorPlacement="executors"``): MLlib's in/out blocks.

With the driver placement (:mod:`sparknmf.ratings.fit`) the user and item
parameters are numpy arrays on the driver between half-steps.  Here they never
leave Spark: each side's parameters are a DataFrame with one row per block
``(kind, key, src, rows, x, ...)``, materialised with its lineage cut
(:func:`truncate`, a local checkpoint), and only each block's loss, penalty and
a finiteness flag reach the driver.

Layout (users side; items by symmetry), for user block ``key``:

* the **in-block** ``(key, block, aux, out)``: the block's ratings as stored
  (:mod:`sparknmf.ratings.store`) and its **out-lists** ``out``: for every
  item block ``e``, the rows of this user block that item block ``e``'s
  ratings refer to (computed once from the block's own CSR: a user row goes to
  item block ``e`` when it rated an item of ``e``);
* the **parameter row** ``kind 0``: the block's rows ``x`` (b × width);
* **messages** ``kind 1``: the rows ``x[rows]`` sent to item block ``key``
  from user block ``src``, exactly the rows that item block needs.

Two user blocks (step 2), two item blocks (step 2)::

    ratings            user in-blocks (out-lists)           messages after a user half-step
    u0: i0, i3         key 0: u0,u1   out {0: [0, 1], 1: [0]}   to item 0: from 0 rows [0, 1]; from 1 rows [0]
    u1: i1             key 1: u2      out {0: [0], 1: [0]}      to item 1: from 0 rows [0];    from 1 rows [0]
    u2: i0, i2

A user half-step is one Spark job: the user in-blocks (cached, hash
partitioned by key) are cogrouped with the item half-step's messages to them
and the blocks' own previous rows (warm start of NNLS); each group solves its
rows with :func:`~sparknmf.kernels.als.half_step` (the rows the messages carry
are the only ones the block's ratings refer to: its columns are re-indexed
into them) and writes its new parameter row and its messages to the item
blocks.  Only the messages are shuffled; the in-blocks stay where they are.

Same seed, same input: the initial rows are the driver's draws
(:func:`draw_rows`, the chunks of :func:`~sparknmf.kernels.seeding.chunked_draw`),
the kernels see the same rows in the same order and the losses are summed in
key order, so the parameters equal the driver placement's on the same blocks.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import warnings

import numpy as np
import pyarrow as pa

from sparknmf.engine import codec
from sparknmf.engine.calls import Call, block_function
from sparknmf.engine.session import describe_jobs, is_connect
from sparknmf.errors import ConvergenceWarning, ModelFitError, check_objective
from sparknmf.kernels.als import half_step
from sparknmf.kernels.seeding import CHUNK_ROWS
from sparknmf.ratings.fit import REMEDY, STREAMS
from sparknmf.ratings.store import SIDES, build_entries, other_side

__all__ = ["ExecutorFit", "collect_blocks", "draw_rows", "out_lists", "read_out_lists", "release", "truncate"]

logger = logging.getLogger("sparknmf")

IN_DDL = "key int, block binary, aux binary, out binary"
STEP_DDL = "kind int, key int, src int, rows binary, x binary, loss double, penalty double, finite boolean"
_STEP_SCHEMA = pa.schema([("kind", pa.int32()), ("key", pa.int32()), ("src", pa.int32()), ("rows", pa.binary()),
                          ("x", pa.binary()), ("loss", pa.float64()), ("penalty", pa.float64()),
                          ("finite", pa.bool_())])
_IN_SCHEMA = pa.schema([("key", pa.int32()), ("block", pa.binary()), ("aux", pa.binary()), ("out", pa.binary())])
PARAMS, MESSAGE = 0, 1  # the kinds of rows of a side's frame


# -------------------------------------------------------------------------------- lineage
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


def collect_blocks(frame, width: int) -> np.ndarray:
    """The parameter blocks ``(key, x)`` of ``frame`` stacked in key order on the driver (rows × ``width``)."""
    table = frame.select("key", "x").toArrow().sort_by("key")
    parts = [codec.decode(x) for x in table.column("x").to_pylist()]
    return np.vstack(parts) if parts else np.zeros((0, width))


def materialise(frame):
    """``(truncate(frame), stats)``: the half-step's output and its parameter rows' ``key, loss, penalty, finite``.

    ``stats`` are numpy arrays in key order (the losses are summed in that
    order, as the driver placement sums its blocks').  In classic sessions
    they are observed while the frame is materialised (one Spark job); under
    Spark Connect they are read back from the materialised frame.
    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    names = ("key", "loss", "penalty", "finite")
    if is_connect(frame.sparkSession):
        out = truncate(frame)
        table = out.filter(F.col("kind") == PARAMS).select(*names).toArrow().sort_by("key")
        rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in names}
    else:
        observation = Observation("sparknmf-als-half-step")
        stats = F.collect_list(F.when(F.col("kind") == PARAMS, F.struct(*names))).alias("rows")
        out = truncate(frame.observe(observation, stats))
        found = sorted((row[0], row[1], row[2], row[3]) for row in observation.get["rows"])
        rows = {name: np.array([row[j] for row in found]) for j, name in enumerate(names)}
    return out, rows


# -------------------------------------------------------------------------------- blocks
def draw_rows(start: int, stop: int, rows: int, k: int, seed: int, stream: int) -> np.ndarray:
    """Rows ``start:stop`` of :func:`~sparknmf.kernels.seeding.chunked_draw` ``(rows, k, seed, stream)``.

    Only the chunks that hold those rows are drawn, each by its own generator
    ``default_rng([seed, stream, chunk])``, so a block's initial rows are the
    driver's bit for bit.
    """
    first, last = start // CHUNK_ROWS, -(-stop // CHUNK_ROWS)
    parts = []
    for chunk in range(first, last):
        size = (min(CHUNK_ROWS, rows - chunk * CHUNK_ROWS), k)
        parts.append(np.random.default_rng([seed, stream, chunk]).standard_normal(size))
    drawn = np.vstack(parts) if parts else np.zeros((0, k))
    offset = first * CHUNK_ROWS
    return drawn[start - offset : stop - offset]


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


@block_function
def _in_blocks(batches, *, other_step):
    """mapInArrow body: stored blocks ``(key, block, aux)`` of one side -> in-blocks with their out-lists."""
    for batch in batches:
        out = []
        for block in batch.column("block"):
            csr = codec.decode(block.as_buffer())
            out.append(out_lists(csr.indptr, csr.indices, other_step))
        yield pa.RecordBatch.from_arrays([batch.column("key"), batch.column("block"), batch.column("aux"),
                                          pa.array(out, pa.binary())], schema=_IN_SCHEMA)


def _rows_out(key, X, out, finite=True, loss=0.0, penalty=0.0, send=True) -> dict:
    """The output rows of one block: its parameter row, then a message per destination of its out-lists."""
    rows = {name: [] for name in _STEP_SCHEMA.names}

    def add(kind, dst, src, local, payload, loss_, penalty_):
        for name, value in zip(_STEP_SCHEMA.names, (kind, dst, src, local, payload, loss_, penalty_, finite)):
            rows[name].append(value)

    add(PARAMS, key, -1, b"", codec.encode(X), loss, penalty)
    if send:
        for dst, local in read_out_lists(out):
            add(MESSAGE, dst, key, local.astype("<i4").tobytes(), codec.encode(np.ascontiguousarray(X[local])), 0.0,
                0.0)
    return rows


@block_function
def _initial_blocks(batches, *, step, count, width, k, seed, stream, std, nonnegative, send):
    """mapInArrow body: in-blocks -> their initial parameter rows (the driver's draw) and, if ``send``, messages."""
    for batch in batches:
        for key, out in zip(batch.column("key").to_pylist(), batch.column("out")):
            start, stop = key * step, min((key + 1) * step, count)
            X = np.zeros((stop - start, width))
            draw = draw_rows(start, stop, count, k, seed, stream) * std
            X[:, :k] = np.abs(draw) if nonnegative else draw
            yield pa.RecordBatch.from_pydict(_rows_out(key, X, out.as_buffer(), send=send), schema=_STEP_SCHEMA)


@block_function
def _step_group(left, right, *, side, step, other_step, ctx, spec, other_spec, options, send):
    """cogroup body of one block: its in-block (``left``) and its own rows and messages (``right``) -> new rows.

    The messages' rows (sorted by source block, ascending within each) are
    the block's view of the other side: the block's columns are re-indexed
    into them, so the kernel gathers the same rows as with the whole array.
    """
    key = left.column("key")[0].as_py()
    entries = build_entries(side, key, step, left.column("block")[0].as_buffer(), left.column("aux")[0].as_buffer(),
                            ctx)
    kinds = right.column("kind").to_numpy()
    payloads, srcs, locals_ = right.column("x"), right.column("src").to_numpy(), right.column("rows")
    own = [codec.decode(payloads[int(j)].as_buffer()) for j in np.flatnonzero(kinds == PARAMS)]
    messages = sorted(np.flatnonzero(kinds == MESSAGE), key=lambda j: srcs[j])
    index = np.concatenate([srcs[j] * other_step + np.frombuffer(locals_[int(j)].as_buffer(), "<i4")
                            for j in messages]) if messages else np.zeros(0, np.int64)
    P_other = (np.vstack([codec.decode(payloads[int(j)].as_buffer()) for j in messages]) if messages
               else np.zeros((0, other_spec.width)))
    local = np.searchsorted(index, entries.cols)
    if entries.cols.size and (local.max() >= index.size or not np.array_equal(index[local], entries.cols)):
        raise RuntimeError(f"MaskedALS (executors): {side} block {key} did not receive every row it refers to")
    entries = dataclasses.replace(entries, cols=local)
    init = np.array(own[0]) if options["nonnegative"] and own else None
    X, loss, penalty = half_step(spec, other_spec, entries, P_other, init=init, **options)
    rows = _rows_out(key, X, left.column("out")[0].as_buffer(), bool(np.isfinite(X).all()), loss, penalty, send)
    return pa.Table.from_pydict(rows, schema=_STEP_SCHEMA)


# -------------------------------------------------------------------------------- the loop
class ExecutorFit:
    """The alternating loop of :class:`~sparknmf.ratings.fit.FitLoop` with the parameters in the executors.

    ``ExecutorFit(est, blocks, specs, callback).run()`` returns the state a
    :class:`~sparknmf.ratings.model.MaskedALSModel` is made of, with
    ``"frames"`` (a DataFrame ``(key, x)`` of parameter blocks per side)
    instead of arrays.  Supports biases, time bins, user drift, weights,
    either regularization and ``nonnegative``; not implicit feedback, warm
    starts or loop checkpoints (:func:`check_supported`).
    """

    def __init__(self, est, blocks, specs, callback):
        self.est, self.blocks, self.specs, self.callback = est, blocks, specs, callback
        self.k = est.getRank()
        self.options = dict(mu=blocks.mu, reg=est.getRegParam(), bias_reg=est.getBiasRegParam(),
                            scaled=est.getRegularization() == "weighted", nonnegative=est.getNonnegative())
        self.spark = blocks.spark
        self.partitions = max(1, blocks.partitions)
        self.counts = dict(zip(SIDES, blocks.shape))
        self.in_frames = {}
        self.frames = {}

    def _in_frame(self, side):
        from pyspark.sql import functions as F

        code = SIDES.index(side)
        stored = self.blocks.store.filter(F.col("side") == code).select("key", "block", "aux")
        body = Call(_in_blocks, dict(other_step=self.blocks.steps[other_side(side)]))
        return stored.mapInArrow(body, IN_DDL).repartition(self.partitions, "key").cache()

    def _initial(self, side, send):
        est = self.est
        body = Call(_initial_blocks, dict(step=self.blocks.steps[side], count=self.counts[side],
                                          width=self.specs[side].width, k=self.k, seed=est.getSeed(),
                                          stream=STREAMS[side], std=est.getInitStd(),
                                          nonnegative=est.getNonnegative(), send=send))
        return truncate(self.in_frames[side].mapInArrow(body, STEP_DDL))

    def half_step(self, side):
        from pyspark.sql import functions as F

        other = other_side(side)
        right = (self.frames[other].filter(F.col("kind") == MESSAGE)
                 .unionByName(self.frames[side].filter(F.col("kind") == PARAMS))
                 .repartition(self.partitions, "key"))
        # a partial, not a Call: pyspark reads the function's positional arguments (left, right)
        body = functools.partial(_step_group, side=side, step=self.blocks.steps[side],
                                 other_step=self.blocks.steps[other], ctx=self.blocks.context, spec=self.specs[side],
                                 other_spec=self.specs[other], options=self.options, send=True)
        out, stats = materialise(self.in_frames[side].groupBy("key").cogroup(right.groupBy("key"))
                                 .applyInArrow(body, STEP_DDL))
        release(self.frames[side])
        self.frames[side] = out
        return float(np.sum(stats["loss"])), float(np.sum(stats["penalty"])), bool(np.all(stats["finite"]))

    def run(self):
        est, spark = self.est, self.spark
        max_iter, tol = est.getMaxIter(), est.getTol()
        history, start, iteration, stop_reason = [], time.perf_counter(), 0, "max_iter"
        try:
            with describe_jobs(spark, "sparknmf: ALS (executors) in-blocks and initial parameters"):
                for side in SIDES:
                    self.in_frames[side] = self._in_frame(side)
                    self.frames[side] = self._initial(side, send=side == "item")
            penalty = {}
            while iteration < max_iter:
                iteration += 1
                for side in SIDES:
                    with describe_jobs(spark, f"sparknmf: ALS (executors) iter {iteration}, update {side}s"):
                        loss, penalty[side], finite = self.half_step(side)
                    if not finite:
                        raise ModelFitError(f"MaskedALS: NaN or infinite values in the {side} parameters at "
                                            f"iteration {iteration}; the fit was stopped. {REMEDY}")
                objective = loss + penalty["user"] + penalty["item"]
                check_objective("MaskedALS", iteration, objective, history, REMEDY)
                history.append(objective)
                elapsed = time.perf_counter() - start
                logger.info("ALS (executors) iteration %d objective %.10g elapsed %.3fs", iteration, objective,
                            elapsed)
                if self.callback is not None:
                    self.callback(iteration, elapsed, objective)
                if len(history) >= 2 and abs(history[-2] - objective) <= tol * max(abs(history[-2]), 1e-300):
                    stop_reason = "tol"
                    break
        except BaseException:
            for frame in self.frames.values():
                release(frame)
            raise
        finally:
            for frame in self.in_frames.values():
                frame.unpersist()
        if stop_reason == "max_iter" and tol > 0 and max_iter > 0:
            warnings.warn(f"MaskedALS stopped at maxIter={max_iter} before the relative decrease reached tol={tol}",
                          ConvergenceWarning, stacklevel=4)
        from pyspark.sql import functions as F

        blocks, frames = self.blocks, {}
        with describe_jobs(spark, "sparknmf: ALS (executors) final parameters"):
            for side in SIDES:  # the parameter rows only: the last messages are dropped
                frames[side] = truncate(self.frames[side].filter(F.col("kind") == PARAMS).select("key", "x"))
                release(self.frames[side])
        return {
            "frames": frames, "steps": dict(blocks.steps), "counts": dict(self.counts), "P": None, "Z": None,
            "Y": None, "specs": self.specs,
            "mu": blocks.mu, "ids": {"user": blocks.user_ids, "item": blocks.item_ids},
            "idTypes": dict(blocks.id_types), "context": blocks.context, "history": history, "nIter": iteration,
            "stopReason": stop_reason, "elapsed": time.perf_counter() - start,
        }
