"""A job's output folder that never stays half-written, and atomic JSON files.

Works on a file system where a folder renames in one step: the driver's own
(a local disk, or on a cluster a shared mount such as NFS at the same path on
every node; POSIX ``rename``), or HDFS (``hdfs:``, ``viewfs:`` URIs, through
the JVM's Hadoop ``FileSystem``: :mod:`sparknmf.pipeline.storage`).  Object
stores, whose renames copy object by object, are refused.  Spark writes into
the staged folders through URIs (:meth:`StagedDirectory.uri`); the driver's
own small files go to :attr:`StagedDirectory.stage`, a local folder (copied
to the staging folder before the rename when the output is on HDFS).

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

from sparknmf.pipeline.storage import (
    ATOMIC_RENAME_SCHEMES,
    LocalStorage,
    Storage,
    StorageError,
    is_local,
    join,
    local_path,
    scheme,
)

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


class StagedDirectory:
    """An output folder written in a hidden staging sibling and renamed into place (module docstring).

    Parameters
    ----------
    path : path or URI
        The final folder: a plain path or ``file:`` URI (the driver's file system), or a URI of a Hadoop file
        system whose folders rename in one step (``hdfs:``, ``viewfs:``).
    overwrite : bool
        Replace an existing folder (after the new one is complete) instead of refusing.
    storage : :class:`~sparknmf.pipeline.storage.Storage`, optional
        How to reach ``path`` (default: the driver's file system; a URI needs a
        :class:`~sparknmf.pipeline.storage.HadoopStorage`, as :func:`~sparknmf.pipeline.storage.storage_for`
        gives).

    Attributes
    ----------
    path : Path or str
        The final folder (a Path on the driver's file system, else the URI).
    stage : Path
        Where the driver writes its files (JSON, CSV, report) once :meth:`open`: the staging folder itself on
        the driver's file system; on another file system a local scratch folder copied into the staging
        folder at :meth:`commit`.  Spark writers write into :meth:`uri`.

    Raises
    ------
    StorageError
        When ``path`` is a URI and no storage for it was given, or its file system cannot rename a folder
        in one step (object stores: ``s3a:``, ``gs:``, ``abfs:``, ...).
    """

    def __init__(self, path, *, overwrite: bool = False, storage: Storage | None = None):
        if storage is None:
            if not is_local(path):
                raise StorageError(f"{str(path)!r}: a {scheme(path)}: URI is reached through Spark's Hadoop file "
                                   f"systems: pass storage=storage_for(path, spark)")
            storage = LocalStorage()
        if not storage.atomic_rename:
            raise StorageError(
                f"{str(path)!r}: {scheme(path)}: cannot rename a folder in one step (object stores copy and delete "
                f"each object), so readers could see half an output; outputs can be written to local or mounted "
                f"paths, file:, {', '.join(s + ':' for s in ATOMIC_RENAME_SCHEMES if s != 'file')} URIs")
        self.storage = storage
        self.overwrite = bool(overwrite)
        self._local = isinstance(storage, LocalStorage)
        token = uuid.uuid4().hex[:12]
        if self._local:
            self.path = local_path(path)
            target = str(self.path)
        else:
            self.path = target = str(path).rstrip("/")
        parent, _, name = target.rpartition("/")
        if not name or not parent and not self._local:
            raise StorageError(f"{str(path)!r}: an output needs a folder name under a parent folder")
        self._target, self._parent, self._name = target, parent or "/", name
        self._staged = join(self._parent, f".{name}.staging-{token}")
        self._aside = join(self._parent, f".{name}.previous-{token}")
        self.stage = Path(self._staged) if self._local else None

    def _restore_previous(self) -> None:
        """Put back an output that a crashed run had renamed aside."""
        s = self.storage
        if s.exists(self._target):
            return
        prefix = f".{self._name}.previous-"
        aside = sorted((join(self._parent, n) for n in s.list(self._parent) if n.startswith(prefix)), key=s.mtime)
        if aside:
            s.rename(aside[-1], self._target)
            logger.warning("restored %s from %s (an earlier run stopped while replacing it)", self.path, aside[-1])

    def problem(self) -> str | None:
        """Why this output cannot be written, or None (checked before any work)."""
        s = self.storage
        if s.exists(self._parent) and not s.is_dir(self._parent):
            return f"{self._parent} is not a folder"
        if s.is_dir(self._parent):
            self._restore_previous()
        if s.exists(self._target) and not self.overwrite:
            return "exists already (set output.overwrite = true to replace it once the new output is complete)"
        if s.exists(self._target) and not s.is_dir(self._target):
            return "exists and is not a folder"
        return None

    def open(self) -> Path:
        """Create the staging folder; returns the folder the driver writes its files in (:attr:`stage`)."""
        s = self.storage
        s.mkdirs(self._parent)
        if self._local:
            self.stage.mkdir()
        else:
            s.mkdirs(self._staged)
            self.stage = Path(tempfile.mkdtemp(prefix=f"sparknmf-{self._name}-"))
        return self.stage

    def uri(self, *parts) -> str:
        """A URI under the staging folder, for Spark writers."""
        if self._local:
            return self.stage.joinpath(*parts).as_uri()
        return join(self._staged, *parts)

    def commit(self):
        """Move the staging folder into place (replacing the old output last); returns the final path."""
        s = self.storage
        if self._local:
            fsync_dir(self.stage)
        else:
            s.upload(self.stage, self._staged)
            shutil.rmtree(self.stage, ignore_errors=True)
        if s.exists(self._target):
            s.rename(self._target, self._aside)
        s.rename(self._staged, self._target)
        if self._local:
            fsync_dir(self.path.parent)
        if s.exists(self._aside):
            s.delete(self._aside)
        return self.path

    def discard(self) -> None:
        """Remove the staging folder (after a failure); the existing output is untouched."""
        if self.stage is not None and not self._local:
            shutil.rmtree(self.stage, ignore_errors=True)
        self.storage.delete(self._staged)
