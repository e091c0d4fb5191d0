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

The lock
--------
:meth:`Publication.lock` is held for a whole run.  Taking it creates ``LOCK``
complete or not at all: the record (host, boot id, PID namespace, pid, the
process's start time from ``/proc/<pid>/stat``, start time, a random token) is
written and flushed to ``LOCK.<token>.tmp``, then hard-linked to ``LOCK``;
the link fails when ``LOCK`` exists.  The holder touches ``LOCK`` every
:data:`LOCK_HEARTBEAT` seconds and deletes it when done.  An existing ``LOCK``
is *stale* when

* it names a process on this machine (same host, boot and PID namespace) that
  is gone, or a PID now used by another process (another start time);
* it names a process elsewhere and was not touched for ``stale_after``
  seconds (:data:`LOCK_STALE_AFTER`, 10 minutes: 20 missed heartbeats);
* it is unreadable or empty (never written by this module) and older than
  :data:`LOCK_GRACE` seconds.

Otherwise the run is refused with :class:`LockBusy` naming the holder.  A
stale ``LOCK`` is removed only by the contender that creates the break
guard ``LOCK.break-<its token>`` (the same atomic create), and only if
``LOCK`` is still the very file judged stale (same inode, bytes and
modification time); then every contender tries to link its own ``LOCK`` and
one succeeds.  Contenders that judged the same stale file find the guard
taken; one that judged an older file finds another file.  A guard left by
a crash is stale by the same rules (another host's after
:data:`LOCK_GRACE`) and is broken the same way.  So two runs never hold the
lock at once, as long as a process elsewhere that holds it keeps touching it
(a holder stopped for ``stale_after`` seconds loses it: :meth:`commit`,
:meth:`~Publication.rollback` and :meth:`~Publication.prune` check before
they change anything that ``LOCK`` still names this run).  A crash leaves
``LOCK`` naming a dead process, taken over by the next run at once on the
same machine, after ``stale_after`` from another one; host names must be
unique among the machines that share a publication.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sparknmf.pipeline.staging import PublishError, fsync_dir, local_path, read_json, write_json

__all__ = ["LOCK_GRACE", "LOCK_HEARTBEAT", "LOCK_STALE_AFTER", "LockBusy", "Publication", "PublishError", "Version",
           "metric_gate", "validate_table"]

logger = logging.getLogger("sparknmf")

_POINTER = "CURRENT"
_LOCK = "LOCK"
_VERSION_DIGITS = 6
LOCK_STALE_AFTER = 600.0  # seconds: a LOCK whose holder cannot be checked (another host) is stale when this old
LOCK_HEARTBEAT = 30.0     # seconds: a holder touches its LOCK this often
LOCK_GRACE = 30.0         # seconds: an unreadable LOCK, or a break guard of another host, is stale when this old
_MAX_DEPTH = 3            # break guards of break guards, at most
_ATTEMPTS = 20


@dataclass(frozen=True)
class Version:
    """A published version: its name (``v000007``), folder and metadata (``version.json``)."""

    name: str
    path: Path
    meta: dict

    @property
    def number(self) -> int:
        return int(self.name[1:])


def _version_name(number: int) -> str:
    return f"v{number:0{_VERSION_DIGITS}d}"


def _is_version(name: str) -> bool:
    return len(name) == _VERSION_DIGITS + 1 and name[0] == "v" and name[1:].isdigit()


class Publication:
    """Versions of a published output under ``root`` with an atomic ``CURRENT`` pointer (module docstring).

    Parameters
    ----------
    root : path
    keep : int
        Versions kept on disk (>= 2 so that there is one to roll back to).

    Crash-injection points (for tests): :attr:`hooks` maps ``"staged"``,
    ``"moved"``, ``"pointer_written"`` and ``"switched"`` to callables run at
    that step of :meth:`commit`.
    """

    def __init__(self, root, *, keep: int = 5):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
            raise ValueError(f"keep must be an integer >= 2 (one version to roll back to), got {keep!r}")
        self.root = local_path(root)
        self.keep = keep
        self.hooks: dict = {}
        self._held: _Lock | None = None

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
    def lock(self, *, stale_after: float = LOCK_STALE_AFTER) -> "_Lock":
        """An exclusive lock on the publication for one refresh (``with pub.lock(): ...``; module docstring).

        Raises :class:`LockBusy` when another run holds it.  While it is held, :meth:`commit`,
        :meth:`rollback`, :meth:`prune` and :meth:`clean_staging` first check that this run still holds it.

        Parameters
        ----------
        stale_after : float
            Seconds after which the lock of a run on another host (whose process cannot be checked)
            that stopped refreshing it is stale.
        """
        return _Lock(self.root / _LOCK, self, stale_after=stale_after)

    def _fence(self) -> None:
        """Refuse to change anything when this publication's lock was taken over (held through :meth:`lock`)."""
        if self._held is not None:
            self._held.verify()

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
        write_json(stage / "version.json", {**meta, "version": name, "published": _now()})
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
                json.dump({"version": name, "history": history, "last": last, "switched": _now()}, handle,
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


# ------------------------------------------------------------------------------------------ the refresh lock


class LockBusy(PublishError):
    """Another run holds the publication's lock (the refresh job exits with code 4).

    ``holder`` is the holder's lock record (host, pid, since, ...), or None when it cannot be read.
    """

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder


def _read_first_line(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.readline().strip() or None
    except (OSError, ValueError):
        return None


def _machine() -> dict:
    """What makes a PID meaningful: the host's name, its boot and the PID namespace (Linux; None elsewhere)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return {"host": socket.gethostname(), "boot_id": _read_first_line("/proc/sys/kernel/random/boot_id"),
            "pid_ns": namespace}


def _proc_stat(pid: int) -> tuple | None:
    """``(state, start time)`` of process ``pid`` from /proc/<pid>/stat (fields 3 and 22; the start in clock
    ticks after boot), or None without /proc."""
    text = _read_first_line(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        fields = text[text.rindex(")") + 2:].split()  # fields after "(comm)": field 3 on
        return fields[0], int(fields[19])
    except (ValueError, IndexError):
        return None


def _process_start(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    stat = _proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X", "x")


def _is_pid(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _stale(record, age: float, max_age: float, here: dict) -> str | None:
    """Why a lock file is stale, or None when its holder may be alive.

    ``record`` is its content (None: unreadable or empty), ``age`` the seconds since it was last
    touched (written or refreshed by its holder's heartbeat).
    """
    if not isinstance(record, dict) or not _is_pid(record.get("pid")) or not record.get("host"):
        return f"it is unreadable or empty and {age:.0f} s old" if age > LOCK_GRACE else None
    pid = record["pid"]
    if _same_machine(record, here):
        if not _alive(pid):
            return f"its process {pid} is gone"
        start, recorded = _process_start(pid), record.get("pid_start")
        if start is not None and recorded is not None:
            return None if start == recorded else f"PID {pid} is another process now (started later)"
    if age > max_age:
        return f"it was last refreshed {age:.0f} s ago (stale after {max_age:.0f} s)"
    return None


def _same_machine(record: dict, here: dict) -> bool:
    """Whether the PID in ``record`` means a process here: same host, boot and PID namespace (a record without
    boot or namespace, from sparknmf 0.1, is compared by host alone)."""
    return all(record.get(key, here[key]) == here[key] for key in here)


def _describe(record) -> str:
    if not isinstance(record, dict) or not _is_pid(record.get("pid")):
        return "holder unknown: the lock file is unreadable or empty"
    return f"pid {record.get('pid')} on {record.get('host')} since {record.get('since')}"


def _snapshot(path: Path):
    """``(record, raw bytes, stat)`` of a lock file (record None when unreadable), or None when it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        record = None
    return (record if isinstance(record, dict) else None), raw, stat


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _create(path: Path, record: dict) -> bool:
    """Create ``path`` holding ``record`` if it does not exist, atomically and complete; False when it exists.

    The record is written and flushed to a temporary file first, then hard-linked to ``path``: the link
    fails when ``path`` exists, and ``path`` never exists empty or half-written (a full disk fails the
    temporary file, before the link).
    """
    tmp = path.with_name(f"{path.name}.{record['token']}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, (json.dumps(record) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            # over NFS a retransmitted link reports EEXIST though it succeeded: then tmp has 2 links
            return os.stat(tmp).st_nlink == 2
        except FileNotFoundError:  # tmp removed as a leftover by a holder: try again
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


class _Lock:
    """The publication's lock: the file ``LOCK`` names its holder (module docstring, "The lock").

    ``with pub.lock(): ...`` raises :class:`LockBusy` when another live run holds it.
    """

    def __init__(self, path: Path, owner: "Publication | None" = None, *, stale_after: float = LOCK_STALE_AFTER,
                 heartbeat: float | None = None):
        self.path = path
        self.owner = owner
        self.stale_after = float(stale_after)
        self.heartbeat = float(heartbeat if heartbeat is not None else min(LOCK_HEARTBEAT, self.stale_after / 4))
        self.record: dict | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ---------------------------------------------------------------- taking it
    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        here = _machine()
        self.record = {**here, "pid": os.getpid(), "pid_start": _process_start(os.getpid()), "since": _now(),
                       "token": uuid.uuid4().hex, "heartbeat": self.heartbeat, "stale_after": self.stale_after}
        for _ in range(_ATTEMPTS):
            if _create(self.path, self.record):
                break
            self._clear(self.path, here, self.stale_after, 0)
        else:
            raise LockBusy(f"{self.path.parent}: could not take the lock in {_ATTEMPTS} attempts (other runs keep "
                           f"taking it)")
        self.lost = None
        self._remove_leftovers(here)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="sparknmf-lock-heartbeat", daemon=True)
        self._beat.start()
        if self.owner is not None:
            self.owner._held = self
        return self

    def _clear(self, path: Path, here: dict, max_age: float, depth: int) -> None:
        """``path`` exists: raise :class:`LockBusy` if its holder may be alive; remove it if it is stale.

        Only the run holding the break guard ``<path>.break-<its token>`` (created like a lock) may remove a
        stale lock file, and only when it is still the very file judged stale: contenders that judged the
        same stale file find the guard taken, and a late contender that judged an older one finds another
        file there.  A guard left by a crash is stale by the same rules and broken the same way.
        """
        snapshot = _snapshot(path)
        if snapshot is None:
            return  # gone meanwhile: try again
        record, raw, stat = snapshot
        why = _stale(record, time.time() - stat.st_mtime, max_age, here)
        if why is None:
            if depth:
                raise LockBusy(f"{self.path.parent}: another run is taking over a stale lock ({_describe(record)})",
                               record)
            readable = record is not None and _is_pid(record.get("pid")) and bool(record.get("host"))
            rule = ("once that process has ended" if readable and _same_machine(record, here)
                    else f"if it is not refreshed for {max_age:.0f} s" if readable
                    else f"when it is older than {LOCK_GRACE:.0f} s")
            raise LockBusy(f"{self.path.parent} is being refreshed by another run ({_describe(record)}); the lock "
                           f"is taken over {rule}", record)
        if depth >= _MAX_DEPTH:
            raise LockBusy(f"{self.path.parent}: too many stale break guards ({path}); delete {self.path}.break-*")
        key = record.get("token") if record is not None and isinstance(record.get("token"), str) else None
        key = key if key and key.isalnum() else f"i{stat.st_ino}-{stat.st_mtime_ns}"
        guard = path.with_name(f"{path.name}.break-{key}")
        if not _create(guard, {**self.record, "breaks": path.name}):
            self._clear(guard, here, LOCK_GRACE, depth + 1)
            return
        try:
            now = _snapshot(path)
            if now is not None and now[1] == raw and (now[2].st_ino, now[2].st_mtime_ns) == (stat.st_ino,
                                                                                             stat.st_mtime_ns):
                path.unlink()
                if path == self.path:
                    logger.warning("%s: took over the lock from %s: %s", self.path.parent, _describe(record), why)
                else:
                    logger.warning("%s: removed the break guard %s of %s: %s", self.path.parent, path.name,
                                   _describe(record), why)
        finally:
            self._unlink_if_mine(guard)

    def _remove_leftovers(self, here: dict) -> None:
        """Delete the temporary files and break guards of contenders that are gone (stale by the rules of a
        lock file; another host's after :data:`LOCK_GRACE`): ours is the lock now, they guard nothing."""
        for path in self.path.parent.glob(f"{self.path.name}.*"):
            if self.record["token"] in path.name:
                continue
            try:
                snapshot = _snapshot(path)
                if snapshot is not None and _stale(snapshot[0], time.time() - snapshot[2].st_mtime, LOCK_GRACE, here):
                    path.unlink()
            except OSError:
                pass

    # ---------------------------------------------------------------- holding it
    def _mine(self) -> bool:
        snapshot = _snapshot(self.path)
        return snapshot is not None and snapshot[0] is not None and snapshot[0].get("token") == self.record["token"]

    def _unlink_if_mine(self, path: Path) -> None:
        snapshot = _snapshot(path)
        if snapshot is not None and snapshot[0] is not None and snapshot[0].get("token") == self.record["token"]:
            path.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                if not self._mine():
                    self.lost = f"{self.path} no longer names this run"
                    logger.error("%s: %s; it will not switch CURRENT", self.path.parent, self.lost)
                    return
                os.utime(self.path)
            except OSError as err:
                logger.warning("%s: could not refresh the lock: %s", self.path.parent, err)

    def verify(self) -> None:
        """Raise :class:`PublishError` unless this run still holds the lock (checked before every switch)."""
        if self.lost is None and not self._mine():
            self.lost = f"{self.path} no longer names this run"
        if self.lost is not None:
            raise PublishError(f"{self.path.parent}: this run lost the lock ({self.lost}); nothing was switched")

    def __exit__(self, *exc):
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self.owner is not None and getattr(self.owner, "_held", None) is self:
            self.owner._held = None
        self._unlink_if_mine(self.path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
