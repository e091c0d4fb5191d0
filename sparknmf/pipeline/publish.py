"""Versioned publications of a table (the recommendation refresh), switched atomically, and the checks before a switch.

Works on a file system the driver sees as paths, as
:mod:`sparknmf.pipeline.staging` does (POSIX ``rename`` and ``link``)::

    root/
      CURRENT              {"version": "v000007", "history": ["v000005", "v000006", "v000007"], "last": 7}
      versions/v000005/ ... v000007/     complete, validated publications
      staging/<id>/        a run in progress (never read)
      LOCK                 the running refresh: host, pid, process start, since, token
      LOCK.break-<token>   for a moment: the guard of the run removing a stale LOCK

A run writes into ``staging/<id>``, validates it, renames it to
``versions/v<next>`` and then switches ``CURRENT`` by writing a temporary file
and renaming it over the old one.  A crash at any point leaves ``CURRENT``
naming the previous complete version: before the switch the new version is
an orphan that readers never see (the next run deletes it), after it the new
one is complete.  The last ``keep`` versions stay on disk and
:meth:`~Publication.rollback` switches back to the one before.
:func:`metric_gate` and :func:`validate_table` are the checks a run makes
before it switches.

The lock that a run holds throughout is :mod:`sparknmf.pipeline.lock`.

Publishers are pluggable: :class:`Publisher` is what the recommendation refresh needs (a lock for the run,
the current version and its history, publish a set of models, tables and documents as one new version
after a check, roll back).  :class:`Publication` is the folder publisher (``publish.publisher = "folder"``,
:data:`PUBLISHERS`); it needs a file system the driver sees as paths (a local disk or a shared POSIX mount:
``rename`` and ``link`` in one folder) and refuses any other URI naming what it supports.  A table format
with atomic commits and time travel (Delta Lake, Iceberg) can implement the same interface on object
stores: a version is a table version, ``commit`` one transaction, ``rollback`` a restore.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sparknmf.pipeline.lock import LOCK_STALE_AFTER, RefreshLock, utc_now
from sparknmf.pipeline.staging import PublishError, fsync_dir, read_json, write_json
from sparknmf.pipeline.storage import StorageError, local_path, scheme

__all__ = ["PUBLISHERS", "Publication", "PublishError", "Publisher", "Version", "metric_gate", "open_publisher",
           "validate_table"]

logger = logging.getLogger("sparknmf")

_POINTER = "CURRENT"
_LOCK = "LOCK"
_VERSION_DIGITS = 6


@dataclass(frozen=True)
class Version:
    """A published version: its name (``v000007``), folder and metadata (``version.json``)."""

    name: str
    path: Path
    meta: dict

    @property
    def number(self) -> int:
        return int(self.name[1:])

    def uri(self, *parts) -> str:
        """A URI of the version or of a part of it (``version.uri("model")``) for Spark readers."""
        return Path(self.path).joinpath(*parts).as_uri()


def _version_name(number: int) -> str:
    return f"v{number:0{_VERSION_DIGITS}d}"


def _is_version(name: str) -> bool:
    return len(name) == _VERSION_DIGITS + 1 and name[0] == "v" and name[1:].isdigit()


class Publisher(abc.ABC):
    """Where the recommendation refresh publishes: versions, one of them current, switched as a whole.

    An implementation keeps these promises: readers see the current version complete or the previous one,
    never a mix; a crash at any point leaves a complete current version; :meth:`publish` makes nothing
    current when ``validate`` raises; one run at a time holds :meth:`lock`.
    """

    kind = ""

    @abc.abstractmethod
    def lock(self):
        """A context manager held for a whole run; raises :class:`~sparknmf.pipeline.lock.LockBusy`."""

    @abc.abstractmethod
    def current(self) -> Version | None:
        """The version readers see (None before the first publication)."""

    @abc.abstractmethod
    def history(self) -> list:
        """Names of the kept versions, oldest first."""

    def prepare(self) -> None:
        """Holding the lock, before a refresh: clear what crashed runs left behind."""

    @abc.abstractmethod
    def publish(self, *, meta: dict, models=None, tables=None, documents=None, validate=None) -> Version:
        """Write a new version and make it current.

        Parameters
        ----------
        meta : dict
            The version's metadata (``Version.meta`` when read back: fingerprint, metrics, ...).
        models : dict, optional
            Name -> an MLWritable (``model.write().save(...)``).
        tables : dict, optional
            Name -> a DataFrame, written as Parquet.
        documents : dict, optional
            Name -> JSON data.
        validate : callable, optional
            ``validate(locate)`` with ``locate(name) -> URI`` of a written part; raises to publish nothing.
        """

    @abc.abstractmethod
    def rollback(self) -> Version:
        """Make the version before the current one current again; returns it."""


class Publication(Publisher):
    """The folder publisher: versions under ``root`` with an atomic ``CURRENT`` pointer (module docstring).

    Parameters
    ----------
    root : path or ``file:`` URI
        On a file system the driver sees as paths; any other URI raises
        :class:`~sparknmf.pipeline.storage.StorageError`.
    keep : int
        Versions kept on disk (>= 2 so that there is one to roll back to).

    Crash-injection points (for tests): :attr:`hooks` maps ``"staged"``,
    ``"moved"``, ``"pointer_written"`` and ``"switched"`` to callables run at
    that step of :meth:`commit`.
    """

    kind = "folder"

    def __init__(self, root, *, keep: int = 5):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
            raise ValueError(f"keep must be an integer >= 2 (one version to roll back to), got {keep!r}")
        if scheme(root) not in ("", "file"):
            raise StorageError(
                f"{str(root)!r}: the folder publisher keeps CURRENT, versions/ and LOCK on a file system the driver "
                f"sees as paths (POSIX rename and link, for the atomic switch and the lock), and {scheme(root)}: is "
                f"not one; supported: a local path, a shared POSIX mount (NFS, ...) or a file: URI")
        self.root = local_path(root)
        self.keep = keep
        self.hooks: dict = {}
        self._held: RefreshLock | None = None

    # ------------------------------------------------------------ reading
    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def pointer(self) -> dict | None:
        """The content of ``CURRENT`` (None before the first publication)."""
        path = self.root / _POINTER
        if not path.exists():
            return None
        try:
            data = read_json(path)
            if not _is_version(data["version"]) or data["version"] not in data["history"]:
                raise ValueError("no valid version")
        except (ValueError, KeyError, TypeError) as err:
            raise PublishError(f"{path} is damaged ({err}); restore it from the versions folder") from None
        return data

    def current(self) -> Version | None:
        """The version readers see, or None."""
        data = self.pointer()
        return None if data is None else self._version(data["version"])

    def _version(self, name: str) -> Version:
        path = self.versions_dir / name
        meta_path = path / "version.json"
        if not meta_path.is_file():
            raise PublishError(f"{path} is missing or incomplete (no version.json)")
        return Version(name, path, read_json(meta_path))

    def history(self) -> list:
        """Names of the kept versions, oldest first; the last one is current (unless rolled back past it)."""
        data = self.pointer()
        return [] if data is None else list(data["history"])

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def lock(self, *, stale_after: float = LOCK_STALE_AFTER):
        """An exclusive lock on the publication for one refresh (``with pub.lock(): ...``; module docstring).

        Raises :class:`~sparknmf.pipeline.lock.LockBusy` when another run holds it.  While it is held, :meth:`commit`,
        :meth:`rollback`, :meth:`prune` and :meth:`clean_staging` first check that this run still holds it.

        Parameters
        ----------
        stale_after : float
            Seconds after which the lock of a run on another host (whose process cannot be checked)
            that stopped refreshing it is stale.
        """
        with RefreshLock(self.root / _LOCK, stale_after=stale_after) as held:
            self._held = held
            try:
                yield held
            finally:
                self._held = None

    def _fence(self) -> None:
        """Refuse to change anything when this publication's lock was taken over (held through :meth:`lock`)."""
        if self._held is not None:
            self._held.verify()

    def prepare(self) -> None:
        self.clean_staging()

    def publish(self, *, meta: dict, models=None, tables=None, documents=None, validate=None) -> Version:
        """Write the parts into a new staging folder, then :meth:`commit` it (:meth:`Publisher.publish`)."""
        stage = self.stage()
        try:
            for name, model in (models or {}).items():
                model.write().save((stage / name).as_uri())
            for name, frame in (tables or {}).items():
                frame.write.parquet((stage / name).as_uri())
            for name, document in (documents or {}).items():
                write_json(stage / name, document)
            check = None if validate is None else (lambda folder: validate(lambda name: (folder / name).as_uri()))
            return self.commit(stage, meta, validate=check)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise

    def stage(self) -> Path:
        """A new empty staging folder for a run."""
        path = self.root / "staging" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def _hook(self, name: str) -> None:
        if name in self.hooks:
            self.hooks[name]()

    def _next_number(self) -> int:
        names = [p.name for p in self.versions_dir.iterdir()] if self.versions_dir.exists() else []
        numbers = [int(n[1:]) for n in names if _is_version(n)] + [int(n[1:]) for n in self.history()]
        return max(numbers + [self._last()], default=0) + 1

    def _last(self) -> int:
        """The highest version number ever published (rolled-back numbers are not reused)."""
        data = self.pointer()
        return 0 if data is None else int(data.get("last", 0))

    def commit(self, stage: Path, meta: dict, validate=None) -> Version:
        """Validate ``stage``, make it the next version and switch ``CURRENT`` to it.

        Parameters
        ----------
        stage : Path
            A folder from :meth:`stage`, fully written.
        meta : dict
            Saved as the version's ``version.json`` (with the version's name and time).
        validate : callable, optional
            ``validate(stage)`` raises (e.g. :class:`PublishError`) when the
            staged output is wrong; nothing is switched then.

        Returns
        -------
        Version
        """
        stage = Path(stage)
        if validate is not None:
            validate(stage)
        self._hook("staged")
        self._fence()
        name = _version_name(self._next_number())
        write_json(stage / "version.json", {**meta, "version": name, "published": utc_now()})
        fsync_dir(stage)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        os.rename(stage, self.versions_dir / name)
        fsync_dir(self.versions_dir)
        self._hook("moved")
        history = [v for v in self.history() if v != name] + [name]
        self._fence()
        self._switch(name, history[-self.keep:], int(name[1:]))
        self._hook("switched")
        self.prune()
        return self._version(name)

    def _switch(self, name: str, history: list, last: int) -> None:
        pointer = self.root / _POINTER
        fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": name, "history": history, "last": last, "switched": utc_now()}, handle,
                          indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            self._hook("pointer_written")
            os.replace(tmp, pointer)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.root)

    def rollback(self) -> Version:
        """Switch ``CURRENT`` back to the previous kept version; returns it.  The rolled-back version is deleted."""
        history = self.history()
        if len(history) < 2:
            raise PublishError(f"{self.root}: no previous version to roll back to (history: {history})")
        previous = self._version(history[-2])  # must be complete before we switch to it
        self._fence()
        self._switch(previous.name, history[:-1], self._last())
        self.prune()
        return previous

    def prune(self) -> list:
        """Delete versions not in the history, and staging folders of earlier runs; returns what was deleted."""
        self._fence()
        keep = set(self.history())
        removed = []
        if self.versions_dir.exists():
            for path in self.versions_dir.iterdir():
                if path.name not in keep:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        for tmp in self.root.glob(".CURRENT.*.tmp"):
            tmp.unlink(missing_ok=True)
        return removed

    def clean_staging(self, keep: Path | None = None) -> None:
        """Delete staging folders left by crashed runs (call while holding the lock)."""
        self._fence()
        folder = self.root / "staging"
        if folder.exists():
            for path in folder.iterdir():
                if keep is None or path != Path(keep):
                    shutil.rmtree(path, ignore_errors=True)


PUBLISHERS = {"folder": Publication}  # publish.publisher -> its class: Publisher(root, keep=...)


def open_publisher(kind: str, root, *, keep: int = 5) -> Publisher:
    """The publisher ``kind`` (:data:`PUBLISHERS`) at ``root``; StorageError when it cannot publish there."""
    if kind not in PUBLISHERS:
        raise ValueError(f"unknown publisher {kind!r}; the publishers are {sorted(PUBLISHERS)}")
    return PUBLISHERS[kind](root, keep=keep)


# ------------------------------------------------------------------------------------------ checks before a switch
def metric_gate(new: dict, published: dict | None, margins: dict) -> list:
    """Reasons to refuse a new model: metrics worse than the published model's by more than a margin.

    Parameters
    ----------
    new, published : dict
        Metric name -> value on the same held-out data (``published`` None: no gate).
    margins : dict
        Metric name -> allowed worsening (absolute).  ``rmse``/``mae`` are
        better when lower; every other metric (``ndcg``, ``precision``, ...)
        when higher.

    Returns
    -------
    list of str (empty: publish).
    """
    if not published:
        return []
    reasons = []
    for metric, margin in margins.items():
        if metric not in new or published.get(metric) is None:
            continue
        lower_is_better = metric in ("rmse", "mae")
        worse = (new[metric] - published[metric]) if lower_is_better else (published[metric] - new[metric])
        if not math.isfinite(new[metric]) or worse > margin:
            direction = "higher" if lower_is_better else "lower"
            reasons.append(f"held-out {metric} {new[metric]:.6g} is {direction} than the published model's "
                           f"{published[metric]:.6g} by {worse:.6g}, more than the margin {margin:g}")
    return reasons


def validate_table(spark, uri: str, *, schema, rows: int, numeric=()) -> None:
    """Read back a written Parquet table and check it before publishing (raises :class:`PublishError`).

    Parameters
    ----------
    uri : str
        The table's location.
    schema : pyspark StructType
        The schema expected: names, types and nesting (nullability is not compared: Parquet
        files read back as nullable).
    rows : int
        The exact row count expected.
    numeric : sequence of str
        Columns whose values must be non-null and finite: ``"score"``, or
        ``"recommendations.rating"`` for a field of every element of an
        array-of-structs column.
    """
    from pyspark.sql import functions as F

    try:
        frame = spark.read.parquet(uri)
    except Exception as err:  # AnalysisException and friends: unreadable output
        raise PublishError(f"staged table {uri} cannot be read: {type(err).__name__}: {err}") from None
    if frame.schema.simpleString() != schema.simpleString():
        raise PublishError(f"staged table {uri} has schema {frame.schema.simpleString()}, "
                           f"expected {schema.simpleString()}")
    checks = [F.count(F.lit(1)).alias("rows")]
    for i, expression in enumerate(numeric):
        array, _, member = expression.partition(".")
        if member:
            values = F.transform(F.col(array), _field(member))
            bad = F.size(F.filter(values, lambda v: v.isNull() | F.isnan(v) | (F.abs(v) == float("inf"))))
        else:
            v = F.col(expression).cast("double")
            bad = (v.isNull() | F.isnan(v) | (F.abs(v) == float("inf"))).cast("long")
        checks.append(F.sum(bad).alias(f"bad{i}"))
    stats = frame.agg(*checks).first()
    if stats["rows"] != rows:
        raise PublishError(f"staged table {uri} has {stats['rows']} rows, expected {rows}")
    for i, expression in enumerate(numeric):
        if stats[f"bad{i}"]:
            raise PublishError(f"staged table {uri} has {stats[f'bad{i}']} null, NaN or infinite values in "
                               f"{expression}")


def _field(name):
    """``element -> element.name`` as double, for ``F.transform`` (which reads the lambda's arity)."""
    return lambda element: element.getField(name).cast("double")
