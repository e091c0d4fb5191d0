"""MaskedALS with its parameters in the executors (``factorPlacement="executors"``): MLlib's in/out blocks.

With the driver placement (:mod:`sparknmf.ratings.fit`) the user and item
parameters are numpy arrays on the driver between half-steps.  Here they never
leave Spark: each side's parameters are a DataFrame with one row per block
``(kind, key, src, rows, x, ...)``, materialised with its lineage cut
(:func:`~sparknmf.engine.frames.truncate`, a local checkpoint), and only each block's loss, penalty and
a finiteness flag reach the driver.

Layout (users side; items by symmetry), for user block ``key``:

* the **in-block** ``(key, block, aux, out, index, local)``
  (:mod:`sparknmf.ratings.in_blocks`, built once per fit): the block's ratings as stored
  (:mod:`sparknmf.ratings.store`), its **out-lists** ``out``: for every
  item block ``e``, the rows of this user block that item block ``e``'s
  ratings refer to (a user row goes to item block ``e`` when it rated an item
  of ``e``), and the item rows it receives (``index``) with its ratings'
  columns as positions in them (``local``);
* the **parameter row** ``kind 0``: the block's rows ``x`` (b × width);
* **messages** ``kind 1``: the rows ``x[rows]`` sent to item block ``key``
  from user block ``src``, exactly the rows that item block needs.

Two user blocks (step 2), two item blocks (step 2)::

    ratings            user in-blocks (out-lists)           messages after a user half-step
    u0: i0, i3         key 0: u0,u1   out {0: [0, 1], 1: [0]}   to item 0: from 0 rows [0, 1]; from 1 rows [0]
    u1: i1             key 1: u2      out {0: [0], 1: [0]}      to item 1: from 0 rows [0];    from 1 rows [0]
    u2: i0, i2

A user half-step is one Spark job (of two stages: adaptive execution is off
for it, :data:`_ONE_JOB`): the user in-blocks (cached, hash partitioned by key)
are cogrouped with the item half-step's messages to them and, when NNLS starts
from them (:meth:`ExecutorFit._warm`), the blocks' own previous rows; each group solves its rows with
:func:`~sparknmf.kernels.als.half_step` (the rows the messages carry are the
only ones the block's ratings refer to, addressed through ``local``) and writes
its new parameter row and its messages to the item blocks.  Only the messages
are shuffled; the in-blocks stay where they are.

With implicit feedback (SVD++) the item messages carry ``[parameters | y]``
rows (a user block forms its sums z_u from them and sends w_u + z_u), and the
conjugate-gradient state of Y (``VECTORS`` rows ``[y | r | p | Ap]``) lives in
the item blocks: a pass over the user blocks sends each item block the pieces
of its rows (``PIECE`` rows, summed in source order), and only the CG dot
products reach the driver.  The implicit preference model (``implicitPrefs``) solves its rows in
:mod:`sparknmf.ratings.distributed_implicit` on these half-steps (:meth:`ExecutorFit._step_body`).

Same seed, same input: the initial rows are the driver's draws
(:func:`~sparknmf.kernels.seeding.draw_rows`, the chunks of :func:`~sparknmf.kernels.seeding.chunked_draw`),
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
from sparknmf.engine.frames import release, truncate
from sparknmf.engine.session import describe_jobs, is_connect, session_conf
from sparknmf.errors import ConvergenceWarning, ModelFitError, check_objective
from sparknmf.kernels.als import half_step, implicit_apply, implicit_offset, implicit_sums, implicit_system, predict
from sparknmf.kernels.seeding import draw_rows
from sparknmf.ratings.fit import REMEDY, STREAMS
from sparknmf.ratings.in_blocks import in_frame, out_lists, read_out_lists
from sparknmf.ratings.store import SIDES, build_entries, other_side

__all__ = ["ExecutorFit", "collect_blocks", "initial_rows", "out_lists", "read_out_lists"]

logger = logging.getLogger("sparknmf")

STEP_DDL = "kind int, key int, src int, rows binary, x binary, loss double, penalty double, finite boolean"
_STEP_SCHEMA = pa.schema([("kind", pa.int32()), ("key", pa.int32()), ("src", pa.int32()), ("rows", pa.binary()),
                          ("x", pa.binary()), ("loss", pa.float64()), ("penalty", pa.float64()),
                          ("finite", pa.bool_())])
PARAMS, MESSAGE, VECTORS, PIECE = 0, 1, 2, 3  # the kinds of rows of a side's frame
# a step runs as one job: adaptive execution would run its shuffle as a job of its own and re-plan between them
# (0.1-0.3 s more per half-step on local[2]); its partitions are set, so there is nothing to adapt
_ONE_JOB = {"spark.sql.adaptive.enabled": "false"}
_CG_STEPS = 3  # conjugate-gradient steps per iteration for the implicit vectors (as the driver placement)


# -------------------------------------------------------------------------------- lineage
def collect_blocks(frame, width: int) -> np.ndarray:
    """The parameter blocks ``(key, x)`` of ``frame`` stacked in key order on the driver (rows × ``width``)."""
    table = frame.select("key", "x").toArrow().sort_by("key")
    parts = [codec.decode(x) for x in table.column("x").to_pylist()]
    return np.vstack(parts) if parts else np.zeros((0, width))


def materialise(frame, kind=PARAMS):
    """``(truncate(frame), stats)``: a step's output and its rows of ``kind``'s ``key, loss, penalty, finite``.

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
        table = out.filter(F.col("kind") == kind).select(*names).toArrow().sort_by("key")
        rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in names}
    else:
        observation = Observation("sparknmf-als-half-step")
        stats = F.collect_list(F.when(F.col("kind") == kind, F.struct(*names))).alias("rows")
        out = truncate(frame.observe(observation, stats))
        found = sorted((row[0], row[1], row[2], row[3]) for row in observation.get["rows"])
        rows = {name: np.array([row[j] for row in found]) for j, name in enumerate(names)}
    return out, rows


# -------------------------------------------------------------------------------- blocks
def _rows_out(key, X, out, finite=True, loss=0.0, penalty=0.0, send=True, sent=None, kind=PARAMS) -> dict:
    """The output rows of one block: its own row (``kind``, payload ``X``), then a message per destination.

    The messages carry the rows of ``sent`` (default ``X``) each destination of the out-lists ``out`` needs.
    """
    rows = {name: [] for name in _STEP_SCHEMA.names}

    def add(kind_, dst, src, local, payload, loss_, penalty_):
        for name, value in zip(_STEP_SCHEMA.names, (kind_, dst, src, local, payload, loss_, penalty_, finite)):
            rows[name].append(value)

    add(kind, key, -1, b"", codec.encode(np.ascontiguousarray(X)), loss, penalty)
    if send:
        sent = X if sent is None else sent
        for dst, local in read_out_lists(out):
            add(MESSAGE, dst, key, local.astype("<i4").tobytes(), codec.encode(np.ascontiguousarray(sent[local])),
                0.0, 0.0)
    return rows


def initial_rows(key, out, known=None, *, step, count, width, k, seed, stream, std, nonnegative, send,
                 implicit) -> dict:
    """Block ``key``'s initial rows (:data:`STEP_DDL` columns): its parameter row and, if ``send``, its messages.

    The driver's draw (:func:`~sparknmf.kernels.seeding.draw_rows`), of which a warm start overwrites the
    rows ``known = (local rows, values)``: ``width`` parameter columns, then with ``implicit`` maybe k columns
    of y (else zeros).  With ``implicit`` (item side) the messages carry ``[parameters | y]`` rows and a
    ``VECTORS`` row holds the CG state ``[y | r | p | Ap]`` (r, p, Ap zeros).  ``out``: the block's
    :func:`out_lists`.
    """
    start, stop = key * step, min((key + 1) * step, count)
    X, Y = np.zeros((stop - start, width)), np.zeros((stop - start, k))
    draw = draw_rows(start, stop, count, k, seed, stream) * std
    X[:, :k] = np.abs(draw) if nonnegative else draw
    if known is not None:
        local, values = known
        X[local] = values[:, :width]
        if implicit and values.shape[1] > width:
            Y[local] = values[:, width:]
    rows = _rows_out(key, X, out, send=send, sent=np.hstack([X, Y]) if implicit else None)
    if implicit:
        vectors = _rows_out(key, np.hstack([Y, np.zeros((Y.shape[0], 3 * k))]), b"", send=False, kind=VECTORS)
        rows = {name: rows[name] + vectors[name] for name in rows}
    return rows


@block_function
def _initial_blocks(batches, **arguments):
    """mapInArrow body: in-blocks -> their initial rows (:func:`initial_rows` of the driver's draw)."""
    for batch in batches:
        for key, out in zip(batch.column("key").to_pylist(), batch.column("out")):
            yield pa.RecordBatch.from_pydict(initial_rows(key, out.as_buffer(), **arguments), schema=_STEP_SCHEMA)


def _received(right, other_step, index, side, key):
    """The rows the messages of ``right`` carry, stacked by source block (rows × width), checked to be the
    rows ``index`` (global indices of the other side, ascending) the block's ratings refer to."""
    kinds, srcs = right.column("kind").to_numpy(), right.column("src").to_numpy()
    payloads, locals_ = right.column("x"), right.column("rows")
    messages = sorted(np.flatnonzero(kinds == MESSAGE), key=lambda j: srcs[j])
    if not messages:
        raise RuntimeError(f"MaskedALS (executors): {side} block {key} received no rows of the other side")
    received = np.concatenate([srcs[j] * other_step + np.frombuffer(locals_[int(j)].as_buffer(), "<i4")
                               for j in messages])
    if not np.array_equal(received, index):
        raise RuntimeError(f"MaskedALS (executors): {side} block {key} did not receive every row it refers to")
    return np.vstack([codec.decode(payloads[int(j)].as_buffer()) for j in messages])


def _own(right, kind):
    """The payload of the row of ``kind`` in ``right`` (decoded), or None."""
    found = np.flatnonzero(right.column("kind").to_numpy() == kind)
    return codec.decode(right.column("x")[int(found[0])].as_buffer()) if found.size else None


def _block_view(left, right, *, side, step, other_step, ctx):
    """``(key, entries, payload, index, own)`` of one cogroup: the block's entries with their columns as positions
    in the received rows (the in-block's ``local``), those rows (:func:`_received`) and their global indices
    ``index``, and the block's own parameters (or None)."""
    key = left.column("key")[0].as_py()
    entries = build_entries(side, key, step, left.column("block")[0].as_buffer(), left.column("aux")[0].as_buffer(),
                            ctx)
    index = np.frombuffer(left.column("index")[0].as_buffer(), "<i4")
    payload = _received(right, other_step, index, side, key)
    local = np.frombuffer(left.column("local")[0].as_buffer(), "<i4").astype(np.int64)
    return key, dataclasses.replace(entries, cols=local), payload, index, _own(right, PARAMS)


@block_function
def _step_group(left, right, *, side, step, other_step, ctx, spec, other_spec, options, send, implicit):
    """cogroup body of one block: its in-block (``left``) and its own rows and messages (``right``) -> new rows.

    The messages' rows (sorted by source block, ascending within each) are
    the block's view of the other side: the block's columns are re-indexed
    into them, so the kernel gathers the same rows as with the whole array.
    With ``implicit``, a user block's messages are ``[item parameters | y]``
    rows: its sums z_u enter the predictions and the rows it sends (w_u + z_u);
    an item block sends ``[parameters | y]`` with its ``VECTORS`` row's y.
    """
    key, entries, payload, _, own = _block_view(left, right, side=side, step=step, other_step=other_step, ctx=ctx)
    init = np.array(own) if options["nonnegative"] and own is not None else None
    P_other, offset, sent = payload[:, : other_spec.width], None, None
    k = spec.rank
    if implicit and side == "user":
        Z = implicit_sums(entries, payload[:, other_spec.width :])
        offset = implicit_offset(entries, Z, P_other[:, :k])
    X, loss, penalty = half_step(spec, other_spec, entries, P_other, init=init, offset=offset, **options)
    if implicit and side == "user":
        sent = X.copy()
        sent[:, :k] += Z
    elif implicit:
        sent = np.hstack([X, _own(right, VECTORS)[:, :k]])
    rows = _rows_out(key, X, left.column("out")[0].as_buffer(), bool(np.isfinite(X).all()), loss, penalty, send,
                     sent)
    return pa.Table.from_pydict(rows, schema=_STEP_SCHEMA)


@block_function
def _products_group(left, right, *, step, other_step, ctx, specs, mu, mode):
    """cogroup body of one user block for the implicit vectors' problem (:mod:`sparknmf.kernels.als`).

    ``right``: the block's parameters (``PARAMS``, w_u without z_u) and
    ``[item parameters | v]`` messages.  ``mode``: ``"rhs"`` sends each item
    block the block's ``[rhs | A v]`` rows for it, ``"product"`` its ``A v``
    rows (``PIECE`` rows), ``"sums"`` returns the block's parameters with
    z_u of ``v`` (= Y) added to the factors.
    """
    key, entries, payload, index, own = _block_view(left, right, side="user", step=step, other_step=other_step,
                                                    ctx=ctx)
    width, k = specs["item"].width, specs["user"].rank
    P_item, v = payload[:, :width], payload[:, width:]
    if mode == "sums":
        X = own.copy()
        X[:, :k] += implicit_sums(entries, v)
        return pa.Table.from_pydict(_rows_out(key, X, b"", bool(np.isfinite(X).all()), send=False),
                                    schema=_STEP_SCHEMA)
    residual = entries.ratings - predict(specs["user"], specs["item"], own, P_item, entries.rows, entries.cols,
                                         entries, mu)
    grams, rhs = implicit_system(entries, P_item[:, :k], residual)
    product = implicit_apply(entries, grams, v)
    pieces = np.hstack([rhs, product]) if mode == "rhs" else product
    dst = index // other_step
    rows = {name: [] for name in _STEP_SCHEMA.names}
    for target in np.unique(dst):
        mine = dst == target
        values = (PIECE, int(target), key, (index[mine] - target * other_step).astype("<i4").tobytes(),
                  codec.encode(np.ascontiguousarray(pieces[mine])), 0.0, 0.0, True)
        for name, value in zip(_STEP_SCHEMA.names, values):
            rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=_STEP_SCHEMA)


@block_function
def _vector_group(left, right, *, mode, k, lam, scalar):
    """cogroup body of one item block for the implicit vectors' conjugate gradient (the driver's steps).

    ``right``: the block's ``VECTORS`` row ``[y | r | p | Ap]``, ``PIECE``
    rows from the user blocks (summed in source order) and, to send messages,
    its ``PARAMS`` row.  ``mode``:

    * ``"start"``: r = rhs − (A y + λ y), p = r; sends ``[parameters | p]``;
      ``loss`` = r·r, ``penalty`` = y·y (the block's parts);
    * ``"ap"``: Ap = A p + λ p; ``loss`` = p·Ap;
    * ``"update"``: y += α p, r −= α Ap (α = ``scalar``); sends ``[parameters | y]``; ``loss`` = r·r;
    * ``"direction"``: p = r + β p (β = ``scalar``); sends ``[parameters | p]``.
    """
    key = left.column("key")[0].as_py()
    state = _own(right, VECTORS)
    y, r, p, ap = (np.array(state[:, j * k : (j + 1) * k]) for j in range(4))
    kinds, srcs = right.column("kind").to_numpy(), right.column("src").to_numpy()
    acc = None
    for j in sorted(np.flatnonzero(kinds == PIECE), key=lambda j: srcs[j]):
        piece = codec.decode(right.column("x")[int(j)].as_buffer())
        rows = np.frombuffer(right.column("rows")[int(j)].as_buffer(), "<i4")
        if acc is None:
            acc = np.zeros((y.shape[0], piece.shape[1]))
        acc[rows] += piece
    loss = penalty = 0.0
    sent = None
    if mode == "start":
        acc = np.zeros((y.shape[0], 2 * k)) if acc is None else acc
        r = acc[:, :k] - (acc[:, k:] + lam * y)
        p = r.copy()
        loss, penalty, sent = float(np.vdot(r, r)), float(np.vdot(y, y)), p
    elif mode == "ap":
        ap = (np.zeros_like(p) if acc is None else acc) + lam * p
        loss = float(np.vdot(p, ap))
    elif mode == "update":
        y += scalar * p
        r -= scalar * ap
        loss, sent = float(np.vdot(r, r)), y
    else:
        p = r + scalar * p
        sent = p
    state = np.hstack([y, r, p, ap])
    send = sent is not None
    params = _own(right, PARAMS) if send else None
    rows = _rows_out(key, state, left.column("out")[0].as_buffer(), bool(np.isfinite(state).all()), loss, penalty,
                     send, np.hstack([params, sent]) if send else None, kind=VECTORS)
    return pa.Table.from_pydict(rows, schema=_STEP_SCHEMA)


# -------------------------------------------------------------------------------- the loop
class ExecutorFit:
    """The alternating loop of :class:`~sparknmf.ratings.fit.FitLoop` with the parameters in the executors.

    ``ExecutorFit(est, blocks, specs, callback, warm).run()`` returns the state a
    :class:`~sparknmf.ratings.model.MaskedALSModel` is made of, with
    ``"frames"`` (a DataFrame ``(key, x)`` of parameter blocks per side)
    instead of arrays.  Supports biases, time bins, user drift, weights,
    either regularization, ``nonnegative`` and implicit feedback (the CG
    state of the implicit vectors is a frame of item blocks, only its dot
    products reach the driver), warm starts (``warm``: :mod:`~sparknmf.ratings.warm_frames`) and loop
    checkpoints (``checkpoint``, ``run(resume)``: :mod:`~sparknmf.ratings.frame_checkpoint`).

    Between steps it holds, per side, ``frames[side]`` (the side's latest
    output, whose ``PARAMS`` rows are its parameters) and ``inbox[side]``
    (the frame whose ``MESSAGE`` rows are addressed to the side), and with
    implicit feedback ``vectors`` (the item blocks' ``VECTORS`` rows).
    """

    def __init__(self, est, blocks, specs, callback, warm=None, checkpoint=None):
        self.est, self.blocks, self.specs, self.callback, self.warm = est, blocks, specs, callback, warm
        self.checkpoint = checkpoint
        self.k = est.getRank()
        self.implicit = est.getImplicitFeedback() and not est.getImplicitPrefs()  # SVD++ terms
        self.options = dict(mu=blocks.mu, reg=est.getRegParam(), bias_reg=est.getBiasRegParam(),
                            scaled=est.getRegularization() == "weighted", nonnegative=est.getNonnegative())
        self.spark = blocks.spark
        self.partitions = max(1, blocks.partitions)
        self.counts = dict(zip(SIDES, blocks.shape))
        self.in_frames, self.frames, self.inbox, self.vectors = {}, {}, {}, None

    # ------------------------------------------------------------ frames held
    def _held(self):
        return [*self.frames.values(), *self.inbox.values(), self.vectors]

    def _keep(self, **slots):
        """Set the given slots (``frames_user=...``, ``inbox_item=...``, ``vectors=...``), releasing what they drop."""
        before = self._held()
        for name, frame in slots.items():
            if name == "vectors":
                self.vectors = frame
            else:
                kind, side = name.split("_")
                getattr(self, kind)[side] = frame
        after = self._held()
        for frame in before:
            if frame is not None and not any(frame is other for other in after):
                release(frame)

    def _rows(self, *parts):
        """The union of ``(frame, kind)`` rows, hash partitioned by key like the in-blocks."""
        from pyspark.sql import functions as F

        frames = [frame.filter(F.col("kind") == kind) for frame, kind in parts]
        out = frames[0]
        for frame in frames[1:]:
            out = out.unionByName(frame)
        return out.repartition(self.partitions, "key")

    def _cogroup(self, side, right, body, kind=PARAMS):
        with session_conf(self.spark, _ONE_JOB):
            return materialise(self.in_frames[side].groupBy("key").cogroup(right.groupBy("key"))
                               .applyInArrow(body, STEP_DDL), kind)

    def _initial(self, side):
        est = self.est
        arguments = dict(step=self.blocks.steps[side], count=self.counts[side], width=self.specs[side].width,
                         k=self.k, seed=est.getSeed(), stream=STREAMS[side], std=est.getInitStd(),
                         nonnegative=est.getNonnegative(), send=side == "item",
                         implicit=self.implicit and side == "item")
        if self.warm is not None:  # known ids keep the initial model's rows, joined in by the executors
            return truncate(self.warm.initial_blocks(side, self.in_frames[side], arguments))
        return truncate(self.in_frames[side].mapInArrow(Call(_initial_blocks, arguments), STEP_DDL))

    # ------------------------------------------------------------ steps
    def _step_body(self, side):
        """The cogroup body of a ``side`` half-step (``(left, right) -> rows``; a subclass solves another model)."""
        other = other_side(side)
        # a partial, not a Call: pyspark reads the function's positional arguments (left, right)
        return functools.partial(_step_group, side=side, step=self.blocks.steps[side],
                                 other_step=self.blocks.steps[other], ctx=self.blocks.context, spec=self.specs[side],
                                 other_spec=self.specs[other], options=self.options, send=True,
                                 implicit=self.implicit)

    def _warm(self) -> bool:
        """Whether the row solves start from the block's previous rows (NNLS), which are then shuffled to it."""
        return self.options["nonnegative"]

    def half_step(self, side):
        other = other_side(side)
        parts = [(self.inbox[side], MESSAGE)] + ([(self.frames[side], PARAMS)] if self._warm() else [])
        if self.implicit and side == "item":
            parts.append((self.vectors, VECTORS))
        out, stats = self._cogroup(side, self._rows(*parts), self._step_body(side))
        self._keep(**{f"frames_{side}": out, f"inbox_{other}": out})
        return float(np.sum(stats["loss"])), float(np.sum(stats["penalty"])), bool(np.all(stats["finite"]))

    def _products(self, mode, messages):
        """User blocks' pieces of the implicit problem for the vectors the ``messages`` frame carries."""
        body = functools.partial(_products_group, step=self.blocks.steps["user"],
                                 other_step=self.blocks.steps["item"], ctx=self.blocks.context, specs=self.specs,
                                 mu=self.blocks.mu, mode=mode)
        kind = PARAMS if mode == "sums" else PIECE
        return self._cogroup("user", self._rows((messages, MESSAGE), (self.frames["user"], PARAMS)), body, kind)[0]

    def _vector_step(self, mode, pieces=None, scalar=0.0):
        """One conjugate-gradient update of the item blocks' ``VECTORS`` rows: ``(frame, sum of loss, of penalty)``."""
        parts = [(self.vectors, VECTORS)] + ([(pieces, PIECE)] if pieces is not None else [])
        if mode != "ap":
            parts.append((self.frames["item"], PARAMS))
        body = functools.partial(_vector_group, mode=mode, k=self.k, lam=self.est.getImplicitRegParam(),
                                 scalar=scalar)
        out, stats = self._cogroup("item", self._rows(*parts), body, VECTORS)
        if not np.all(stats["finite"]):
            raise ModelFitError(f"MaskedALS: NaN or infinite values in the implicit vectors; the fit was stopped. "
                                f"{REMEDY}")
        return out, float(np.sum(stats["loss"])), float(np.sum(stats["penalty"]))

    def implicit_step(self):
        """The driver placement's conjugate-gradient steps on Y, with Y, r, p, Ap in item blocks; returns y·y before."""
        pieces = self._products("rhs", self.inbox["user"])  # the item half-step sent [parameters | y]
        start, rr, yy = self._vector_step("start", pieces)
        release(pieces)
        self._keep(vectors=start)
        messages = start  # [parameters | p]
        for step in range(_CG_STEPS):
            if rr <= 1e-30:
                break
            pieces = self._products("product", messages)
            ap, p_ap, _ = self._vector_step("ap", pieces)
            release(pieces)
            self._keep(vectors=ap)
            alpha = rr / p_ap
            updated, rr_new, _ = self._vector_step("update", scalar=alpha)
            self._keep(vectors=updated, inbox_user=updated)  # [parameters | y] for the next user half-step
            if step + 1 < _CG_STEPS and rr_new > 1e-30:
                direction, _, _ = self._vector_step("direction", scalar=rr_new / rr)
                self._keep(vectors=direction)
                messages = direction
            rr = rr_new
        return yy

    def run(self, resume=False):
        est, spark = self.est, self.spark
        max_iter, tol = est.getMaxIter(), est.getTol()
        history, start, iteration, stop_reason = [], time.perf_counter(), 0, "max_iter"
        saved = self.checkpoint.load() if self.checkpoint is not None and resume else None
        if saved is not None:  # the saved blocks replace any warm start
            iteration, history, self.warm = saved
            logger.info("resuming from %s at iteration %d", self.checkpoint.directory, iteration)
        try:
            with describe_jobs(spark, "sparknmf: ALS (executors) in-blocks and initial parameters"):
                for side in SIDES:
                    self.in_frames[side] = in_frame(self.blocks, side, self.partitions)
                    self._keep(**{f"frames_{side}": self._initial(side)})
                self._keep(inbox_user=self.frames["item"], vectors=self.frames["item"] if self.implicit else None)
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
                if self.implicit:
                    with describe_jobs(spark, f"sparknmf: ALS (executors) iter {iteration}, implicit vectors"):
                        objective += est.getImplicitRegParam() * self.implicit_step()
                check_objective("MaskedALS", iteration, objective, history, REMEDY)
                history.append(objective)
                elapsed = time.perf_counter() - start
                logger.info("ALS (executors) iteration %d objective %.10g elapsed %.3fs", iteration, objective,
                            elapsed)
                if self.checkpoint is not None and self.checkpoint.due(iteration):
                    self.checkpoint.save(iteration, history, self.frames, self.vectors)
                if self.callback is not None:
                    self.callback(iteration, elapsed, objective)
                if len(history) >= 2 and abs(history[-2] - objective) <= tol * max(abs(history[-2]), 1e-300):
                    stop_reason = "tol"
                    break
            if stop_reason == "max_iter" and tol > 0 and max_iter > 0:
                warnings.warn(f"MaskedALS stopped at maxIter={max_iter} before the relative decrease reached "
                              f"tol={tol}", ConvergenceWarning, stacklevel=4)
            frames = self._final()
        finally:
            self._keep(frames_user=None, frames_item=None, inbox_user=None, inbox_item=None, vectors=None)
            for frame in self.in_frames.values():
                frame.unpersist()
        blocks = self.blocks
        return {
            "frames": frames, "steps": dict(blocks.steps), "counts": dict(self.counts), "P": None, "Z": None,
            "Y": None, "specs": self.specs, "mu": blocks.mu, "ids": {"user": blocks.user_ids, "item": blocks.item_ids},
            "idFrames": blocks.id_frames(),
            "idTypes": dict(blocks.id_types), "context": blocks.context, "history": history, "nIter": iteration,
            "stopReason": stop_reason, "elapsed": time.perf_counter() - start,
        }

    def _final(self):
        """The parameter blocks ``(key, x)`` of each side, materialised alone (user factors with z_u of the final Y).

        Each side's step frame (parameters and messages) is released as soon as its parameters are copied, and
        the in-blocks before either copy (only the implicit sums read them): the copies are the fit's only
        large frames held at once.
        """
        from pyspark.sql import functions as F

        out = {}
        with describe_jobs(self.spark, "sparknmf: ALS (executors) final parameters"):
            sums = self._products("sums", self.inbox["user"]) if self.implicit else None
            for frame in self.in_frames.values():
                frame.unpersist()
            for side in SIDES:
                frame = sums if side == "user" and sums is not None else self.frames[side]
                out[side] = truncate(frame.filter(F.col("kind") == PARAMS).select("key", "x"))
                self._keep(**{f"frames_{side}": None, f"inbox_{other_side(side)}": None})
            release(sums)
        return out
