"""V as a block-partitioned matrix on Spark, and the Spark half-step.

Layout
------
V (n×m) is cut into a p×q grid of blocks.  Block rows have ``row_step =
ceil(n/p)`` rows and block columns ``col_step = ceil(m/q)`` columns, so row
``r`` lives in block row ``r // row_step`` at local index ``r % row_step``.
Each block is one DataFrame row ``(bi int, bj int, block binary)``; the
payload is a dense ndarray or a CSR matrix (:mod:`sparknmf.engine.codec`).

A 4×5 matrix on a 2×2 grid (row_step 2, col_step 3)::

        col 0 1 2 | 3 4
    row 0   1 . . | . 2          blocks.collect() ->
    row 1   . 3 . | . .            Row(bi=0, bj=0, block=<CSR 2×3: 1 at (0,0), 3 at (1,1)>)
        ----------+----            Row(bi=0, bj=1, block=<CSR 2×2: 2 at (0,1)>)
    row 2   . . 4 | . .            Row(bi=1, bj=0, block=<CSR 2×3: 4 at (0,2)>)
    row 3   . . . | 5 .            Row(bi=1, bj=1, block=<CSR 2×2: 5 at (1,0)>)

User ids (any type) are mapped once to dense indices 0..n-1 in sorted order;
``row_ids[r]`` / ``col_ids[c]`` give them back and are saved with a model.

Half-steps
----------
To update the rows of X (W, or Hᵀ) given Y, every block V_ij meets X_i and
Y_j.  The factors are small next to V (n×k and m×k) and live on the driver
between half-steps, so they are shipped as broadcast DataFrames and joined to
the cached blocks: V never moves.  With q = 1 (one block column, the
row-partitioned layout) a single task holds everything row block i needs and
runs the whole update (:func:`~sparknmf.kernels.updates.half_step_block`).
With q > 1 each task computes its cross-product piece, the pieces are summed
by block row key (one shuffle of n×k numbers), and the update runs after the
sum: the 2-D layout of MPI-FAUN (Kannan, Ballard & Park 2016).  Grams (k×k)
and data terms come back to the driver with the new factor blocks, so each
half-step is one Spark job and the plan never grows across iterations.  The
bodies those jobs run are in :mod:`sparknmf.engine.block_tasks`; block
DataFrames from the driver are made and placed by :mod:`sparknmf.engine.frames`.

With the executors factor placement, X and Y are
:class:`~sparknmf.engine.factors.FactorFrame` s instead: V's blocks meet
their X_i and Y_j by a union grouped on the block key, the same bodies run,
and the new blocks of X stay in the executors (:meth:`BlockMatrix._frame_step`).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sparknmf.engine import codec
from sparknmf.engine.block_tasks import (
    PIECE_DDL,
    STEP_DDL,
    finish_task,
    fused_task,
    meet_task,
    piece_task,
    product_task,
    sum_task,
)
from sparknmf.engine.channel import frame_limit
from sparknmf.engine.factors import FactorFrame, materialise
from sparknmf.engine.frames import local_frame, spread_blocks
from sparknmf.engine.resident import resident_fit
from sparknmf.engine.session import describe_jobs, parallelism
from sparknmf.kernels.updates import update_block
from sparknmf.kernels.weighted import WeightedBlock

__all__ = ["BLOCK_SCHEMA", "BlockMatrix", "default_grid", "grid_steps", "split_rows"]

_TARGET_BLOCK_NNZ = 1 << 24  # ~16M stored values (128 MB) per block: few waves, tasks well under 1 GB
BLOCK_SCHEMA = "bi int, bj int, block binary"


def default_grid(spark, shape, nnz: int) -> tuple[int, int]:
    """Automatic p×q: a multiple of the cores, at least one block per core, blocks of at most ~16M values.

    The row-partitioned layout (q = 1) is used unless V is wider than tall,
    in which case the grid is transposed (p = 1); only very large matrices
    would need both, and then the longer side is split first.
    """
    n, m = shape
    slots = parallelism(spark)
    blocks = slots * math.ceil(nnz / (_TARGET_BLOCK_NNZ * slots))  # whole waves: every core as busy
    blocks = max(slots, blocks)
    if n >= m:
        return min(blocks, n), 1
    return 1, min(blocks, m)


def grid_steps(shape, grid) -> tuple[int, int]:
    """``(row_step, col_step)``: rows per block row and columns per block column of V (n×m) on a p×q grid."""
    n, m = shape
    p, q = grid
    if p < 1 or q < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    row_step, col_step = math.ceil(n / min(p, n)), math.ceil(m / min(q, m))
    return row_step, col_step


def split_rows(X, step):
    """Row blocks of X with ``step`` rows each (the last may be shorter)."""
    return [X[s : s + step] for s in range(0, X.shape[0], step)]


class BlockMatrix:
    """V (n×m) as a p×q grid of blocks in a cached DataFrame (see module docstring).

    Build it with :meth:`from_array`, :meth:`from_coordinates` or
    :meth:`from_vectors`; the constructor only checks the invariants.

    Attributes
    ----------
    spark : SparkSession
    blocks : DataFrame with columns ``bi int, bj int, block binary``
    shape : (n, m)
    grid : (p, q)
    row_step, col_step : int
    stats : dict with ``nnz``, ``sum``, ``sumsq``, ``max``
    row_ids, col_ids : pyarrow Array or None
        User ids of the rows / columns in index order (None: the indices).
    weighted : bool
        The blocks are WeightedBlocks (per-entry weights; weighted rules).
    partitions : int
        Partitions of ``blocks``: one per block, at most one per core (a
        partition then holds a run of consecutive blocks).
    """

    execution = "auto"  # how fits run: sparknmf.engine.resident.EXECUTION_MODES
    broadcast_bytes = 64 << 20  # factors up to this size travel in the task closure
    driver_reduce_rows = 1 << 20  # cross pieces for up to this many rows are summed on the driver

    def __init__(self, spark, blocks, shape, grid, stats, row_ids=None, col_ids=None, weighted=False,
                 partitions=None):
        n, m = shape
        if n < 1 or m < 1:
            raise ValueError(f"shape must be positive, got {shape}")
        self.row_step, self.col_step = grid_steps(shape, grid)
        self.grid = (math.ceil(n / self.row_step), math.ceil(m / self.col_step))
        for ids, size, what in ((row_ids, n, "row_ids"), (col_ids, m, "col_ids")):
            if ids is not None and len(ids) != size:
                raise ValueError(f"{what} has {len(ids)} entries for {size} indices")
        self.spark = spark
        self.blocks = blocks
        self.weighted = weighted
        self.shape = (int(n), int(m))
        self.stats = stats
        self.row_ids = row_ids
        self.col_ids = col_ids
        self.partitions = partitions or self.grid[0] * self.grid[1]
        self._resident = None

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_array(cls, spark, V, grid=None, row_ids=None, col_ids=None):
        """Distribute a validated ndarray, CSR matrix or WeightedBlock (n×m) from the driver."""
        from sparknmf.engine.local import matrix_stats

        stats = matrix_stats(V)
        grid = grid or default_grid(spark, V.shape, stats["nnz"])
        row_step, col_step = grid_steps(V.shape, grid)
        V = V.tocsr() if sp.issparse(V) else V
        rows = []
        for bi, first_row in enumerate(range(0, V.shape[0], row_step)):
            band = V if isinstance(V, WeightedBlock) else V[first_row : first_row + row_step]
            if sp.issparse(band):
                band = band.tocsc()
            for bj, first_col in enumerate(range(0, V.shape[1], col_step)):
                if isinstance(V, WeightedBlock):
                    block = V.block(slice(first_row, first_row + row_step), slice(first_col, first_col + col_step))
                else:
                    block = band[:, first_col : first_col + col_step]
                    block = block.tocsr() if sp.issparse(block) else block
                rows.append((bi, bj, codec.encode(block)))
        blocks = spread_blocks(local_frame(spark, rows), len(rows), parallelism(spark))
        return cls(spark, blocks, V.shape, grid, stats, row_ids, col_ids, weighted=isinstance(V, WeightedBlock),
                   partitions=min(len(rows), parallelism(spark)))

    # ------------------------------------------------------------------ lifecycle
    def unpersist(self):
        """Release the cached blocks."""
        self.blocks.unpersist()

    def describe(self, text):
        """Context manager naming the Spark jobs of a half-step (resident tasks start none)."""
        return contextlib.nullcontext() if self._resident is not None else describe_jobs(self.spark, text)

    def __repr__(self):
        return f"BlockMatrix(shape={self.shape}, grid={self.grid}, nnz={self.stats['nnz']})"

    # ------------------------------------------------------------------ half-steps
    def _orient(self, side):
        """(key column, other column, step of X's blocks, step of Y's blocks, fused?)."""
        if side == "W":
            return "bi", "bj", self.row_step, self.col_step, self.grid[1] == 1
        return "bj", "bi", self.col_step, self.row_step, self.grid[0] == 1

    def _encode(self, side, X, Y):
        """X's and Y's row blocks as payloads, indexed by block key (``xs`` None without X)."""
        _, _, x_step, y_step, _ = self._orient(side)
        xs = None if X is None else [codec.encode(b) for b in split_rows(X, x_step)]
        return xs, [codec.encode(b) for b in split_rows(Y, y_step)]

    def _route(self, side, xs, ys):
        """The blocks, plus how each task finds its X_i and Y_j.

        Factors up to ``broadcast_bytes`` travel in the task closure (Spark
        broadcasts large closures once per executor); larger ones are joined
        to the blocks by key as broadcast DataFrames.  Returns
        ``(frame, xs, ys)`` where ``xs``/``ys`` are lists of block payloads
        indexed by block key, or None when the frame carries an ``x``/``y``
        column instead.
        """
        from pyspark.sql import functions as F

        key, other, _, _, _ = self._orient(side)
        frame = self.blocks.withColumnRenamed(key, "key")
        size = sum(map(len, ys)) + (sum(map(len, xs)) if xs else 0)
        if size <= self.broadcast_bytes:
            return frame, xs, ys
        for payloads, on, column in ((ys, other, "y"), (xs, "key", "x")):
            if payloads is not None:
                table = pa.table({on: pa.array(range(len(payloads)), pa.int32()), column: payloads})
                frame = frame.join(F.broadcast(self.spark.createDataFrame(table)), on)
        return frame, None, None

    def _map(self, side, X, Y, make_body, ddl):
        """Run ``make_body(xs, ys)``, a mapInArrow body, over every block; its output as an Arrow table.

        On the resident tasks when a fit has them (:meth:`serving`), else as a Spark job.
        """
        xs, ys = self._encode(side, X, Y)
        if self._resident is not None:
            key = self._orient(side)[0]

            def body_for(held):  # only the X and Y blocks of this task's blocks
                mine = [(bi, bj) if key == "bi" else (bj, bi) for bi, bj in held]
                x_keys, y_keys = {i for i, _ in mine}, {j for _, j in mine}
                return make_body(None if xs is None else [x if i in x_keys else None for i, x in enumerate(xs)],
                                 [y if j in y_keys else None for j, y in enumerate(ys)])

            return self._resident.run(key, body_for)
        frame, xs, ys = self._route(side, xs, ys)
        return frame.mapInArrow(make_body(xs, ys), ddl).toArrow()

    @contextlib.contextmanager
    def serving(self, description: str):
        """Context of one fit: its half-steps run on resident tasks when :attr:`execution` allows.

        ``execution`` is ``"auto"``, ``"resident"`` or ``"jobs"``
        (:func:`sparknmf.engine.resident.use_resident`).
        """
        if self._resident is not None:
            yield self
            return
        n, m = self.shape
        stored = min(8 * n * m, 16 * self.stats["nnz"]) * (2 if self.weighted else 1)
        # k and the randomized SVD's sample width are at most min(n, m)
        limit = frame_limit(stored, n + m, min(n, m), self.grid[0] * self.grid[1])
        with resident_fit(self.spark, self.execution, self.blocks, self.partitions, stored, description,
                          frame_limit=limit) as tasks:
            self._resident = tasks
            try:
                yield self
            finally:
                self._resident = None

    def half_step(self, side, rule, params, X, Y, gram_y, *, update=True, carry=None):
        """Update the rows of X given Y on Spark; same contract as the local backend.

        Returns ``(X_new, gram(X_new), data, carry)`` with X_new assembled on
        the driver.  When several blocks contribute to each row block of X
        (q > 1 for W, p > 1 for H), the cross-product pieces are summed by
        key: on the driver, which then runs the update, when X has at most
        ``driver_reduce_rows`` rows (the pieces are then no bigger than X
        itself) or the tasks are resident, else by a grouped Spark stage that
        also runs the update.

        When each task holds a whole block row (fused) and Y is small, the
        tasks also return Y's cross-product pieces at the new X: summed, they
        are the ``carry`` that lets Y's next half-step run on the driver
        without a Spark job.  A half-step given a ``carry`` runs no job.
        """
        if isinstance(X, FactorFrame):
            return (*self._frame_step(side, rule, params, X, Y, gram_y, update), None)
        if carry is not None:
            X_new, gram = update_block(rule, params, side, gram_y, carry[0], X, update=update)
            return X_new, gram, carry[1], None
        key, other, step, _, fused = self._orient(side)
        if fused:
            with_carry = update and Y.shape[0] <= self.driver_reduce_rows
            table = self._map(side, X, Y, lambda xs, ys: fused_task(rule, params, side, gram_y, update, xs, ys,
                                                                    with_carry), STEP_DDL)
            return (*_assemble(table, rule), _carry(table) if with_carry else None)
        if X.shape[0] <= self.driver_reduce_rows or self._resident is not None:
            pieces = self._map(side, X, Y, lambda xs, ys: piece_task(rule, side, other, xs, ys), PIECE_DDL)
            return (*_reduce_on_driver(pieces, rule, params, side, gram_y, X, step, update), None)
        frame, xs, ys = self._route(side, *self._encode(side, X, Y))
        pieces = frame.mapInArrow(piece_task(rule, side, other, xs, ys), PIECE_DDL)
        finish = finish_task(rule, params, side, gram_y, update)
        table = pieces.groupBy("key").applyInArrow(finish, STEP_DDL).toArrow()
        return (*_assemble(table, rule), None)

    def _frame_step(self, side, rule, params, X, Y, gram_y, update):
        """The half-step of the executors placement: X and Y are :class:`FactorFrame` s.

        V's blocks are joined with X's blocks on their key and with Y's on the
        other key, the same task bodies run (fused, or pieces summed by key
        then finished), and the new blocks of X are materialised in the
        executors.  Returns ``(X_new, gram, data)``: only Grams and data terms
        are collected.
        """
        if self._resident is not None:
            raise ValueError("the executors factor placement runs Spark jobs, not resident tasks")
        key, other, step, y_step, fused = self._orient(side)
        if (X.step, Y.step) != (step, y_step):
            raise ValueError(f"factor blocks of {X.step} and {Y.step} rows do not fit V's grid ({step}, {y_step})")
        meetings = self._meetings(side, X, Y).groupBy("key", "other")
        if fused:
            body = fused_task(rule, params, side, gram_y, update, None, None, False)
            out = meetings.applyInArrow(meet_task(body, other), STEP_DDL)
        else:
            pieces = meetings.applyInArrow(meet_task(piece_task(rule, side, other, None, None), other), PIECE_DDL)
            out = pieces.groupBy("key").applyInArrow(finish_task(rule, params, side, gram_y, update), STEP_DDL)
        return materialise(out, X.rows, X.k, step, rule.statistic.name == "kl")

    def _frame_product(self, side, Y):
        """``V @ Y`` or ``Vᵀ @ Y`` for a FactorFrame Y: pieces per block, summed by block row in the executors."""
        key, other, step, y_step, _ = self._orient(side)
        if Y.step != y_step:
            raise ValueError(f"factor blocks of {Y.step} rows do not fit V's grid ({y_step})")
        rows = self.shape[0] if side == "W" else self.shape[1]
        meetings = self._meetings(side, None, Y).groupBy("key", "other")
        pieces = meetings.applyInArrow(meet_task(product_task(side, other, None), other), PIECE_DDL)
        return materialise(pieces.groupBy("key").applyInArrow(sum_task(), STEP_DDL), rows, Y.k, step, False)[0]

    def _meetings(self, side, X, Y):
        """V's blocks, X's blocks (None: none) and Y's blocks as rows ``(key, other, block, x, y)`` of one DataFrame.

        Each X_i is repeated for every block column (other) and each Y_j for
        every block row (key), so that grouping by ``(key, other)`` puts V_ij,
        X_i and Y_j together.  A union and not joins: Spark estimates a join's
        size as the product of its inputs', and the checkpointed factors keep
        that estimate, so after a few iterations its digits alone would grow
        without bound; a union's estimate is a sum.
        """
        from pyspark.sql import functions as F

        key, other, _, _, _ = self._orient(side)
        none = F.lit(None).cast("binary")
        keys, others = self.grid if side == "W" else self.grid[::-1]
        v = self.blocks.select(F.col(key).alias("key"), F.col(other).alias("other"), "block", none.alias("x"),
                               none.alias("y"))
        y = Y.frame.select(F.explode(F.sequence(F.lit(0), F.lit(keys - 1))).alias("key"), F.col("key").alias("other"),
                           none.alias("block"), none.alias("x"), F.col("x").alias("y"))
        if X is None:  # a product: V's blocks meet Y's only
            return v.unionByName(y)
        x = X.frame.select("key", F.explode(F.sequence(F.lit(0), F.lit(others - 1))).alias("other"),
                           none.alias("block"), "x", none.alias("y"))
        return v.unionByName(x).unionByName(y)

    def multiply(self, side, Y):
        """``V @ Y`` (side "W", Y m×l) or ``Vᵀ @ Y`` (side "H", Y n×l).

        Assembled on the driver for an array Y; for a :class:`FactorFrame` Y
        (the executors placement) a FactorFrame in the executors, with only
        its Gram (l×l) collected.
        """
        if isinstance(Y, FactorFrame):
            return self._frame_product(side, Y)
        _, other, _, _, _ = self._orient(side)
        table = self._map(side, None, Y, lambda xs, ys: product_task(side, other, ys), PIECE_DDL)
        rows = self.shape[0] if side == "W" else self.shape[1]
        return _sum_pieces(table, rows, self._orient(side)[2])


def _in_key_order(table, *names):
    """The columns ``names`` of a small result table as lists, rows in key order (task order never matters)."""
    keys = table.column("key").to_pylist()
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [[column[i] for i in order] for column in (table.column(name).to_pylist() for name in names)]


def _assemble(table, rule):
    """(X_new, gram, data) from the rows of a half-step's result table."""
    blocks, grams, data = _in_key_order(table, "x", "gram", "data")
    gram = np.sum([codec.decode(g) for g in grams], axis=0)
    gram = gram.ravel() if rule.statistic.name == "kl" else gram
    return np.vstack([codec.decode(x) for x in blocks]), gram, float(np.sum(data))


def _carry(table):
    """Sum the carried cross pieces of the other factor, in block order: ``(cross, data)``."""
    pieces, data = _in_key_order(table, "carry", "carry_data")
    return np.sum([codec.decode(c) for c in pieces], axis=0), float(np.sum(data))


def _sum_pieces(pieces, rows, step):
    """Add the ``cross`` pieces (r_b × any width) into rows ``key*step...`` of a (rows × width) array.

    Summed in (key, part) order, so task order never matters.
    """
    pieces = pieces.sort_by([("key", "ascending"), ("part", "ascending")])
    out = None
    for key, payload in zip(pieces.column("key").to_pylist(), pieces.column("cross").to_pylist()):
        piece = codec.decode(payload)
        out = np.zeros((rows, piece.shape[1])) if out is None else out
        out[key * step : key * step + piece.shape[0]] += piece
    return out


def _reduce_on_driver(pieces, rule, params, side, gram_y, X, step, update):
    """Sum collected cross pieces by key and run the update on the driver: ``(X_new, gram, data)``."""
    cross = _sum_pieces(pieces, X.shape[0], step).astype(X.dtype, copy=False)
    X_new, gram = update_block(rule, params, side, gram_y, cross, X, update=update)
    return X_new, gram, float(np.sum(pieces.column("data").to_numpy()))
