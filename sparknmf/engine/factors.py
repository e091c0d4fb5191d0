"""Factor blocks in the executors: the ``executors`` factor placement (:mod:`sparknmf.engine.placement`).

A factor X (W, n×k, or Hᵀ, m×k) is cut into row blocks of ``step`` rows, the
same steps as V's grid (``row_step`` for W, ``col_step`` for Hᵀ), so that
block ``key`` holds rows ``key*step ... key*step + step - 1``.  Each block is
one DataFrame row ``(key int, x binary)`` with a :mod:`sparknmf.engine.codec`
payload.  A :class:`FactorFrame` is such a DataFrame materialised in the
executors, plus what the loop needs on the driver: its k×k Gram.

Materialising cuts the lineage (``localCheckpoint``): every half-step starts
from the checkpointed blocks, so the plan does not grow with the iterations
and 500 of them run without a checkpoint directory.  A replaced frame is
released at once (classic sessions: its checkpoint blocks are unpersisted;
Spark Connect: the server drops the relation when the handle goes, and
Spark's cleaner its blocks).

Random starts are drawn in the executors, each block from the chunks of
:func:`sparknmf.kernels.seeding.chunked_draw` that cover its rows
(:func:`~sparknmf.kernels.seeding.draw_rows`), so they are the numbers of the
driver placement, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sparknmf.engine import codec
from sparknmf.engine.calls import Call, block_function
from sparknmf.engine.frames import ddl, release, truncate
from sparknmf.engine.session import parallelism
from sparknmf.kernels import seeding

__all__ = ["FACTOR_DDL", "MADE_SCHEMA", "FactorFrame", "factor_from_array", "finish_rows", "materialise",
           "random_factor"]

FACTOR_SCHEMA = pa.schema([("key", pa.int32()), ("x", pa.binary())])
FACTOR_DDL = ddl(FACTOR_SCHEMA)
# new blocks of a factor, as materialise reads them: the rows, their Gram (k×k, or 1ᵀX for KL), a data term
MADE_SCHEMA = pa.schema([("key", pa.int32()), ("x", pa.binary()), ("gram", pa.binary()), ("data", pa.float64())])
_ROWS_DDL = "index bigint, features array<double>"


class FactorFrame:
    """A factor X (rows×k) as row blocks in the executors (see module docstring).

    Attributes
    ----------
    frame : DataFrame ``(key int, x binary)``, materialised
    rows, k, step : int
        X's shape and the rows per block (the last block may be shorter).
    gram : the statistic's Gram of X (``XᵀX``, k×k, or ``1ᵀX``, k, for KL)
    """

    def __init__(self, frame, rows: int, k: int, step: int, gram, held=None):
        if rows < 1 or k < 1 or step < 1:
            raise ValueError(f"a factor frame needs positive rows, k and step, got {rows}, {k}, {step}")
        self.frame, self.rows, self.k, self.step, self.gram = frame, int(rows), int(k), int(step), gram
        self._held = held  # the checkpointed DataFrame behind ``frame``

    @property
    def shape(self):
        return self.rows, self.k

    @property
    def blocks(self) -> int:
        return -(-self.rows // self.step)

    def release(self):
        """Drop the materialised blocks (the handle is unusable afterwards)."""
        held, self._held, self.frame = self._held, None, None
        if held is None:
            return
        release(held)  # classic: now; Connect: the server releases the relation with its last handle

    def collect(self) -> np.ndarray:
        """X (rows×k) on the driver: collects every block (only on request; see the placement's budget)."""
        table = self.frame.toArrow()
        keys = table.column("key").to_pylist()
        payloads = table.column("x").to_pylist()
        return np.vstack([codec.decode(payloads[i]) for i in sorted(range(len(keys)), key=keys.__getitem__)])

    def normal_gram(self) -> np.ndarray:
        """``XᵀX`` (k×k), computed by the executors and summed in key order (only k×k per block is collected)."""
        table = self.frame.mapInArrow(Call(_gram_run, {}), "key int, gram binary").toArrow().sort_by("key")
        return _gram_sum(table.column("gram").to_pylist(), False)

    def times(self, M) -> FactorFrame:
        """``X @ M`` (rows × l, for M k×l) computed by the executors, with its Gram; X is kept."""
        M = np.asarray(M, np.float64)
        body = Call(_times_run, dict(M=M))
        return materialise(self.frame.mapInArrow(body, ddl(MADE_SCHEMA)), self.rows, M.shape[1], self.step,
                           False)[0]

    def rows_frame(self):
        """DataFrame ``(index bigint, features array<double>)``: one row per row of X, computed by the executors."""
        return self.frame.mapInArrow(Call(_explode_run, dict(step=self.step)), _ROWS_DDL)

    def __repr__(self):
        return f"FactorFrame(shape={self.shape}, step={self.step})"


@block_function
def _gram_run(batches):
    for batch in batches:
        keys, grams = [], []
        for key, payload in zip(batch.column("key").to_pylist(), batch.column("x")):
            X = np.asarray(codec.decode(payload.as_buffer()), np.float64)
            keys.append(key)
            grams.append(codec.encode(X.T @ X))
        yield pa.RecordBatch.from_pydict({"key": pa.array(keys, pa.int32()), "gram": pa.array(grams, pa.binary())})


@block_function
def _times_run(batches, *, M):
    for batch in batches:
        out = {"key": [], "x": [], "gram": [], "data": []}
        for key, payload in zip(batch.column("key").to_pylist(), batch.column("x")):
            X = np.asarray(codec.decode(payload.as_buffer()), np.float64) @ M
            out["key"].append(key)
            out["x"].append(codec.encode(X))
            out["gram"].append(codec.encode(X.T @ X))
            out["data"].append(0.0)
        yield pa.RecordBatch.from_pydict(out, schema=MADE_SCHEMA)


@block_function
def _explode_run(batches, *, step):
    for batch in batches:
        for key, payload in zip(batch.column("key").to_pylist(), batch.column("x")):
            X = codec.decode(payload.as_buffer())
            features = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(X, np.float64).ravel()), X.shape[1])
            yield pa.RecordBatch.from_arrays(
                [pa.array(np.arange(key * step, key * step + X.shape[0]), pa.int64()),
                 features.cast(pa.list_(pa.float64()))], names=["index", "features"])


def _gram_sum(grams, kl: bool):
    gram = np.sum([codec.decode(g) for g in grams], axis=0)
    return gram.ravel() if kl else gram


def materialise(frame, rows: int, k: int, step: int, kl: bool):
    """Materialise a frame of new blocks ``(key, x, gram, data, ...)``: ``(FactorFrame, gram, data)``.

    The blocks stay in the executors (checkpointed: the lineage stops here);
    only the Grams and data terms are collected, summed in key order.
    """
    held = truncate(frame.select("key", "x", "gram", "data"))
    small = held.select("key", "gram", "data").toArrow().sort_by("key")
    if small.num_rows != -(-rows // step):
        raise RuntimeError(f"a half-step made {small.num_rows} factor blocks, expected {-(-rows // step)}")
    gram = _gram_sum(small.column("gram").to_pylist(), kl)
    data = float(np.sum(small.column("data").to_numpy()))
    return FactorFrame(held.select("key", "x"), rows, k, step, gram, held), gram, data


def finish_rows(X, floor, dtype):
    """The loop's preparation of a starting factor: floored for positive rules, then in ``dtype``."""
    if floor is not None:
        X = np.maximum(X, floor)
    return X.astype(dtype)


@block_function
def _random_run(batches, *, rows, k, step, seed, stream, scale, floor, dtype, kl, signed):
    for batch in batches:
        out = {"key": [], "x": [], "gram": [], "data": []}
        for key in batch.column(0).to_pylist():
            start, stop = key * step, min(rows, key * step + step)
            drawn = seeding.draw_rows(start, stop, rows, k, seed, stream)
            X = finish_rows((drawn if signed else np.abs(drawn)) * scale, floor, dtype)
            gram = X.sum(axis=0) if kl else X.T @ X
            out["key"].append(key)
            out["x"].append(codec.encode(X))
            out["gram"].append(codec.encode(np.atleast_2d(gram)))
            out["data"].append(0.0)
        yield pa.RecordBatch.from_pydict(out, schema=MADE_SCHEMA)


def random_factor(spark, rows: int, k: int, step: int, *, seed: int, stream: int, scale: float, floor, dtype,
                  kl: bool, signed: bool = False) -> FactorFrame:
    """``|N(0,1)|·scale`` rows drawn in the executors, equal to the driver's ``random_factors`` (floored, typed).

    ``signed`` keeps the signs: the rows of ``chunked_draw(rows, k, seed, stream)·scale``.
    """
    blocks = -(-rows // step)
    keys = spark.range(0, blocks, 1, min(blocks, parallelism(spark))).selectExpr("cast(id as int) as key")
    body = Call(_random_run, dict(rows=rows, k=k, step=step, seed=seed, stream=stream, scale=float(scale),
                                  floor=floor, dtype=np.dtype(dtype).name, kl=kl, signed=signed))
    return materialise(keys.mapInArrow(body, ddl(MADE_SCHEMA)), rows, k, step, kl)[0]


def factor_from_array(spark, X: np.ndarray, step: int, gram) -> FactorFrame:
    """A driver array (e.g. a user's starting factor) as a FactorFrame with its known ``gram``."""
    from sparknmf.engine.frames import local_frame

    rows = [(key, 0, codec.encode(X[start : start + step])) for key, start in enumerate(range(0, X.shape[0], step))]
    frame = local_frame(spark, rows).selectExpr("bi as key", "block as x")
    held = truncate(frame)
    return FactorFrame(held, X.shape[0], X.shape[1], step, gram, held)


def _block_rows(step, k):
    """applyInArrow body: one block's rows ``(key, index, features)`` as a block; ``data`` counts bad rows."""

    def run(table):
        key = table.column("key")[0].as_py()
        table = table.sort_by("index")
        index = table.column("index").to_numpy()
        features = table.column("features").combine_chunks()
        values = features.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        size = min(step, len(index))
        good = (features.null_count == 0 and values.size == len(index) * k
                and np.array_equal(index, np.arange(key * step, key * step + len(index))))
        X = values.reshape(len(index), k) if good else np.zeros((size, k))
        bad = 0 if good and np.isfinite(values).all() else max(1, len(index))
        return pa.table({"key": pa.array([key], pa.int32()), "x": [codec.encode(X)],
                         "gram": [codec.encode(X.T @ X)], "data": [float(bad)]}, schema=MADE_SCHEMA)

    return run


def factor_from_rows(frame, rows: int, k: int, step: int, whom: str) -> FactorFrame:
    """A factor from a DataFrame of rows ``(index bigint, features array<double>)``, blocked by the executors.

    Raises ValueError naming ``whom`` when the indices are not ``0..rows-1`` or a row
    does not hold ``k`` finite values; only the Gram and these checks reach the driver.
    """
    from pyspark.sql import functions as F

    keyed = frame.select(F.floor(F.col("index") / step).cast("int").alias("key"), "index", "features")
    blocks = keyed.groupBy("key").applyInArrow(_block_rows(step, k), ddl(MADE_SCHEMA))
    try:
        factor, _, bad = materialise(blocks, rows, k, step, False)
    except RuntimeError:
        raise ValueError(f"{whom} is malformed: expected {rows} rows with indices 0..{rows - 1}") from None
    if bad:
        factor.release()
        raise ValueError(f"{whom} is malformed: expected {rows} rows with indices 0..{rows - 1} of {k} finite values")
    return factor
