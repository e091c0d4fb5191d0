"""Where job inputs and outputs live: local paths, ``file:`` URIs, or any Hadoop file system Spark reaches.

A job's paths are strings: a plain path (``out/ap``, ``/mnt/shared/out``), a ``file:`` URI, or a URI of
a Hadoop file system (``hdfs://namenode/user/me/out``, ``hdfs:///user/me/out``, ``s3a://bucket/key``,
``abfs://...``).  A URI is never rewritten into a local path: :func:`scheme` tells them apart and
:func:`local_path` refuses anything but a plain path or a ``file:`` URI.

Spark reads and writes every one of them (DataFrame readers and writers).  The few file operations a job
makes on the driver -- does the input exist, stage an output folder and rename it into place, copy the
small files the driver writes (JSON, CSV, the HTML report) -- go through a :class:`Storage`:

* :class:`LocalStorage`: the driver's own file system (a local disk, or a shared POSIX mount such as NFS
  at the same path on every node), with POSIX ``rename``;
* :class:`HadoopStorage`: the JVM's ``org.apache.hadoop.fs.FileSystem`` of the path, through py4j in a
  classic session (the same file systems, configuration and credentials as Spark's readers and writers).
  A Spark Connect client has no JVM: there, inputs on any URI are read through Spark, but outputs must be
  local or mounted paths (:func:`storage_for` says so).

``Storage.atomic_rename`` says whether a folder renames in one step, which staged outputs need
(:mod:`sparknmf.pipeline.staging`): true for local paths, ``file:``, ``hdfs:`` and ``viewfs:``; object
stores (``s3a:``, ``gs:``, ``abfs:``, ``wasb:``...) copy and delete object by object, so a reader could see
half an output, and they are refused for outputs with a message that says so.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

__all__ = [
    "ATOMIC_RENAME_SCHEMES", "HadoopStorage", "LocalStorage", "Storage", "StorageError", "is_local", "join",
    "local_path", "scheme", "storage_for",
]

ATOMIC_RENAME_SCHEMES = ("file", "hdfs", "viewfs")  # besides plain paths: folders rename in one step
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class StorageError(ValueError):
    """A path that a job cannot use as asked (a scheme without atomic rename, no JVM for a URI...).

    The message starts with the path (``'s3a://b/out': ...``); :meth:`reason` is the rest, for messages that
    name the path already.
    """

    def reason(self, path) -> str:
        text, prefix = str(self), f"{str(path)!r}: "
        return text[len(prefix):] if text.startswith(prefix) else text


def scheme(path) -> str:
    """The URI scheme in lower case (``"hdfs"``, ``"s3a"``, ``"file"``), or ``""`` for a plain path."""
    match = _SCHEME.match(str(path))
    # one letter before the colon is a Windows drive (C:\\data), not a scheme
    return match.group(1).lower() if match and len(match.group(1)) > 1 else ""


def is_local(path) -> bool:
    """True for a path on the driver's file system: a plain path or a ``file:`` URI."""
    return scheme(path) in ("", "file")


def local_path(path) -> Path:
    """``path`` (a plain path or a ``file:`` URI: ``file:/x``, ``file:///x``, ``file://localhost/x``) as an
    absolute local Path; any other URI raises :class:`StorageError` (it is never turned into a local path)."""
    text = str(path)
    kind = scheme(text)
    if kind == "file":
        rest = text[len("file:"):]
        if rest.startswith("//"):
            host, _, rest = rest[2:].partition("/")
            if host not in ("", "localhost"):
                raise StorageError(f"{text!r}: a file: URI of another host ({host}) is not a local path")
            rest = "/" + rest
        return Path(rest).absolute()
    if kind:
        raise StorageError(f"{text!r} is a {kind}: URI, not a path on the driver's file system")
    return Path(text).absolute()


def join(base, *parts) -> str:
    """``base/part/...`` for a path or a URI (``pathlib`` would turn ``hdfs://nn/x`` into ``hdfs:/nn/x``)."""
    text = str(base)
    for part in parts:
        text = text.rstrip("/") + "/" + str(part).strip("/")
    return text


class Storage:
    """Driver-side file operations on one file system (module docstring).  Paths are strings (or Paths)."""

    name = "storage"
    atomic_rename = False

    def exists(self, path) -> bool:
        raise NotImplementedError

    def is_dir(self, path) -> bool:
        raise NotImplementedError

    def is_file(self, path) -> bool:
        raise NotImplementedError

    def mkdirs(self, path) -> None:
        raise NotImplementedError

    def rename(self, source, target) -> None:
        """Rename ``source`` to ``target``, which must not exist; raises OSError when it cannot."""
        raise NotImplementedError

    def delete(self, path) -> None:
        """Delete a file or a folder with everything below it (nothing when it does not exist)."""
        raise NotImplementedError

    def list(self, path) -> list:
        """The names in a folder, sorted."""
        raise NotImplementedError

    def mtime(self, path) -> float:
        """The modification time in seconds since the epoch."""
        raise NotImplementedError

    def read_bytes(self, path) -> bytes:
        raise NotImplementedError

    def write_bytes(self, path, data: bytes) -> None:
        raise NotImplementedError

    def checksums(self, path) -> list | None:
        """``[(relative name, checksum bytes), ...]`` of every file at or below ``path`` in sorted order, from
        the checksums the file system keeps; None when it keeps none for some file."""
        return None

    def upload(self, folder: Path, target) -> None:
        """Copy the files below the local ``folder`` into the folder ``target`` (created), keeping the tree."""
        for source in sorted(Path(folder).rglob("*")):
            if source.is_file():
                self.write_bytes(join(target, source.relative_to(folder).as_posix()), source.read_bytes())

    def uri(self, path) -> str:
        """A URI Spark's readers and writers take for ``path``."""
        return str(path)


class LocalStorage(Storage):
    """The driver's file system (plain paths and ``file:`` URIs), with POSIX ``rename``."""

    name = "local"
    atomic_rename = True

    def exists(self, path) -> bool:
        return local_path(path).exists()

    def is_dir(self, path) -> bool:
        return local_path(path).is_dir()

    def is_file(self, path) -> bool:
        return local_path(path).is_file()

    def mkdirs(self, path) -> None:
        local_path(path).mkdir(parents=True, exist_ok=True)

    def rename(self, source, target) -> None:
        target = local_path(target)
        if target.exists():
            raise FileExistsError(f"cannot rename {source} to {target}: it exists")
        os.rename(local_path(source), target)

    def delete(self, path) -> None:
        path = local_path(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def list(self, path) -> list:
        return sorted(p.name for p in local_path(path).iterdir())

    def mtime(self, path) -> float:
        return local_path(path).stat().st_mtime

    def read_bytes(self, path) -> bytes:
        return local_path(path).read_bytes()

    def write_bytes(self, path, data: bytes) -> None:
        path = local_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def uri(self, path) -> str:
        return local_path(path).as_uri()


class HadoopStorage(Storage):
    """Any Hadoop file system, through the JVM of a classic session (``spark._jvm``).

    Parameters
    ----------
    spark : SparkSession
        A classic session; its Hadoop configuration (``spark.hadoop.*``) gives the file systems and their
        credentials, as for Spark's own readers and writers.
    path : str, optional
        A path of the file system, to name it (``atomic_rename`` follows its scheme).
    """

    name = "hadoop"

    def __init__(self, spark, path: str = "file:/"):
        if _is_connect(spark):
            raise StorageError(f"{path!r}: driver-side file operations on a {scheme(path) or 'file'}: URI need the "
                               f"JVM of a classic session; a Spark Connect client has none (inputs on any URI are "
                               f"read through Spark, but outputs and publications must be local or mounted paths)")
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self.scheme = scheme(path) or "file"
        self.atomic_rename = self.scheme in ATOMIC_RENAME_SCHEMES

    def _path(self, path):
        return self._jvm.org.apache.hadoop.fs.Path(str(path))

    def _fs(self, path):
        return self._path(path).getFileSystem(self._conf)

    def exists(self, path) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def is_dir(self, path) -> bool:
        p = self._path(path)
        fs = self._fs(path)
        return bool(fs.exists(p) and fs.getFileStatus(p).isDirectory())

    def is_file(self, path) -> bool:
        p = self._path(path)
        fs = self._fs(path)
        return bool(fs.exists(p) and fs.getFileStatus(p).isFile())

    def mkdirs(self, path) -> None:
        if not self._fs(path).mkdirs(self._path(path)):
            raise OSError(f"cannot create the folder {path}")

    def rename(self, source, target) -> None:
        fs = self._fs(target)
        if fs.exists(self._path(target)):  # FileSystem.rename would move source *into* an existing folder
            raise FileExistsError(f"cannot rename {source} to {target}: it exists")
        if not fs.rename(self._path(source), self._path(target)):
            raise OSError(f"cannot rename {source} to {target}")

    def delete(self, path) -> None:
        self._fs(path).delete(self._path(path), True)

    def list(self, path) -> list:
        return sorted(status.getPath().getName() for status in self._fs(path).listStatus(self._path(path)))

    def mtime(self, path) -> float:
        return self._fs(path).getFileStatus(self._path(path)).getModificationTime() / 1000.0

    def read_bytes(self, path) -> bytes:
        stream = self._fs(path).open(self._path(path))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write_bytes(self, path, data: bytes) -> None:
        stream = self._fs(path).create(self._path(path), True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def checksums(self, path) -> list | None:
        root = self._path(path)
        fs = self._fs(path)
        base = fs.getFileStatus(root).getPath().toUri().getPath().rstrip("/")
        files = fs.listFiles(root, True)  # a RemoteIterator of every file below (or the file itself)
        found = []
        while files.hasNext():
            status = files.next()
            checksum = fs.getFileChecksum(status.getPath())
            if checksum is None:
                return None
            name = status.getPath().toUri().getPath()[len(base):].lstrip("/") or status.getPath().getName()
            found.append((name, f"{checksum.getAlgorithmName()}:{status.getLen()}:".encode()
                          + bytes(checksum.getBytes())))
        return sorted(found)

    def upload(self, folder: Path, target) -> None:
        self.mkdirs(target)
        for source in sorted(Path(folder).iterdir()):
            if source.is_dir():  # into a folder that may exist (copyFromLocalFile would nest a folder in it)
                self.upload(source, join(target, source.name))
            else:
                self._fs(target).copyFromLocalFile(False, True, self._path(source.absolute().as_uri()),
                                                   self._path(join(target, source.name)))

    def uri(self, path) -> str:
        return str(path)


def _is_connect(spark) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def storage_for(path, spark=None) -> Storage:
    """The :class:`Storage` of ``path``: local for plain paths and ``file:`` URIs, Hadoop for other URIs.

    ``spark`` is a session or a callable returning one (called only for a URI that needs the JVM).
    """
    if is_local(path):
        return LocalStorage()
    if spark is None:
        raise StorageError(f"{str(path)!r}: a {scheme(path)}: URI needs a Spark session to be reached")
    session = spark() if callable(spark) else spark
    return HadoopStorage(session, str(path))
