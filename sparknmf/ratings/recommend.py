"""Top-N recommendations of a fitted :class:`~sparknmf.ratings.model.MaskedALSModel`, computed by blocks.

For every query (a user, or an item) the best ``num`` targets by the static
prediction ``μ + b_q + b_t + qᵀt`` (no time terms), among the allowed
targets (``candidates``) minus the excluded pairs (``exclude``).  Queries
are grouped into blocks of at most 4096 by index; each group is one Arrow
task that scores its queries against every target with the
:func:`~sparknmf.kernels.topn.top_n` kernel (one matrix product per target
chunk, ``argpartition``, merge), never a cross join scored row by row.
The excluded pairs travel to the group of their query as extra rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparknmf.engine.ingest import check_columns
from sparknmf.errors import InvalidInputError
from sparknmf.kernels.topn import top_n
from sparknmf.ratings.ingest import check_id_type, column_ref, with_indices

__all__ = ["Side", "check_count", "recommend"]

_QUERY_BLOCK = 4096  # queries scored together in one task group


@dataclass(frozen=True)
class Side:
    """One side of a fitted model (users or items), as recommendations read it.

    Attributes
    ----------
    name : str
        ``"user"`` or ``"item"``.
    column : str
        Its id column in the DataFrames given and returned.
    ids : pyarrow Array
        Ids in index order.
    id_type : str
        Spark DDL type of the ids.
    factors : ndarray of shape (count, k)
    bias : ndarray of shape (count,)
        Zeros for a model without biases.
    """

    name: str
    column: str
    ids: pa.Array
    id_type: str
    factors: np.ndarray
    bias: np.ndarray


def recommend(query: Side, target: Side, num, mu: float, *, subset=None, exclude=None, candidates=None, seen=None):
    """Top ``num`` targets for every query, or for the queries in ``subset[query.column]``.

    Returns a DataFrame ``(query.column, recommendations array<struct<target.column, rating float>>)``,
    best first.  ``exclude``: a DataFrame of (query, target) id pairs never
    recommended; ``candidates``: a list or DataFrame of the only target ids
    recommended.  Unknown ids are skipped everywhere; ids of another type than
    the model's are an :class:`~sparknmf.errors.InvalidInputError`
    (:func:`~sparknmf.ratings.ingest.check_id_type`).  ``seen``: a CSR matrix (queries × targets, by index)
    of further pairs never recommended (an implicit model's training events), sliced by rows for each
    block of queries.
    """
    from pyspark.sql import functions as F

    from sparknmf.engine.session import get_session

    check_count(num)
    qcol, tcol = query.column, target.column
    spark = subset.sparkSession if subset is not None else get_session()
    n = len(query.ids)
    step = min(_QUERY_BLOCK, n)
    if subset is not None:
        whom = f"MaskedALSModel.recommendFor{query.name.title()}Subset"
        check_columns(subset, [qcol], whom)
        check_id_type(subset, qcol, query.id_type, whom)
    if exclude is not None:
        check_columns(exclude, [qcol, tcol], "MaskedALSModel recommendations (exclude)")
        for side in (query, target):
            check_id_type(exclude, side.column, side.id_type, "MaskedALSModel recommendations (exclude)")
    allowed = _candidates(target, candidates)
    if subset is None:
        queries = spark.range(n).select(F.col("id").alias("_q"))
    else:
        queries = (with_indices(subset.select(column_ref(qcol)), [(query.ids, qcol, "_q")])
                   .filter(F.col("_q").isNotNull()).select("_q").distinct())
    rows = queries.withColumn("_t", F.lit(-1).cast("long"))
    if exclude is not None:
        pairs = with_indices(exclude.select(column_ref(qcol), column_ref(tcol)),
                             [(query.ids, qcol, "_q"), (target.ids, tcol, "_t")])
        pairs = pairs.filter(F.col("_q").isNotNull() & F.col("_t").isNotNull()).select("_q", "_t")
        if subset is not None:
            pairs = pairs.join(queries, "_q", "left_semi")
        rows = rows.unionByName(pairs)
    rows = rows.withColumn("_key", (F.col("_q") / step).cast("long"))
    Q, T, q_bias, t_bias = query.factors, target.factors, query.bias, target.bias
    q_ids, t_ids = query.ids, target.ids
    out_schema = pa.schema([
        (qcol, q_ids.type),
        ("recommendations", pa.list_(pa.struct([(tcol, t_ids.type), ("rating", pa.float32())]))),
    ])

    def run(table):
        q = table.column("_q").to_numpy()
        t = table.column("_t").to_numpy()
        users, inverse = np.unique(q, return_inverse=True)
        excluded = t >= 0
        rows, cols = inverse[excluded], t[excluded]
        if seen is not None:
            held = seen[users]
            rows = np.concatenate([rows, np.repeat(np.arange(users.size), np.diff(held.indptr))])
            cols = np.concatenate([cols, held.indices.astype(np.int64)])
        top_t, top_s = top_n(Q[users], T, num, bias=t_bias, candidates=allowed, exclude=(rows, cols))
        scores = top_s + mu + q_bias[users][:, None]
        valid = np.isfinite(top_s)
        counts = valid.sum(axis=1)
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        flat_t = top_t[valid]
        recs = pa.StructArray.from_arrays(
            [t_ids.take(pa.array(flat_t, pa.int64())), pa.array(scores[valid].astype(np.float32))],
            fields=list(out_schema.field("recommendations").type.value_type))
        return pa.table({qcol: q_ids.take(pa.array(users, pa.int64())),
                         "recommendations": pa.ListArray.from_arrays(offsets, recs)}, schema=out_schema)

    ddl = (f"{_quoted(qcol)} {query.id_type}, "
           f"recommendations array<struct<{_quoted(tcol)}:{target.id_type},rating:float>>")
    return rows.groupBy("_key").applyInArrow(run, ddl)


def check_count(num) -> None:
    """``ValueError`` unless ``num`` (recommendations per query) is an integer >= 1."""
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"the number of recommendations must be an integer >= 1, got {num!r}")


def _quoted(name: str) -> str:
    """``name`` as a DDL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _candidates(target: Side, candidates):
    """Sorted indices of the candidate target ids (None = all); unknown ids are ignored."""
    if candidates is None:
        return None
    whom = "MaskedALSModel recommendations (candidates)"
    ids = target.ids
    if hasattr(candidates, "sparkSession"):
        check_columns(candidates, [target.column], whom)
        check_id_type(candidates, target.column, target.id_type, whom)
        values = candidates.select(column_ref(target.column)).toArrow().column(0).combine_chunks()
        if values.type != ids.type:  # integer ids of another width: compare as int64, exactly
            values, ids = pc.cast(values, pa.int64()), pc.cast(ids, pa.int64())
    else:
        try:
            values = pa.array(list(candidates), type=ids.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
            raise InvalidInputError(f"{whom}: the candidates must be ids of the model's type {target.id_type}: "
                                    f"{err}") from None
    index = pc.index_in(values, value_set=ids).drop_null().to_numpy(zero_copy_only=False)
    return np.unique(index.astype(np.int64))
