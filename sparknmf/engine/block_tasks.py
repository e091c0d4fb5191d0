"""The block functions a Spark task runs in an NMF half-step, on one block V_ij and the factor rows it meets.

Each ``*_task`` builds the body of one Spark job (a ``mapInArrow`` or
``applyInArrow`` function) as a :class:`~sparknmf.engine.calls.Call` of a
registered module function, so that resident tasks receive it without
pickle.  Their results are small Arrow tables keyed by block: the new rows
of X, Grams (k×k), data terms and cross-product pieces, which
:class:`~sparknmf.engine.matrix.BlockMatrix` assembles on the driver.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sparknmf.engine import codec, faults
from sparknmf.engine.calls import Call, block_constant, block_function, block_type
from sparknmf.engine.frames import ddl
from sparknmf.kernels.updates import UPDATE_RULES, WEIGHTED_RULES, RuleParams, half_step_block, update_block

__all__ = ["PIECE_DDL", "STEP_DDL", "finish_task", "fused_task", "meet_task", "piece_task", "product_task", "sum_task"]

STEP_SCHEMA = pa.schema(
    [("key", pa.int32()), ("x", pa.binary()), ("gram", pa.binary()), ("data", pa.float64()),
     ("carry", pa.binary()), ("carry_data", pa.float64())]
)
PIECE_SCHEMA = pa.schema(
    [("key", pa.int32()), ("part", pa.int32()), ("x", pa.binary()), ("cross", pa.binary()), ("data", pa.float64())]
)
STEP_DDL = ddl(STEP_SCHEMA)
PIECE_DDL = ddl(PIECE_SCHEMA)

def _oriented_block(payload, side):
    V = codec.decode(payload)
    return V if side == "W" else V.T


def _payloads(batch, name):
    """The binary column ``name`` as zero-copy Arrow buffers (None for nulls)."""
    return [value.as_buffer() if value.is_valid else None for value in batch.column(name)]


def _rows(batch, other, xs, ys):
    """Per block in an Arrow batch: (key, other key, block, X_i payload, Y_j payload).

    Payloads are zero-copy views of the Arrow batch (blocks can be large).
    """
    keys, others = batch.column("key").to_pylist(), batch.column(other).to_pylist()
    names = batch.schema.names
    x_col = _payloads(batch, "x") if xs is None and "x" in names else [xs[k] if xs else None for k in keys]
    y_col = _payloads(batch, "y") if ys is None else [ys[o] for o in others]
    return zip(keys, others, _payloads(batch, "block"), x_col, y_col)


# what the bodies' calls carry to resident tasks (sparknmf.engine.calls): the update rules by name, their parameters
block_type(RuleParams)
for _rules, _label in ((UPDATE_RULES, "UPDATE_RULES"), (WEIGHTED_RULES, "WEIGHTED_RULES")):
    for _key, _rule in _rules.items():
        block_constant(__name__, f"{_label}[{_key}]", _rule)


def fused_task(rule, params, side, gram_y, update, xs, ys, with_carry):
    """mapInArrow body when each task sees a whole block row: the full update.

    With ``with_carry`` it also returns Y's cross-product piece at the new
    rows (``carry``), from the same block, for Y's next half-step.  Bodies
    are :class:`~sparknmf.engine.calls.Call` s of registered module functions, which
    resident tasks receive without pickle, one per half-step.
    """
    return Call(_fused_run, dict(rule=rule, params=params, side=side, gram_y=gram_y, update=update, xs=xs, ys=ys,
                                 with_carry=with_carry))


@block_function
def _fused_run(batches, *, rule, params, side, gram_y, update, xs, ys, with_carry):
    other = "bj" if side == "W" else "bi"
    for batch in batches:
        out = {"key": [], "x": [], "gram": [], "data": [], "carry": [], "carry_data": []}
        for key, _, block, x, y in _rows(batch, other, xs, ys):
            faults.inject(f"nmf-{side}", key)
            V, Y = _oriented_block(block, side), codec.decode(y)
            # only H's data term enters the objective: H's own, or the one carried to H by W's half-step
            X_new, gram, data = half_step_block(rule, params, side, gram_y, V, codec.decode(x), Y, update=update,
                                                data=side == "H")
            carry, carry_data = (rule.statistic.cross(V.T, Y, X_new, data=side == "W") if with_carry
                                 else (None, None))
            out["key"].append(key)
            out["x"].append(codec.encode(X_new))
            out["gram"].append(codec.encode(np.atleast_2d(gram)))
            out["data"].append(data)
            out["carry"].append(None if carry is None else codec.encode(carry))
            out["carry_data"].append(carry_data)
        yield pa.RecordBatch.from_pydict(out, schema=STEP_SCHEMA)


def piece_task(rule, side, other, xs, ys):
    """mapInArrow body for q > 1: one cross-product piece per block.

    The current rows X_i ride along with the piece of block column 0 only.
    """
    return Call(_piece_run, dict(rule=rule, side=side, other=other, xs=xs, ys=ys))


@block_function
def _piece_run(batches, *, rule, side, other, xs, ys):
    for batch in batches:
        out = {"key": [], "part": [], "x": [], "cross": [], "data": []}
        for key, o, block, x, y in _rows(batch, other, xs, ys):
            faults.inject(f"nmf-{side}", key)
            cross, data = rule.statistic.cross(_oriented_block(block, side), codec.decode(x), codec.decode(y),
                                               data=side == "H")
            out["key"].append(key)
            out["part"].append(o)
            out["x"].append(bytes(x) if o == 0 else None)
            out["cross"].append(codec.encode(cross))
            out["data"].append(data)
        yield pa.RecordBatch.from_pydict(out, schema=PIECE_SCHEMA)


def finish_task(rule, params, side, gram_y, update):
    """applyInArrow body for q > 1: sum the pieces of one block row, then update."""

    def run(table):
        table = table.sort_by("part")
        key = table.column("key")[0].as_py()
        cross = sum(codec.decode(c) for c in table.column("cross").to_pylist())
        X = codec.decode(next(x for x in table.column("x").to_pylist() if x is not None))
        X_new, gram = update_block(rule, params, side, gram_y, cross, X, update=update)
        return pa.table(
            {
                "key": pa.array([key], pa.int32()),
                "x": [codec.encode(X_new)],
                "gram": [codec.encode(np.atleast_2d(gram))],
                "data": [float(np.sum(table.column("data").to_numpy()))],
                "carry": pa.nulls(1, pa.binary()),
                "carry_data": pa.nulls(1, pa.float64()),
            },
            schema=STEP_SCHEMA,
        )

    return run


def meet_task(body, other):
    """applyInArrow body of the executors placement: one group holds V_ij, X_i and Y_j as three rows.

    They are put in one row ``(key, other, block, x, y)``, as the joins of the
    driver placement make them, and ``body`` (a :func:`fused_task` or
    :func:`piece_task` reading ``x``/``y`` from the batch) runs on it.
    """
    return Call(_meet_run, dict(body=body, other=other))


@block_function
def _meet_run(table, *, body, other):
    def first(name):  # the one valid value of a column, as a 1-element array (a null if it has none: no X)
        values = table.column(name).drop_null().combine_chunks()[:1]
        return values if len(values) else pa.nulls(1, table.schema.field(name).type)

    row = pa.RecordBatch.from_arrays([first("key"), first("other"), first("block"), first("x"), first("y")],
                                     names=["key", other, "block", "x", "y"])
    return pa.Table.from_batches(list(body([row])))


def product_task(side, other, ys):
    """mapInArrow body of :meth:`BlockMatrix.multiply`: one product piece per block (``ys`` None: from column y)."""
    return Call(_product_run, dict(side=side, other=other, ys=ys))


@block_function
def _product_run(batches, *, side, other, ys):
    for batch in batches:
        out = {"key": [], "part": [], "x": [], "cross": [], "data": []}
        for key, o, block, _, y in _rows(batch, other, None, ys):
            out["key"].append(key)
            out["part"].append(o)
            out["x"].append(None)
            out["cross"].append(codec.encode(np.asarray(_oriented_block(block, side) @ codec.decode(y))))
            out["data"].append(0.0)
        yield pa.RecordBatch.from_pydict(out, schema=PIECE_SCHEMA)


def sum_task():
    """applyInArrow body of a product in the executors: a block row's pieces summed in part order, with its Gram."""
    return Call(_sum_run, {})


@block_function
def _sum_run(table):
    table = table.sort_by("part")
    X = sum(codec.decode(c) for c in table.column("cross").to_pylist())
    return pa.table({"key": table.column("key").combine_chunks()[:1], "x": [codec.encode(X)],
                     "gram": [codec.encode(X.T @ X)], "data": [0.0], "carry": pa.nulls(1, pa.binary()),
                     "carry_data": pa.nulls(1, pa.float64())}, schema=STEP_SCHEMA)
