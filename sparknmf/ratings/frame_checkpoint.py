"""Loop checkpoints of MaskedALS with its parameters in the executors (``factorPlacement="executors"``).

Every ``checkpointInterval`` iterations :class:`~sparknmf.ratings.distributed.ExecutorFit` saves its state
without collecting it (:class:`FrameCheckpoint`):

1. the parameter blocks ``(key, x)`` of each side and, with SVD++, the item blocks' implicit-vector state,
   written by the executors as Parquet in ``<checkpointDir>/blocks-<iteration>/`` (``user``, ``item``,
   ``vectors``);
2. then the loop's record (iteration, objective history, fingerprint of the problem) by the driver,
   atomically (:class:`~sparknmf.engine.checkpoint.LoopCheckpoint`).  The record's iteration names its
   blocks, so a crash while blocks are written leaves the previous checkpoint whole; older blocks are
   removed once the new record is in place.

Resuming reads the blocks back as rows ``(index, values)`` and lays them into the fit's initial blocks as a
warm start lays a model's rows (:func:`~sparknmf.ratings.warm_frames.lay_rows`): every row is known, and
the item blocks send the user blocks the messages the interrupted fit's last step sent (parameters, and
y_j with SVD++), so the resumed loop is the uninterrupted one.  The fingerprint adds the placement and the
block layout to the driver placement's (:func:`~sparknmf.ratings.fit.loop_fingerprint`): a checkpoint of
the other placement is refused with a ``ValueError``.

``checkpointDir`` must be one path for the driver and the executors: a local master, or a shared mount.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sparknmf.engine.checkpoint import LoopCheckpoint
from sparknmf.engine.session import describe_jobs
from sparknmf.ratings.distributed import PARAMS, VECTORS
from sparknmf.ratings.factor_frames import param_rows, shuffled
from sparknmf.ratings.fit import loop_fingerprint
from sparknmf.ratings.store import SIDES
from sparknmf.ratings.warm_frames import lay_rows

__all__ = ["FrameCheckpoint"]


class FrameCheckpoint:
    """Save and load :class:`~sparknmf.ratings.distributed.ExecutorFit`'s state in ``checkpointDir``.

    Parameters
    ----------
    est : MaskedALS
        Gives ``checkpointDir``, ``checkpointInterval``, the rank and the Params of the fingerprint.
    blocks : RatingBlocks
        The fit's ratings (fingerprint, block layout, session).
    implicit : bool
        The fit has SVD++ terms: the item blocks' implicit vectors are saved too.
    """

    def __init__(self, est, blocks, implicit: bool):
        fingerprint = {**loop_fingerprint(est, blocks), "placement": "executors", "steps": dict(blocks.steps)}
        self.directory = Path(est.getCheckpointDir())
        self.record = LoopCheckpoint(self.directory, est.getCheckpointInterval(), fingerprint)
        self.blocks, self.implicit, self.k = blocks, implicit, est.getRank()

    def due(self, iteration: int) -> bool:
        return self.record.due(iteration)

    def _path(self, iteration: int) -> Path:
        return self.directory / f"blocks-{iteration:08d}"

    def save(self, iteration: int, history, frames: dict, vectors) -> None:
        """Write the state after ``iteration`` iterations (module docstring).

        ``frames``: side -> the side's step frame (its ``PARAMS`` rows); ``vectors``: the frame of the
        item blocks' ``VECTORS`` rows (SVD++), or None.
        """
        from pyspark.sql import functions as F

        path = self._path(iteration)
        parts = {side: (frames[side], PARAMS) for side in SIDES}
        if self.implicit:
            parts["vectors"] = (vectors, VECTORS)
        with describe_jobs(self.blocks.spark, f"sparknmf: ALS (executors) checkpoint after iteration {iteration}"):
            for name, (frame, kind) in parts.items():
                blocks = frame.filter(F.col("kind") == kind).select("key", "x")
                blocks.write.mode("overwrite").parquet(str(path / name))
        self.record.save(iteration, history)
        for old in self.directory.glob("blocks-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)

    def load(self):
        """``(iteration, history, start)`` of the saved state, or None without one.

        ``start`` lays the saved rows into a fit's initial blocks (the ``warm`` of
        :class:`~sparknmf.ratings.distributed.ExecutorFit`).  ValueError when the record does not match
        this problem or its blocks are missing.
        """
        state = self.record.load()
        if state is None:
            return None
        iteration, history, _ = state
        path = self._path(iteration)
        if not all((path / name / "_SUCCESS").exists() for name in (*SIDES, *(["vectors"] if self.implicit else []))):
            raise ValueError(f"{self.record.path} names the parameter blocks {path}, which are missing or "
                             "incomplete; remove the checkpoint to start afresh")
        return iteration, history, _SavedStart(self.blocks, path, self.k, self.implicit)


class _SavedStart:
    """A checkpoint's rows as the ``warm`` start of a resumed fit (every row known)."""

    def __init__(self, blocks, path: Path, k: int, implicit: bool):
        self.blocks, self.path, self.k, self.implicit = blocks, path, k, implicit

    def initial_blocks(self, side, in_blocks, arguments):
        """As :meth:`~sparknmf.ratings.warm_frames.WarmStart.initial_blocks`, from the saved blocks."""
        from pyspark.sql import functions as F

        read = self.blocks.spark.read.parquet
        rows = param_rows(read(str(self.path / side)), arguments["step"])
        if self.implicit and side == "item":  # [parameters | y]: the messages of the interrupted fit's last step
            y = param_rows(read(str(self.path / "vectors")), arguments["step"], 0, self.k)
            rows = rows.join(shuffled(y.select("index", F.col("values").alias("y"))), "index")
            rows = rows.select("index", F.concat("values", "y").alias("values"))
        return lay_rows(in_blocks, rows, arguments, self.blocks.partitions)
