"""The refresh lock: one run at a time on a publication, never two, and never blocked forever by a crash.

:meth:`sparknmf.pipeline.publish.Publication.lock` is held for a whole run.  Taking it creates ``LOCK``
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
(a holder stopped for ``stale_after`` seconds loses it: :meth:`~sparknmf.pipeline.publish.Publication.commit`,
:meth:`~sparknmf.pipeline.publish.Publication.rollback` and ``prune`` check before
they change anything that ``LOCK`` still names this run).  A crash leaves
``LOCK`` naming a dead process, taken over by the next run at once on the
same machine, after ``stale_after`` from another one; host names must be
unique among the machines that share a publication.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from sparknmf.pipeline.staging import PublishError

__all__ = ["LOCK_GRACE", "LOCK_HEARTBEAT", "LOCK_STALE_AFTER", "LockBusy", "RefreshLock", "utc_now"]

logger = logging.getLogger("sparknmf")

LOCK_STALE_AFTER = 600.0  # seconds: a LOCK whose holder cannot be checked (another host) is stale when this old
LOCK_HEARTBEAT = 30.0     # seconds: a holder touches its LOCK this often
LOCK_GRACE = 30.0         # seconds: an unreadable LOCK, or a break guard of another host, is stale when this old
_MAX_DEPTH = 3            # break guards of break guards, at most
_ATTEMPTS = 20




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
            try:
                return os.stat(tmp).st_nlink == 2
            except FileNotFoundError:  # tmp removed as a leftover by the holder: try again
                return False
        except FileNotFoundError:  # tmp removed as a leftover by a holder: try again
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


class RefreshLock:
    """The publication's lock: the file ``LOCK`` names its holder (module docstring, "The lock").

    ``with pub.lock(): ...`` raises :class:`LockBusy` when another live run holds it.
    """

    def __init__(self, path: Path, *, stale_after: float = LOCK_STALE_AFTER,
                 heartbeat: float | None = None):
        self.path = path
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
        self.record = {**here, "pid": os.getpid(), "pid_start": _process_start(os.getpid()), "since": utc_now(),
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
        """Delete the other contenders' temporary files, and the break guards of contenders that are gone
        (stale by the rules of a lock file; another host's after :data:`LOCK_GRACE`): ours is the lock now.

        A temporary file goes at once, even when it is empty (its writer killed before it wrote a word): a
        live contender whose file is deleted before its link finds it gone and tries again (:func:`_create`).
        """
        for path in self.path.parent.glob(f"{self.path.name}.*"):
            if self.record["token"] in path.name:
                continue
            if path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
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
        self._unlink_if_mine(self.path)




def utc_now() -> str:
    """The time now, UTC, as ISO 8601 seconds (the records' "since" and "published")."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
