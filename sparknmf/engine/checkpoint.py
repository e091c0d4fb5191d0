"""Loop checkpoints: resume a long fit after the driver dies.

Every ``interval`` iterations a loop (NMF's :func:`~sparknmf.decomposition.factorize.factorize`,
MaskedALS's) writes its whole state -- the iteration count, the objective
history and its named arrays (the factors) -- to ``<directory>/checkpoint.npz``:
written to a temporary file in the same directory, flushed to disk and
renamed over the old one, so a crash at any moment leaves either the
previous complete checkpoint or the new one.  The file is a plain ``.npz``
(loaded with ``allow_pickle=False``); its metadata is a JSON string stored as bytes.

A checkpoint records a *fingerprint* of the problem: the data's shape and
sums, and every Param that shapes the iterates (rank, algorithm,
regularization, ..., and the seed).  The seed is the whole RNG state: both
loops draw random numbers only for their starting point, from generators
derived from the seed, so nothing random remains to be saved.  Resuming
against a different problem is refused with a ``ValueError`` instead of
silently mixing two fits; a truncated or foreign file is refused too.  The
loop after a resume is the uninterrupted loop: same factors, same history.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["LoopCheckpoint"]

_FILE = "checkpoint.npz"
FORMAT_VERSION = 1


class LoopCheckpoint:
    """Save and load the alternating loop's state in a local directory.

    Parameters
    ----------
    directory : str or Path
        A directory on the driver's file system (created if needed).
    interval : int
        Iterations between saves.
    fingerprint : dict
        JSON-serialisable description of the problem; must match on load.
    """

    def __init__(self, directory, interval: int, fingerprint: dict):
        if interval < 1:
            raise ValueError(f"checkpoint interval must be >= 1, got {interval}")
        self.path = Path(directory) / _FILE
        self.interval = int(interval)
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def due(self, iteration: int) -> bool:
        return iteration > 0 and iteration % self.interval == 0

    def save(self, iteration: int, history, **arrays: np.ndarray) -> None:
        """Atomically replace the checkpoint with the state after ``iteration`` iterations."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"formatVersion": FORMAT_VERSION, "iteration": int(iteration), "fingerprint": self.fingerprint,
                "arrays": sorted(arrays)}
        fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **{f"array_{name}": value for name, value in arrays.items()},
                         history=np.asarray(history, dtype=np.float64),
                         meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self):
        """The saved ``(iteration, history, arrays)``, or None when there is no checkpoint."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes().decode())
                arrays = {name: data[f"array_{name}"] for name in meta["arrays"]}
                history = list(map(float, data["history"]))
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{self.path} is not a readable sparknmf checkpoint ({type(err).__name__}: {err}); "
                             "remove it to start afresh") from None
        if meta.get("formatVersion") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unsupported checkpoint format {meta.get('formatVersion')!r}")
        if meta.get("fingerprint") != self.fingerprint:
            theirs, ours = meta.get("fingerprint", {}), self.fingerprint
            differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise ValueError(f"{self.path} was written for a different problem (differs in {differ}); "
                             "remove it or use another checkpointDir")
        if len(history) != meta["iteration"]:
            raise ValueError(f"{self.path} is inconsistent: {len(history)} objectives "
                             f"for {meta['iteration']} iterations")
        return meta["iteration"], history, arrays
