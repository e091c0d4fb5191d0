"""The refresh lock and the run records under concurrency, crashes and a full disk (no Spark).

* many runs started at once on a stale LOCK (a dead or reused PID, empty, another host's, a crashed
  breaker's guard): never two holders at once, one of them takes over;
* holders that crash while others keep trying: the LOCKs they leave are taken over, never two holders;
* kill -9 of a publishing process at random points: CURRENT names a complete, valid version and the next
  run publishes;
* jobs/recommend.py refused by the lock (exit 4), a failed rollback, a full disk: every run writes
  last_run.json, or exits 5 when it cannot.

Contenders and publishers are forked (multiprocessing "fork"): they start in milliseconds, and SIGKILL of a
forked process is as hard a crash as of any other.  Each holder appends ``enter <pid>`` after taking the
lock and ``exit <pid>`` (or ``crash <pid>`` just before ``os._exit``) before releasing it to one file opened
with O_APPEND: with one holder at a time the lines alternate.
"""

import errno
import hashlib
import importlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from sparknmf.pipeline import lock as lock_module
from sparknmf.pipeline.lock import LOCK_GRACE, LockBusy
from sparknmf.pipeline.publish import Publication, PublishError

FORK = multiprocessing.get_context("fork")
CONTENDERS = 20


def _log(path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _holders(log) -> dict:
    """Check that holders never overlapped (lines alternate enter/exit|crash of one pid); returns counts."""
    holder, counts = None, {"enter": 0, "exit": 0, "crash": 0}
    lines = log.read_text().split("\n")[:-1] if log.exists() else []
    for number, line in enumerate(lines, 1):
        event, pid = line.split()
        counts[event] += 1
        if event == "enter":
            assert holder is None, f"line {number}: {pid} took the lock while {holder} held it\n" + "\n".join(lines)
            holder = pid
        else:
            assert holder == pid, f"line {number}: {event} of {pid}, but the holder is {holder}"
            holder = None
    return counts


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _record(**changes) -> dict:
    """A lock record as this module writes it, for this process, with ``changes``."""
    record = {**lock_module._machine(), "pid": os.getpid(), "pid_start": lock_module._process_start(os.getpid()),
              "since": "2024-01-01T00:00:00Z", "token": "0" * 32, "heartbeat": 30.0, "stale_after": 600.0}
    return {**record, **changes}


def _stale_lock(root: Path, kind: str) -> None:
    """Leave a stale LOCK of ``kind`` in ``root`` (as a crash, a full disk or a reboot would)."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / "LOCK"
    if kind == "dead pid":
        lock.write_text(json.dumps(_record(pid=_dead_pid())))
    elif kind == "reused pid":  # our PID, but recorded with another start time: the holder was an earlier process
        lock.write_text(json.dumps(_record(pid_start=(_record()["pid_start"] or 0) - 1)))
    elif kind == "empty":
        lock.write_text("")
        _age(lock, LOCK_GRACE + 5)
    elif kind == "garbage":
        lock.write_text('{"pid": 12')
        _age(lock, LOCK_GRACE + 5)
    elif kind == "other host":
        lock.write_text(json.dumps(_record(host="elsewhere.example", boot_id="x", pid_ns="y")))
        _age(lock, 601)
    elif kind == "old format":  # written by sparknmf 0.1 (pid and host only)
        lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    elif kind == "dead pid and guard":  # a breaker killed between creating its guard and removing LOCK
        lock.write_text(json.dumps(_record(pid=_dead_pid(), token="a" * 32)))
        (root / f"LOCK.break-{'a' * 32}").write_text(json.dumps(_record(pid=_dead_pid(), token="b" * 32)))
    else:
        raise ValueError(kind)


# ------------------------------------------------------------------------------------------ the lock, one run
def test_lock_file_is_complete_names_its_holder_and_goes_away(tmp_path):
    pub = Publication(tmp_path)
    with pub.lock():
        record = json.loads((tmp_path / "LOCK").read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["pid_start"] == lock_module._process_start(os.getpid()) is not None
        assert len(record["token"]) == 32 and record["since"].endswith("Z") and record["stale_after"] == 600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK"]  # no temporary file, no guard
        with pytest.raises(LockBusy, match=r"is being refreshed by another run \(pid \d+ on .* since .*\); the "
                                           r"lock is taken over once that process has ended") as busy:
            with Publication(tmp_path).lock():
                pass
        assert busy.value.holder["token"] == record["token"] and isinstance(busy.value, PublishError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["dead pid", "reused pid", "empty", "garbage", "other host", "old format",
                                  "dead pid and guard"])
def test_a_stale_lock_does_not_block_the_next_run(tmp_path, kind, caplog):
    _stale_lock(tmp_path, kind)
    with Publication(tmp_path).lock():
        assert json.loads((tmp_path / "LOCK").read_text())["pid"] == os.getpid()
    assert "took over the lock from" in caplog.text
    assert not (tmp_path / "LOCK").exists()
    if kind == "dead pid and guard":  # the crashed breaker's guard: broken, then removed by the breaker
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind, message", [
    ("young empty", r"\(holder unknown: the lock file is unreadable or empty\); the lock is taken over when it is "
                    r"older than 30 s"),
    ("fresh other host", r"\(pid \d+ on elsewhere.example since .*\); the lock is taken over if it is not "
                         r"refreshed for 600 s"),
    ("live guard", r"another run is taking over a stale lock \(pid \d+ on "),
])
def test_a_live_or_young_lock_refuses(tmp_path, kind, message):
    lock = tmp_path / "LOCK"
    if kind == "young empty":
        lock.write_text("")
    elif kind == "fresh other host":
        lock.write_text(json.dumps(_record(host="elsewhere.example", boot_id="x", pid_ns="y")))
    else:  # a stale LOCK that a live process (this one) is busy removing
        lock.write_text(json.dumps(_record(pid=_dead_pid(), token="a" * 32)))
        (tmp_path / f"LOCK.break-{'a' * 32}").write_text(json.dumps(_record(token="b" * 32)))
    with pytest.raises(LockBusy, match=message):
        with Publication(tmp_path).lock():
            pass
    assert lock.exists()


def test_a_run_that_lost_its_lock_switches_nothing(tmp_path):
    pub = Publication(tmp_path, keep=2)
    with pub.lock():
        _publish(pub, 1)
        stage = pub.stage()
        (stage / "data.bin").write_bytes(b"x")
        # another run decided this one was stale and took over
        (tmp_path / "LOCK").unlink()
        (tmp_path / "LOCK").write_text(json.dumps(_record(token="c" * 32)))
        with pytest.raises(PublishError, match=r"this run lost the lock .*; nothing was switched"):
            pub.commit(stage, {})
        with pytest.raises(PublishError, match=r"lost the lock"):
            pub.prune()
    assert pub.history() == ["v000001"] and (tmp_path / "LOCK").exists()  # the other run's LOCK stays


def test_a_full_disk_while_taking_the_lock_leaves_no_lock(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lock_module, "_write_all", full)
    with pytest.raises(OSError, match="No space left"):
        with Publication(tmp_path).lock():
            pass
    assert list(tmp_path.iterdir()) == []  # no LOCK (empty or not), no temporary file
    monkeypatch.undo()
    with Publication(tmp_path).lock():
        pass


# ------------------------------------------------------------------------------------------ many runs at once
def _contend(root, log, go, seed, deadline, crash_rate):
    """A run: wait for ``go``, then try the lock until ``deadline``; hold it once (or crash holding it)."""
    try:
        rng = random.Random(seed)
        go.wait()
        pub = Publication(root)
        while time.time() < deadline:
            try:
                with pub.lock():
                    _log(log, f"enter {os.getpid()}")
                    time.sleep(rng.uniform(0.002, 0.02))
                    if rng.random() < crash_rate:
                        _log(log, f"crash {os.getpid()}")
                        os._exit(9)  # a hard crash: the LOCK stays
                    _log(log, f"exit {os.getpid()}")
                os._exit(0)
            except LockBusy:
                time.sleep(rng.uniform(0.001, 0.01))
        os._exit(4)
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def _race(root, log, seed, seconds, crash_rate):
    go = FORK.Event()
    deadline = time.time() + seconds + 2.0  # the forks take a moment on a busy machine
    runs = [FORK.Process(target=_contend, args=(root, log, go, seed * 100 + i, deadline, crash_rate))
            for i in range(CONTENDERS)]
    for run in runs:
        run.start()
    go.set()
    for run in runs:
        run.join(timeout=60)
    codes = sorted(run.exitcode for run in runs)
    assert 1 not in codes and None not in codes, codes
    return codes


STALE_KINDS = ["dead pid", "reused pid", "empty", "other host", "old format", "dead pid and guard"]


@pytest.mark.parametrize("kind", STALE_KINDS)
def test_many_runs_started_on_a_stale_lock_never_hold_it_together(tmp_path, kind):
    root, log = tmp_path / "pub", tmp_path / "holders.log"
    _stale_lock(root, kind)
    codes = _race(root, log, STALE_KINDS.index(kind), 0.3, 0.0)
    counts = _holders(log)
    assert counts["enter"] >= 1 and counts["enter"] == codes.count(0) == counts["exit"]
    assert not (root / "LOCK").exists()


def test_runs_crashing_while_holding_the_lock_are_taken_over_never_two_at_once(tmp_path):
    takeovers = 0
    for trial in range(3):
        root, log = tmp_path / f"pub{trial}", tmp_path / f"holders{trial}.log"
        _race(root, log, 10 + trial, 1.0, 0.4)
        counts = _holders(log)
        assert counts["crash"] >= 1 and counts["enter"] == counts["exit"] + counts["crash"]
        takeovers += counts["crash"] - (1 if log.read_text().split()[-2] == "crash" else 0)
    assert takeovers >= 3  # locks left by crashed holders that a later run took over


# ------------------------------------------------------------------------------------------ kill -9 while publishing
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _valid(folder: Path) -> None:
    """A complete version: every part listed in version.json, with its checksum."""
    meta = json.loads((folder / "version.json").read_text())
    for part, digest in meta["parts"].items():
        if _sha((folder / part).read_bytes()) != digest:
            raise PublishError(f"{folder / part} is damaged")


def _publish(pub, seed, size=150_000):
    rng = random.Random(seed)
    stage = pub.stage()
    parts = {}
    for i in range(3):
        data = rng.randbytes(rng.randint(1, size))
        (stage / f"part{i}.bin").write_bytes(data)
        parts[f"part{i}.bin"] = _sha(data)

    def validate(folder):
        for part, digest in parts.items():
            if _sha((folder / part).read_bytes()) != digest:
                raise PublishError(f"{part} differs")

    return pub.commit(stage, {"parts": parts}, validate=validate)


def _publisher(root, progress, seed):
    """Publish and sometimes roll back, in a loop, each under the lock, until killed."""
    try:
        pub = Publication(root, keep=3)
        for step in ("staged", "moved", "pointer_written", "switched"):
            pub.hooks[step] = lambda step=step: _log(progress, step)
        for n in range(10**6):
            with pub.lock():
                _log(progress, "locked")
                pub.clean_staging()
                if n % 4 == 3:
                    pub.rollback()
                    _log(progress, "rolled back")
                else:
                    _publish(pub, seed * 1000 + n)
                    _log(progress, "published")
            _log(progress, "released")
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def test_kill_9_at_random_points_leaves_a_complete_version_and_the_next_run_publishes(tmp_path):
    pub = Publication(tmp_path / "pub", keep=3)
    for seed in (1, 2):
        _publish(pub, seed)
    rng = random.Random(0)
    where = {}
    for trial in range(30):
        progress = tmp_path / f"progress{trial}"
        child = FORK.Process(target=_publisher, args=(pub.root, progress, trial))
        child.start()
        time.sleep(rng.uniform(0.01, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL, f"trial {trial}: the publisher failed ({child.exitcode})"
        last = progress.read_text().split()[-1] if progress.exists() else "starting"
        where[last] = where.get(last, 0) + 1
        current = pub.current()
        assert current is not None and current.name in pub.history()
        _valid(current.path)
        for name in pub.history():  # every kept version is complete: rollback targets too
            _valid(pub.versions_dir / name)
        # the next run: takes over the LOCK of the killed one, cleans up, publishes
        with pub.lock():
            pub.clean_staging()
            version = _publish(pub, 10_000 + trial)
        assert pub.current() == version and sorted(p.name for p in pub.versions_dir.iterdir()) == pub.history()
        _valid(version.path)
        assert sorted(p.name for p in pub.root.iterdir()) == ["CURRENT", "staging", "versions"]
        assert not list((pub.root / "staging").iterdir())
    print(f"kill -9 of a publisher, last step reached before the kill: {where}")
    assert len(where) >= 3  # the kills landed in several steps


# ------------------------------------------------------------------------------------------ the job's run records
def _job():
    return importlib.import_module("jobs.recommend")


def _conf(tmp_path, root) -> str:
    """A configuration of jobs/recommend.py (the input is never read: these runs stop before Spark)."""
    (tmp_path / "ratings.parquet").write_bytes(b"PAR1")
    path = tmp_path / "recommend.toml"
    path.write_text(f'[input]\npath = "{tmp_path / "ratings.parquet"}"\n[publish]\nroot = "{root}"\nkeep = 3\n')
    return str(path)


def _last_run(root) -> dict:
    return json.loads((root / "last_run.json").read_text())


def test_a_run_refused_by_the_lock_exits_4_names_the_holder_and_writes_its_record(tmp_path, capsys):
    root = tmp_path / "pub"
    pub = Publication(root)
    _publish(pub, 1, 100)
    (root / "last_run.json").write_text(json.dumps({"status": "published", "current": "v000001", "started": "s"}))
    with pub.lock():
        for flags, action in (([], "refresh"), (["--rollback"], "rollback")):
            assert _job().main([_conf(tmp_path, root), *flags]) == _job().EXIT_LOCKED == 4
            err = capsys.readouterr().err
            assert f"recommend: locked: {root} is being refreshed by another run (pid {os.getpid()} on " in err
            record = _last_run(root)
            assert record["status"] == "locked" and record["action"] == action
            assert record["holder"]["pid"] == os.getpid() and "being refreshed" in record["error"]
            assert record["previous"]["status"] == ("published" if action == "refresh" else "locked")
    assert pub.current().name == "v000001"


def test_rollbacks_and_a_failed_rollback_write_their_record(tmp_path, capsys):
    root = tmp_path / "pub"
    pub = Publication(root)
    for seed in (1, 2):
        _publish(pub, seed, 100)
    _stale_lock(root, "empty")  # an empty LOCK (a full disk under sparknmf 0.1) does not block a rollback
    assert _job().main([_conf(tmp_path, root), "--rollback"]) == 0
    record = _last_run(root)
    assert record["status"] == "rolled back" and record["current"] == "v000001" and record["action"] == "rollback"
    assert _job().main([_conf(tmp_path, root), "--rollback"]) == 1
    assert "recommend: failed: " in capsys.readouterr().err
    record = _last_run(root)
    assert record["status"] == "failed" and record["action"] == "rollback"
    assert record["error"].startswith("PublishError: ") and "no previous version to roll back to" in record["error"]
    assert sorted(p.name for p in root.iterdir()) == ["CURRENT", "last_run.json", "staging", "versions"]


def test_a_run_whose_record_cannot_be_written_exits_5(tmp_path, capsys, monkeypatch):
    root = tmp_path / "pub"
    pub = Publication(root)
    for seed in (1, 2):
        _publish(pub, seed, 100)

    def full(path, data, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_job(), "write_json", full)
    assert _job().main([_conf(tmp_path, root), "--rollback"]) == _job().EXIT_UNRECORDED == 5
    err = capsys.readouterr().err
    assert (f"recommend: rolled back; and the run record {root / 'last_run.json'} could not be written (OSError: "
            f"[Errno {errno.ENOSPC}] No space left on device): it still describes an earlier run") in err
    assert pub.current().name == "v000001"  # the rollback itself was done
    assert _job().main([_conf(tmp_path, root), "--rollback"]) == 5  # nothing to roll back to, and no record
    assert "recommend: failed: PublishError: " in capsys.readouterr().err
    with pub.lock():
        assert _job().main([_conf(tmp_path, root)]) == 5
        assert "recommend: locked; and the run record" in capsys.readouterr().err
    assert not (root / "last_run.json").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(disk, leave: int = 0) -> Path:
    """Fill ``disk`` up, then free ``leave`` bytes; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_a_full_disk_fails_the_run_with_what_can_be_written(small_disk, tmp_path, capsys, monkeypatch):
    root = small_disk / "pub"
    pub = Publication(root)
    for seed in (1, 2):
        _publish(pub, seed, 3000)
    conf = _conf(tmp_path, root)

    # completely full: not even the lock can be taken, nor a record written: exit 5, nothing changed
    filler = _fill(small_disk)
    with pytest.raises(OSError, match="No space left"):
        with pub.lock():
            pass
    assert _job().main([conf, "--rollback"]) == 5
    err = capsys.readouterr().err
    assert "recommend: failed: OSError: [Errno 28] No space left on device; and the run record" in err
    assert sorted(p.name for p in root.iterdir()) == ["CURRENT", "staging", "versions"]  # no LOCK, no temp file

    # 64 KiB free: the staged output fills the disk; it is removed, the record written, exit 1
    filler.unlink()
    _fill(small_disk, 64 * 1024)

    def refresh(job, pub, fingerprint, record):  # the job's publish step, with outputs larger than the disk
        pub.clean_staging()
        stage = pub.stage()
        try:
            (stage / "part0.bin").write_bytes(os.urandom(400_000))
            return pub.commit(stage, {})
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise

    monkeypatch.setattr(_job(), "_refresh", refresh)
    assert _job().main([conf]) == 1
    assert "recommend: failed: the disk is full: [Errno 28] No space left on device" in capsys.readouterr().err
    record = _last_run(root)
    assert record["status"] == "failed" and record["error"] == "OSError: [Errno 28] No space left on device"
    assert pub.current().name == "v000002"
    _valid(pub.current().path)
    assert not (root / "LOCK").exists() and not list((root / "staging").iterdir())


_TERMINATED = """
import sys, time
sys.path.insert(0, sys.argv[1])
import jobs.recommend as job

def refresh(job_, pub, fingerprint, record):  # a long fit
    (pub.stage() / "model").write_text("half")
    print("fitting", flush=True)
    time.sleep(120)

job._refresh = refresh
sys.exit(job.main([sys.argv[2]]))
"""


def test_a_run_terminated_by_sigterm_writes_its_record_and_releases_the_lock(tmp_path):
    root = tmp_path / "pub"
    pub = Publication(root)
    _publish(pub, 1, 100)
    run = subprocess.Popen([sys.executable, "-c", _TERMINATED, str(Path(__file__).resolve().parents[2]),
                            _conf(tmp_path, root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline() == "fitting\n", run.stderr.read()
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 143, run.stderr.read()
    record = _last_run(root)
    assert record["status"] == "failed" and record["error"] == "terminated by SIGTERM"
    assert sorted(p.name for p in root.iterdir()) == ["CURRENT", "last_run.json", "staging", "versions"]
    assert pub.current().name == "v000001"
