"""A job's output folder that never stays half-written, and atomic JSON files.

Works on a file system the driver sees as paths (a local disk, or on a
cluster a shared mount such as NFS at the same path on every node): it
relies on POSIX ``rename`` replacing a name atomically.  Spark writes into
the staged folders through ``file://`` URIs.

:class:`StagedDirectory` -- everything is written to a hidden sibling
``.<name>.staging-<id>``; :meth:`~StagedDirectory.commit` renames it into
place.  An existing output is refused before any work unless ``overwrite``;
then it is renamed aside and deleted only once the new one is in place (a
crash in between leaves it as ``.<name>.previous-<id>``, which the next run
puts back).  Versioned publications are :mod:`sparknmf.pipeline.publish`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path

__all__ = ["PublishError", "StagedDirectory", "fsync_dir", "local_path", "read_json", "write_json"]

logger = logging.getLogger("sparknmf")


class PublishError(RuntimeError):
    """A publication could not be validated, switched or rolled back; the previous one is untouched."""


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        return _clean(value.item())
    return value


def write_json(path, data, *, atomic: bool = True) -> Path:
    """Write ``data`` as indented JSON (NaN and inf as null); by default through a temporary file and a rename."""
    path = Path(path)
    text = json.dumps(_clean(data), indent=1, sort_keys=False, default=str) + "\n"
    if not atomic:
        path.write_text(text, encoding="utf-8")
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path):
    """The JSON document in ``path``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the file system allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def local_path(path) -> Path:
    """``path`` (a path or a ``file://`` URI) as an absolute local Path."""
    text = str(path)
    return Path(text[len("file://"):] if text.startswith("file://") else text).absolute()


class StagedDirectory:
    """An output folder written in a hidden staging sibling and renamed into place (module docstring).

    Parameters
    ----------
    path : path
        The final folder.
    overwrite : bool
        Replace an existing folder (after the new one is complete) instead of refusing.
    """

    def __init__(self, path, *, overwrite: bool = False):
        self.path = local_path(path)
        self.overwrite = bool(overwrite)
        token = uuid.uuid4().hex[:12]
        self.stage = self.path.parent / f".{self.path.name}.staging-{token}"
        self._aside = self.path.parent / f".{self.path.name}.previous-{token}"

    def _restore_previous(self) -> None:
        """Put back an output that a crashed run had renamed aside."""
        if self.path.exists():
            return
        aside = sorted(self.path.parent.glob(f".{self.path.name}.previous-*"), key=lambda p: p.stat().st_mtime)
        if aside:
            os.rename(aside[-1], self.path)
            logger.warning("restored %s from %s (an earlier run stopped while replacing it)", self.path, aside[-1])

    def problem(self) -> str | None:
        """Why this output cannot be written, or None (checked before any work)."""
        if self.path.parent.exists() and not self.path.parent.is_dir():
            return f"{self.path.parent} is not a folder"
        if self.path.parent.is_dir():
            self._restore_previous()
        if self.path.exists() and not self.overwrite:
            return "exists already (set output.overwrite = true to replace it once the new output is complete)"
        if self.path.exists() and not self.path.is_dir():
            return "exists and is not a folder"
        return None

    def open(self) -> Path:
        """Create the staging folder; returns it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stage.mkdir()
        return self.stage

    def uri(self, *parts) -> str:
        """A ``file://`` URI under the staging folder, for Spark writers."""
        return self.stage.joinpath(*parts).as_uri()

    def commit(self) -> Path:
        """Move the staging folder into place (replacing the old output last); returns the final path."""
        fsync_dir(self.stage)
        if self.path.exists():
            os.rename(self.path, self._aside)
        os.rename(self.stage, self.path)
        fsync_dir(self.path.parent)
        if self._aside.exists():
            shutil.rmtree(self._aside, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        """Remove the staging folder (after a failure); the existing output is untouched."""
        shutil.rmtree(self.stage, ignore_errors=True)
