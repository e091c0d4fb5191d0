"""Dense indices for ids, assigned in Spark without collecting the ids (the ``executors`` factor placement).

The driver placement collects the distinct ids and sorts them (an id's index is its rank).  When the ids
themselves are beyond the driver (50M user ids), :func:`index_ids` gives every id the *same* index by a
sort-based dense rank computed in the executors:

1. the distinct ids, range-partitioned and sorted by Spark (``orderBy``), materialised with their lineage
   cut (``localCheckpoint``) so that each partition's rows keep one order in every later pass;
2. one small row per partition reaches the driver: ``(partition, rows, nulls)``;
3. the driver turns the counts into offsets (partition ``p`` starts at the sum of the rows before it);
4. each id's index is ``offset[partition] + position in the partition``, computed by an Arrow function
   (``mapInArrow``, the partition from ``TaskContext``): a DataFrame ``(id, index long)`` that is joined to
   the coordinates, the model's outputs and its saved files, never collected.

For example ids ``b, a, d, c, e`` range-partitioned into ``[a, b] [c] [d, e]`` give counts ``2, 1, 2``,
offsets ``0, 2, 3`` and indices ``a→0 b→1 c→2 d→3 e→4``: the ranks the driver's sort gives.  Spark and Arrow
sort atomic values alike (strings and binary by their bytes, numbers by value, NaN last), so the two
placements index every id identically and their fits agree.  DataFrame operations and Arrow functions
only, no RDD API: Spark Connect sessions run it too.  Jobs, four per id column: the sort's sample, the
shuffles of ``distinct`` and of the sort (a job each under adaptive query execution), and the counts, which
also materialise the checkpoint.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from sparknmf.engine.frames import release
from sparknmf.errors import InvalidInputError

__all__ = ["IdIndex", "column_ref", "index_ids"]

_COUNTS_DDL = "part int, rows long, nulls long"


def column_ref(name: str):
    """The Spark column named exactly ``name`` (``F.col`` would parse dots and backticks in it)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


class IdIndex:
    """Ids and their dense indices (ranks in sorted order) as a DataFrame held by the executors.

    Attributes
    ----------
    frame : DataFrame ``(index long, id)``
        One row per distinct id; ``index`` runs over ``0 .. count - 1``.
    count : int
        Distinct ids.
    """

    def __init__(self, frame, count: int, held=None):
        self.frame, self.count = frame, int(count)
        self._held = held  # the checkpointed sorted ids behind ``frame`` (None: ``frame`` was read, e.g. from files)

    def __len__(self) -> int:
        return self.count

    def collect(self) -> pa.Array:
        """The ids in index order, on the driver (what the driver placement holds)."""
        if self._held is not None:
            return self._held.toArrow().column(0).combine_chunks()
        return self.frame.select("index", "id").toArrow().sort_by("index").column("id").combine_chunks()

    def at(self, index: int):
        """The id of one index (a Spark job: for naming an entry in an error message)."""
        from pyspark.sql import functions as F

        row = self.frame.where(F.col("index") == int(index)).select("id").first()
        return None if row is None else row[0]

    def release(self) -> None:
        """Free the checkpointed ids (``frame`` is unusable afterwards)."""
        held, self._held, self.frame = self._held, None, None
        if held is not None:
            release(held)

    def __repr__(self):
        return f"IdIndex(count={self.count})"


def _count_body(batches):
    """mapInArrow body: this partition's ``(part, rows, nulls)`` (one row, also for an empty partition)."""
    from pyspark import TaskContext

    rows = nulls = 0
    for batch in batches:
        rows += batch.num_rows
        nulls += batch.column(0).null_count
    yield pa.RecordBatch.from_pydict({"part": [TaskContext.get().partitionId()], "rows": [rows], "nulls": [nulls]},
                                     schema=pa.schema([("part", pa.int32()), ("rows", pa.int64()),
                                                       ("nulls", pa.int64())]))


def _index_body(batches, *, offsets):
    """mapInArrow body: ``(id)`` rows of one partition -> ``(index, id)``, index = offset + position."""
    from pyspark import TaskContext

    position = offsets[TaskContext.get().partitionId()]
    for batch in batches:
        index = pa.array(np.arange(position, position + batch.num_rows, dtype=np.int64))
        position += batch.num_rows
        yield pa.RecordBatch.from_arrays([index, batch.column(0)], names=["index", "id"])


def index_ids(frame, column: str, whom: str) -> IdIndex:
    """Index the distinct ids of ``column`` in sorted order, in the executors (see the module docstring).

    Parameters
    ----------
    frame : DataFrame
    column : str
        The id column (an atomic type; used as named, dots and backticks included).
    whom : str
        Names the input in errors.

    Returns
    -------
    IdIndex
        ``frame`` ``(index long, id)``: the index of each id equals its position among the sorted ids.

    Raises
    ------
    InvalidInputError
        Null ids (before any index is assigned).
    """
    from pyspark.sql.types import LongType, StructField, StructType

    # checkpointed lazily: the counts' job materialises it (one job fewer than an eager checkpoint)
    held = frame.select(column_ref(column).alias("id")).distinct().orderBy("id").localCheckpoint(eager=False)
    counts = held.mapInArrow(_count_body, _COUNTS_DDL).toArrow()
    if sum(counts.column("nulls").to_pylist()):
        release(held)
        raise InvalidInputError(f"{whom}: column {column!r} has null ids")
    parts = counts.column("part").to_numpy()
    rows = np.zeros(int(parts.max(initial=-1)) + 1, np.int64)
    rows[parts] = counts.column("rows").to_numpy()
    offsets = np.concatenate(([0], np.cumsum(rows)[:-1])).tolist()
    schema = StructType([StructField("index", LongType(), False), StructField("id", held.schema["id"].dataType)])
    mapping = held.mapInArrow(functools.partial(_index_body, offsets=offsets), schema)
    return IdIndex(mapping, int(rows.sum()), held)
