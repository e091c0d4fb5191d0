"""Resident block tasks: one Spark job keeps V's blocks in Python workers for a whole fit.

A Spark job per half-step pays, every time, for task launch and for copying
each block from the JVM's cache into a Python worker: about 0.3 s per job
on a laptop, more than the arithmetic of a 300K-non-zero half-step, and
seconds for a dense 320 MB V.  Instead, :class:`ResidentTasks` starts *one*
barrier job (``mapInArrow(..., barrier=True)``: all its tasks run at once,
and Spark restarts them together after any failure) whose tasks read their
blocks once, connect back to the driver and then serve half-step requests
until the fit ends.  This is the pattern of XGBoost's and LightGBM's Spark
integrations and of TorchDistributor: gang-scheduled tasks that talk over
their own sockets.

Protocol (TCP, length-prefixed frames):

* task → driver, on connecting: a *hello* (JSON, at most :data:`HELLO_LIMIT`
  bytes, within :data:`HELLO_TIMEOUT` seconds) naming the task (partition,
  task attempt id, stage, number of tasks) with an HMAC-SHA256 of
  those fields under a random per-fit key that only the task closure
  carries (the key itself never crosses the socket); then the list of the
  blocks the task holds;
* driver → task: a *welcome*, the HMAC of the task's proof under the same
  key, so the task knows it talks to its fit's driver;
* driver → task: a message of frames, the key column's name and then the
  mapInArrow body a per-half-step job would run, as a
  :class:`~sparknmf.engine.calls.Call` encoded by :func:`sparknmf.engine.calls.encode`
  (a JSON header naming a registered block function, and the raw buffers of
  its arguments: the factor blocks the task needs); a message of no frames
  means "stop";
* task → driver: the body's output as an Arrow IPC stream.

Nothing on this connection is pickled, either way: a task runs only
registered sparknmf functions on data (:mod:`sparknmf.engine.calls`), and the
driver only reads Arrow.  V's blocks stay in the tasks as raw array bytes
(:mod:`sparknmf.engine.codec`).

Side channel
------------
The socket listens where Spark's driver does (``spark.driver.bindAddress``,
else ``spark.driver.host``; loopback for a local master), and a thread of its
own (:class:`_Doorman`) admits connections, so a stranger never holds up a
fit: nothing beyond :data:`HELLO_LIMIT` bytes is allocated for a connection
until its hello proves the fit's key, a connection silent or slow for
:data:`HELLO_TIMEOUT` seconds is closed, at most :data:`MAX_PENDING` are
waiting at once (the oldest is dropped), and every refusal is logged at
WARNING (logger ``sparknmf``).  A hello names its task attempt, so a captured
hello replayed on another fit fails (another key) and on the same fit is
refused (that task attempt is registered already, or given up).  Every later
frame, either way, is bounded by the fit's :func:`frame_limit` (its blocks
and factor slices), checked before anything is allocated.

The channel is authenticated, not encrypted.  When the session turns on
Spark's own protection (:data:`SPARK_SECURITY`: ``spark.authenticate``,
``spark.network.crypto.enabled``, ``spark.ssl.enabled``,
``spark.ssl.rpc.enabled``, ``spark.io.encryption.enabled``) or sets
:data:`REQUIRE_ENCRYPTION`, ``auto`` runs a Spark job per half-step (on
Spark's protected channels) and logs why at INFO, and ``resident`` is refused
with a ``ValueError`` (:func:`channel_refusal`); :data:`ALLOW_PLAINTEXT`
accepts the clear-text channel under Spark's settings.

Requests carry all the state (factors, Grams), tasks keep only V, so a
restarted attempt answers the request that was in flight with the same
bytes: the driver waits for the new attempt's tasks to register and sends
it again.  Results are identical to the per-half-step jobs, which remain the
mode for Spark Connect sessions (whose client executors cannot be assumed to
reach) and for V too large to sit in the Python workers at once.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import selectors
import socket
import struct
import sys
import threading
import time
import warnings
import weakref

import pyarrow as pa

from sparknmf.engine import calls
from sparknmf.engine.session import describe_jobs, is_connect, is_local_master, parallelism

__all__ = [
    "ALLOW_PLAINTEXT", "EXECUTION_MODES", "REQUIRE_ENCRYPTION", "SPARK_SECURITY", "ResidentTasks",
    "ResidentUnavailable", "channel_refusal", "frame_limit", "resident_fit", "task_state", "use_resident",
]

logger = logging.getLogger("sparknmf")

EXECUTION_MODES = ("auto", "resident", "jobs")
_RESIDENT_BYTES_PER_TASK = 2 << 30  # auto mode: at most ~2 GiB of blocks per Python worker
_HEADER = struct.Struct(">Q")
CONNECT_TIMEOUT = 30.0  # seconds a task tries to reach the driver
START_TIMEOUT = 120.0  # seconds for every task to register before the fit falls back to jobs
_POLL = 0.2  # seconds between checks of the job while the driver waits
HELLO_LIMIT = 4096  # bytes: the largest hello read from a connection not yet authenticated
HELLO_TIMEOUT = 5.0  # seconds a new connection has to authenticate (its hello and block list)
MAX_PENDING = 64  # connections waiting to authenticate at once; the oldest is dropped for a new one
_LOGGED_REFUSALS = 20  # refusals logged one by one per fit; later ones are counted, and the count logged at the end
_FRAME_SLACK = 1 << 20  # bytes: Call headers, Arrow schemas, scalars, the key column's name
_BLOCK_SLACK = 64 << 10  # bytes per block: its Arrow batch's metadata and padding
_WELCOME = 32  # bytes of the driver's welcome (an HMAC-SHA256)

SPARK_SECURITY = ("spark.authenticate", "spark.network.crypto.enabled", "spark.ssl.enabled", "spark.ssl.rpc.enabled",
                  "spark.io.encryption.enabled")
ALLOW_PLAINTEXT = "spark.sparknmf.resident.allowPlaintext"
REQUIRE_ENCRYPTION = "spark.sparknmf.resident.requireEncryption"


def _on(conf, key) -> bool:
    return str(conf.get(key) or "false").strip().lower() == "true"


def channel_refusal(conf) -> str | None:
    """Why resident tasks may not run under the Spark settings ``conf`` (a mapping), with the remedy; None if they may.

    The resident socket is authenticated but not encrypted: V's blocks and the
    factors cross it in clear text.  :data:`REQUIRE_ENCRYPTION` set to true
    always rules it out; any of :data:`SPARK_SECURITY` set to true rules it out
    unless :data:`ALLOW_PLAINTEXT` is true.
    """
    if _on(conf, REQUIRE_ENCRYPTION):
        return (f"{REQUIRE_ENCRYPTION}=true and the resident tasks' socket is not encrypted; "
                f"executionMode='jobs' runs on Spark's own channels")
    settings = [f"{key}=true" for key in SPARK_SECURITY if _on(conf, key)]
    if settings and not _on(conf, ALLOW_PLAINTEXT):
        return (f"{', '.join(settings)} protects Spark's channels, and the resident tasks' socket would carry V's "
                f"blocks and the factors in clear text; executionMode='jobs' runs on Spark's own channels "
                f"({ALLOW_PLAINTEXT}=true accepts clear text)")
    return None


def _security_conf(spark) -> dict:
    return {key: spark.conf.get(key, None) for key in (*SPARK_SECURITY, ALLOW_PLAINTEXT, REQUIRE_ENCRYPTION)}


def use_resident(mode: str, spark, stored_bytes: int, partitions: int) -> bool:
    """Whether a fit runs on resident tasks: ``mode`` is one of :data:`EXECUTION_MODES`.

    ``auto`` picks resident tasks in classic sessions without dynamic
    allocation (which barrier jobs do not support) and without Spark's
    security settings (:func:`channel_refusal`; the reason is logged at INFO)
    when the ``partitions`` fit in the task slots at once and V's blocks come
    to at most ~2 GiB per slot, per-half-step jobs otherwise.  ``resident``
    under those security settings raises ``ValueError``.
    """
    if mode not in EXECUTION_MODES:
        raise ValueError(f"execution mode must be one of {EXECUTION_MODES}, got {mode!r}")
    if mode == "jobs":
        return False
    refusal = channel_refusal(_security_conf(spark))
    if mode == "resident":
        if refusal is not None:
            raise ValueError(f"executionMode='resident' is refused: {refusal}")
        return True
    if refusal is not None:
        logger.info("executionMode='auto' runs one Spark job per half-step: %s", refusal)
        return False
    if is_connect(spark) or spark.conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        return False
    slots = parallelism(spark)
    return partitions <= slots and stored_bytes <= _RESIDENT_BYTES_PER_TASK * slots


def frame_limit(stored_bytes: int, rows: int, width: int, blocks: int) -> int:
    """The largest frame, in bytes, that the driver and the tasks of a fit may send each other.

    A fit whose V takes ``stored_bytes`` in the tasks, cut in ``blocks``
    blocks, with factors of ``rows`` rows in all (n + m) and at most ``width``
    float64 columns (the rank, or any wider array a request carries).  A
    request carries at most the factors twice over (the arrays and what goes
    with them: Grams, warm starts, vectors); an answer at most, for each block
    its task holds, two slices of ``rows`` rows at that width (cross products,
    carried products, new rows, Grams) and its Arrow metadata.  Frames above
    the limit are refused before anything is allocated, on both ends.
    """
    blocks = int(blocks)
    return _FRAME_SLACK + 2 * int(stored_bytes) + 16 * int(rows) * int(width) * (blocks + 2) + _BLOCK_SLACK * blocks


class ResidentUnavailable(RuntimeError):
    """The resident tasks did not all start (too few free task slots, or they cannot reach the driver);
    the caller runs jobs instead."""


class FrameTooLarge(ValueError):
    """A peer announced a frame above the limit; nothing was allocated for it."""


# ---------------------------------------------------------------------- framing
def _send(sock, payload) -> None:
    """A frame: its length, then ``payload`` (bytes or any buffer)."""
    size = memoryview(payload).nbytes
    sock.sendall(_HEADER.pack(size))
    if size:
        sock.sendall(payload)


def _recv_exact(sock, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = sock.recv_into(view[got:], size - got)
        if count == 0:
            raise ConnectionError("connection closed")
        got += count
    return buffer


def _recv(sock, limit: int) -> bytearray:
    """A frame of at most ``limit`` bytes (:class:`FrameTooLarge` before allocating a larger one)."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > limit:
        raise FrameTooLarge(f"a frame of {size} bytes announced, above the limit of {limit}")
    return _recv_exact(sock, size)


def _send_message(sock, frames) -> None:
    """A message: its number of frames, then each frame (bytes or any buffer)."""
    sock.sendall(_HEADER.pack(len(frames)))
    for frame in frames:
        _send(sock, frame)


def _message_bytes(frames) -> int:
    """Bytes of a message on the wire, headers included."""
    return _HEADER.size * (1 + len(frames)) + sum(memoryview(frame).nbytes for frame in frames)


def _recv_message(sock, limit: int) -> list:
    """A message of at most ``limit`` bytes in all, headers included (:class:`FrameTooLarge` otherwise)."""
    (count,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    left = limit - _HEADER.size
    if count > left // _HEADER.size:
        raise FrameTooLarge(f"a message of {count} frames announced, above the limit of {limit} bytes")
    frames = []
    for _ in range(count):
        frame = _recv(sock, left - _HEADER.size)
        left -= _HEADER.size + len(frame)
        frames.append(frame)
    return frames


_HELLO_FIELDS = ("partition", "task", "stage", "tasks")


def _proof(key: bytes, fields: dict) -> str:
    """The hello's HMAC-SHA256 of its task's ``fields`` under the fit's ``key``: binds it to that task attempt."""
    text = "|".join(["sparknmf-resident-hello", *(str(fields[name]) for name in _HELLO_FIELDS)])
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _welcome(key: bytes, proof: str) -> bytes:
    """The driver's answer to a hello: proves it holds the fit's key too."""
    return hmac.new(key, b"sparknmf-resident-welcome|" + proof.encode(), hashlib.sha256).digest()


# ---------------------------------------------------------------------- task side
_STATE = None  # the running resident task's scratch space (a dict), None outside one


def task_state() -> dict:
    """Scratch space that lasts as long as the resident task running the caller.

    A body may keep what it derives from its blocks alone (decoded entries,
    index plans) here between requests.  Outside a resident task (a job per
    half-step, the driver) it is a new empty dict on every call, so nothing
    outlives the task: Python workers are reused by later, unrelated tasks.
    """
    return _STATE if _STATE is not None else {}


def _serve(address, key: bytes, limit: int):
    """The barrier job's mapInArrow body: register, then answer requests until told to stop.

    ``key`` is the fit's secret (it reaches the task in this closure only);
    ``limit`` is the fit's :func:`frame_limit`, for requests and answers alike.
    """

    def run(batches):
        global _STATE
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        table = pa.Table.from_batches(list(batches)) if batches is not None else None
        blocks = table.combine_chunks().to_batches()[0] if table is not None and table.num_rows else None
        held = [] if blocks is None else list(zip(blocks.column("bi").to_pylist(), blocks.column("bj").to_pylist()))
        fields = {"partition": context.partitionId(), "task": context.taskAttemptId(), "stage": context.stageId(),
                  "tasks": len(context.getTaskInfos())}
        proof = _proof(key, fields)
        hello = [json.dumps({**fields, "proof": proof}).encode(), json.dumps(held).encode()]  # ready before connecting
        sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
        try:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on the small frame header
            for frame in hello:
                _send(sock, frame)
            if not hmac.compare_digest(bytes(_recv(sock, _WELCOME)), _welcome(key, proof)):
                raise ConnectionError(f"the peer at {address[0]}:{address[1]} does not hold the fit's key")
            _STATE = {}
            while True:
                request = _recv_message(sock, limit)
                if not request:
                    break
                key_column, body = request[0].decode(), calls.decode(request[1:])
                sink = pa.BufferOutputStream()
                if blocks is not None:
                    names = ["key" if name == key_column else name for name in blocks.schema.names]
                    writer = None
                    for out in body([blocks.rename_columns(names)]):
                        writer = writer or pa.ipc.new_stream(sink, out.schema)
                        writer.write_batch(out)
                    if writer is not None:
                        writer.close()
                answer = sink.getvalue()
                if answer.size > limit:
                    raise RuntimeError(f"sparknmf: a resident task's answer of {answer.size} bytes exceeds the fit's "
                                       f"frame limit of {limit} bytes")
                _send(sock, answer)
        finally:
            _STATE = None
            sock.close()
        yield pa.RecordBatch.from_pydict({"part": [context.partitionId()]}, schema=pa.schema([("part", pa.int32())]))

    return run


# ---------------------------------------------------------------------- the door
class _Inbox:
    """One frame read from a non-blocking socket as it arrives: its length first, refused above ``limit``
    before anything is allocated, then its bytes."""

    def __init__(self, limit: int):
        self.limit, self.header, self.body, self.got = limit, b"", None, 0

    def read(self, conn):
        """The whole frame once it has arrived, else None (nothing more to read now); raises on a closed
        connection or a length above the limit."""
        try:
            while self.body is None:
                chunk = conn.recv(_HEADER.size - len(self.header))
                if not chunk:
                    raise ConnectionError("closed before sending a whole frame")
                self.header += chunk
                if len(self.header) == _HEADER.size:
                    (size,) = _HEADER.unpack(self.header)
                    if size > self.limit:
                        raise FrameTooLarge(f"a frame of {size} bytes announced, above the limit of {self.limit}")
                    self.body = bytearray(size)
            view = memoryview(self.body)
            while self.got < len(self.body):
                count = conn.recv_into(view[self.got:])
                if count == 0:
                    raise ConnectionError("closed before sending a whole frame")
                self.got += count
        except BlockingIOError:
            return None
        return self.body


class _Door:
    """A connection waiting to authenticate."""

    __slots__ = ("conn", "peer", "deadline", "inbox", "hello")

    def __init__(self, conn, peer):
        self.conn, self.peer, self.hello = conn, peer, None
        self.deadline = time.monotonic() + HELLO_TIMEOUT
        self.inbox = _Inbox(HELLO_LIMIT)


class _Doorman:
    """The accept loop of one fit, in a thread of its own: lets in only the fit's tasks.

    A connection must send, within :data:`HELLO_TIMEOUT` seconds, a hello of
    at most :data:`HELLO_LIMIT` bytes whose proof is right for the fit's
    ``key``, then its block list (at most the fit's ``limit``).  Reads never
    block, at most :data:`MAX_PENDING` connections wait at once (the oldest
    is dropped for a new one), and anything else is refused: closed, and
    logged at WARNING (the first :data:`_LOGGED_REFUSALS`, then counted).
    Admitted connections are queued on :attr:`arrivals` as
    ``(conn, hello, held)`` for the driver's thread, which :attr:`bell` wakes.
    """

    def __init__(self, server, key: bytes, limit: int, name: str):
        self.server, self.key, self.limit, self.name = server, key, limit, name
        self.arrivals = collections.deque()
        self.bell, self._ring = socket.socketpair()
        self._stop, self._stopping = socket.socketpair()
        for sock in (server, self.bell, self._ring, self._stop, self._stopping):
            sock.setblocking(False)
        self._pending = {}  # conn -> _Door, oldest first
        self._lock = threading.Lock()
        self.refused = 0
        self.failure = None
        self._thread = threading.Thread(target=self._run, name="sparknmf-resident-doorman", daemon=True)

    def start(self):
        self._thread.start()

    def close(self):
        """Stop admitting; close the listening socket, the waiting connections and those never taken."""
        with contextlib.suppress(OSError):
            self._stopping.send(b"x")
        self._thread.join(timeout=10)
        for door in list(self._pending.values()):
            door.conn.close()
        self._pending.clear()
        while self.arrivals:
            self.arrivals.popleft()[0].close()
        for sock in (self.server, self.bell, self._ring, self._stop, self._stopping):
            sock.close()
        if self.refused > _LOGGED_REFUSALS:
            logger.warning("resident tasks of %s: refused %d connections in all", self.name, self.refused)

    def take(self) -> list:
        """The connections admitted since the last call (silences the bell)."""
        with contextlib.suppress(OSError):
            while self.bell.recv(4096):
                pass
        taken = []
        while self.arrivals:
            taken.append(self.arrivals.popleft())
        return taken

    def note_refusal(self, peer, reason: str):
        """Count (and log, up to :data:`_LOGGED_REFUSALS`) a refused connection; any thread may call it."""
        with self._lock:
            self.refused += 1
            count = self.refused
        if count <= _LOGGED_REFUSALS:
            logger.warning("resident tasks of %s: refused a connection from %s (%s)%s", self.name, _peer(peer), reason,
                           "; further refusals are counted, not logged" if count == _LOGGED_REFUSALS else "")

    # ------------------------------------------------------------------ the thread
    def _run(self):
        selector = selectors.DefaultSelector()
        try:
            selector.register(self.server, selectors.EVENT_READ)
            selector.register(self._stop, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                for door in [door for door in self._pending.values() if door.deadline <= now]:
                    self._refuse(selector, door, f"not authenticated within {HELLO_TIMEOUT:g} s")
                deadline = min((door.deadline for door in self._pending.values()), default=None)
                for event, _ in selector.select(None if deadline is None else max(0.0, deadline - now)):
                    if event.fileobj is self._stop:
                        return
                    if event.fileobj is self.server:
                        self._accept(selector)
                    elif self._pending.get(event.fileobj) is event.data:  # not refused earlier in this round
                        self._read(selector, event.data)
        except Exception as error:  # the driver's thread sees it (ResidentTasks._check_job)
            self.failure = error
            with contextlib.suppress(OSError):
                self._ring.send(b"!")
        finally:
            selector.close()

    def _accept(self, selector):
        for _ in range(MAX_PENDING):
            try:
                conn, peer = self.server.accept()
            except BlockingIOError:
                return
            except OSError as error:  # e.g. out of file descriptors: make room, try again on the next round
                logger.warning("resident tasks of %s: cannot accept a connection (%s)", self.name, error)
                if self._pending:
                    self._refuse(selector, next(iter(self._pending.values())), "no room for a new connection")
                time.sleep(_POLL / 4)
                return
            conn.setblocking(False)
            if len(self._pending) >= MAX_PENDING:
                self._refuse(selector, next(iter(self._pending.values())),
                             f"more than {MAX_PENDING} connections waiting to authenticate: the oldest is dropped")
            door = _Door(conn, peer)
            self._pending[conn] = door
            selector.register(conn, selectors.EVENT_READ, door)
            self._read(selector, door)  # a task sends its hello at once

    def _read(self, selector, door):
        try:
            frame = door.inbox.read(door.conn)
            while frame is not None:
                if door.hello is None:
                    door.hello = self._check_hello(frame)
                    door.inbox = _Inbox(self.limit)
                    frame = door.inbox.read(door.conn)
                else:
                    self._admit(selector, door, _check_held(frame))
                    return
        except Exception as error:  # a stranger's garbage, a wrong proof, a closed connection, a length too large
            self._refuse(selector, door, f"{type(error).__name__}: {_first_line(error)}")

    def _check_hello(self, frame) -> dict:
        hello = json.loads(bytes(frame))
        if not isinstance(hello, dict) or not isinstance(hello.get("proof"), str):
            raise ValueError("not a hello")
        fields = {name: hello.get(name) for name in _HELLO_FIELDS}
        if any(type(value) is not int or value < 0 for value in fields.values()):
            raise ValueError("not a hello")
        if not hmac.compare_digest(hello["proof"].encode(), _proof(self.key, fields).encode()):
            raise ValueError("wrong proof: not a task of this fit")
        return hello

    def _admit(self, selector, door, held):
        selector.unregister(door.conn)
        del self._pending[door.conn]
        self.arrivals.append((door.conn, door.hello, held, door.peer))
        with contextlib.suppress(OSError):
            self._ring.send(b".")

    def _refuse(self, selector, door, reason):
        selector.unregister(door.conn)
        del self._pending[door.conn]
        door.conn.close()
        self.note_refusal(door.peer, reason)


def _check_held(frame) -> list:
    """A task's block list: ``[[bi, bj], ...]``."""
    held = json.loads(bytes(frame))
    if not isinstance(held, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(type(i) is int for i in pair) for pair in held):
        raise ValueError("not a block list")
    return [(bi, bj) for bi, bj in held]


def _peer(peer) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)


# ---------------------------------------------------------------------- driver side
@contextlib.contextmanager
def resident_fit(spark, mode: str, blocks, partitions: int, stored_bytes: int, description: str, *,
                 frame_limit: int):
    """Context of one fit: yields started :class:`ResidentTasks` holding ``blocks``, or None.

    None means a Spark job per half-step: ``mode`` (see :func:`use_resident`)
    rules resident tasks out, or they could not start (then with a
    :class:`RuntimeWarning` saying why).  ``frame_limit`` bounds every frame
    (see :func:`frame_limit`).  The tasks are stopped on exit.
    """
    if not use_resident(mode, spark, stored_bytes, partitions):
        yield None
        return
    tasks = ResidentTasks(spark, blocks, partitions, description, frame_limit)
    try:
        tasks.start()
    except ResidentUnavailable as reason:
        warnings.warn(f"sparknmf: {reason}; running one Spark job per half-step instead", RuntimeWarning,
                      stacklevel=4)
        yield None
        return
    try:
        yield tasks
    finally:
        tasks.close(failed=sys.exc_info()[0] is not None)


_JOBS = weakref.WeakSet()  # resident jobs that may still be finishing


@atexit.register
def _finish_jobs():
    """At exit, give resident jobs still counting their tasks a moment, so Spark does not stop under them."""
    for job in list(_JOBS):
        job.join(timeout=10)


class ResidentTasks:
    """One barrier job holding ``blocks`` (a DataFrame of ``bi, bj, block`` rows) in Python workers.

    :meth:`start` raises :class:`ResidentUnavailable` when the driver cannot
    listen, or the job fails before its tasks have all registered (e.g. they
    cannot reach the driver), or they do not all register within
    :data:`START_TIMEOUT` seconds (the job is then interrupted).

    Use as a context manager; :meth:`run` then replaces
    ``frame.mapInArrow(body, schema).toArrow()`` for a frame that is
    ``blocks`` with one of ``bi``/``bj`` renamed to ``key``.  Each task
    tells the driver which blocks it holds, and receives only what they need.

    Parameters
    ----------
    spark : SparkSession
    blocks : DataFrame
    partitions : int
        Partitions of ``blocks``: the job has one task per partition.
    description : str
        Spark job description of the resident job.
    frame_limit : int
        The largest frame either way, in bytes (:func:`frame_limit`).

    Attributes
    ----------
    address : (str, int)
        Where the tasks connect, once started (the listening socket's port).
    """

    def __init__(self, spark, blocks, partitions: int, description: str, frame_limit: int):
        self.spark = spark
        self.blocks = blocks
        self.tasks = partitions
        self.description = description
        self.frame_limit = int(frame_limit)
        self._key = secrets.token_bytes(32)  # the fit's secret: in the task closure only
        self.name = f"sparknmf-resident-{secrets.token_hex(6)}"  # the fit's job tag, and its name in the log
        self.address = None
        self._doorman = None
        self._job = None
        self._failure = None
        self._conns = {}  # partition -> socket, all of one stage attempt
        self._ids = {}  # partition -> task attempt id
        self._held = {}  # partition -> the (bi, bj) blocks its task holds
        self._expected = None  # tasks in the current attempt (from the hellos)
        self._floor = -1  # task attempt ids up to this belong to broken attempts
        self._tag = self.name
        self.last_request_bytes = 0  # size of the requests of the last run, all tasks together

    # -------------------------------------------------------------- lifecycle
    def __enter__(self):
        return self.start()

    def __exit__(self, kind, error, trace):
        self.close(failed=kind is not None)
        return False

    def start(self):
        """Launch the job and wait until its tasks have registered; returns self."""
        bind, advertised = _listen_hosts(self.spark)
        try:
            family = socket.getaddrinfo(bind, 0, type=socket.SOCK_STREAM)[0][0]
            server = socket.create_server((bind, 0), family=family, backlog=max(128, 2 * self.tasks))
        except OSError as error:
            raise ResidentUnavailable(f"the driver cannot listen on {bind} ({error})") from error
        self.address = (advertised, server.getsockname()[1])
        self._doorman = _Doorman(server, self._key, self.frame_limit, self.name)
        self._doorman.start()
        frame, body = self.blocks, _serve(self.address, self._key, self.frame_limit)

        def job():
            self.spark.addTag(self._tag)  # this thread's jobs, so that they can be interrupted
            try:
                # the count's shuffle makes the barrier stage a map stage, which Spark retries as a whole
                # after a failed task (a failed barrier result stage aborts the job)
                frame.mapInArrow(body, "part int", barrier=True).groupBy().count().collect()
            except BaseException as error:  # reported to the waiting driver
                self._failure = error
            finally:
                self.spark.removeTag(self._tag)

        from pyspark import InheritableThread  # the job inherits the caller's job group and properties

        self._job = InheritableThread(target=job, name="sparknmf-resident", daemon=True, session=self.spark)
        _JOBS.add(self._job)
        try:
            with describe_jobs(self.spark, self.description):  # the job is submitted before the tasks register
                self._job.start()
                self._await_attempt(timeout=START_TIMEOUT)
        except BaseException as error:
            self.spark.interruptTag(self._tag)
            self._shutdown(wait=30)
            if self._failure is not None and error is self._failure:
                raise ResidentUnavailable(f"the resident tasks could not start ({_first_line(error)})") from error
            raise
        logger.info("resident tasks: %d tasks registered at %s:%d (listening on %s; frames up to %d bytes)",
                    len(self._conns), *self.address, bind, self.frame_limit)
        return self

    def close(self, failed: bool = False):
        """Tell the tasks to stop.

        After a successful fit every request has been answered, so the job
        is left to finish on its own (its last stage only counts the tasks);
        after a failure it gets 30 s to end, so that its tasks free their slots.
        """
        self._shutdown(wait=30 if failed else 0)

    def _shutdown(self, wait):
        """Stop the tasks; ``wait`` seconds (None: no limit, 0: not at all) for the job to end."""
        for conn in self._conns.values():
            try:
                _send_message(conn, [])  # stop
            except OSError:
                pass
        self._drop()
        self._doorman.close()
        if wait != 0 and self._job is not None:
            self._job.join(timeout=wait)

    def _drop(self):
        """Close the current attempt's connections; their tasks' ids can no longer register."""
        for conn in self._conns.values():
            conn.close()
        self._floor = max([self._floor, *self._ids.values()]) if self._conns else self._floor
        self._conns, self._ids, self._held, self._expected = {}, {}, {}, None

    # -------------------------------------------------------------- registration
    def _check_job(self):
        if self._failure is not None:
            raise self._failure
        if self._doorman.failure is not None:
            raise RuntimeError(f"sparknmf: the resident tasks' accept loop failed ({self._doorman.failure!r})")
        if not self._job.is_alive():
            raise RuntimeError("sparknmf: the resident Spark job ended while the fit still needed it")

    def _admit(self) -> bool:
        """Register the tasks the doorman let in; True when one starts a new stage attempt (the old one is dropped)."""
        restarted = False
        for conn, hello, held, peer in self._doorman.take():
            restarted |= self._register(conn, hello, held, peer)
        return restarted

    def _register(self, conn, hello, held, peer) -> bool:
        task, part, tasks = hello["task"], hello["partition"], hello["tasks"]
        if task <= self._floor or task in self._ids.values():
            conn.close()  # a replayed hello, or a late task of an attempt already given up
            self._doorman.note_refusal(peer, f"task attempt {task} is registered already or was given up")
            return False
        try:
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _send(conn, _welcome(self._key, hello["proof"]))
        except OSError as error:
            conn.close()
            logger.warning("resident tasks: task %d of partition %d went away while registering (%s)", task, part,
                           error)
            return False
        restarted = part in self._conns or (self._expected is not None and len(self._conns) == self._expected)
        if restarted:
            logger.warning("resident tasks: a new stage attempt replaces the registered tasks")
            self._drop()
        self._conns[part], self._ids[part], self._expected = conn, task, tasks
        self._held[part] = held
        return restarted

    def _await_attempt(self, timeout=None):
        """Block until every task of the current stage attempt has registered.

        Raises :class:`ResidentUnavailable` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._expected is None or len(self._conns) < self._expected:
            self._check_job()
            if deadline is not None and time.monotonic() > deadline:
                raise ResidentUnavailable(f"{len(self._conns)} of {self.tasks} resident tasks started within "
                                          f"{timeout:.0f} s: too few free task slots?")
            if _select([self._doorman.bell], _POLL):
                self._admit()

    # -------------------------------------------------------------- requests
    def run(self, key_column: str, body_for) -> pa.Table:
        """Run a mapInArrow body on every block, with ``key_column`` named ``key``.

        ``body_for(blocks)`` gives the body, a :class:`~sparknmf.engine.calls.Call`,
        for a task holding ``blocks``, a list of ``(bi, bj)``, so that each
        task receives only the factor blocks it needs.  Returns the concatenated output, as ``toArrow()``
        on a job would.  A request interrupted by failed tasks is sent again
        to their restarted attempt.
        """
        while True:
            self._await_attempt()
            requests = {part: [key_column.encode(), *calls.encode(body_for(held))] for part, held in self._held.items()}
            sizes = [_message_bytes(frames) for frames in requests.values()]
            if max(sizes) > self.frame_limit:
                raise RuntimeError(f"sparknmf: a resident request of {max(sizes)} bytes exceeds the fit's frame limit "
                                   f"of {self.frame_limit} bytes; run the fit with executionMode='jobs'")
            self.last_request_bytes = sum(memoryview(frame).nbytes for frames in requests.values() for frame in frames)
            try:
                return self._exchange(requests)
            except ConnectionError as error:
                logger.warning("resident tasks: request interrupted (%s); waiting for restarted tasks", error)

    def _exchange(self, requests) -> pa.Table:
        for part, conn in self._conns.items():
            try:
                _send_message(conn, requests[part])
            except OSError as error:
                self._drop()
                raise ConnectionError(f"task {part}: {error}") from error
        answers = {}
        while len(answers) < len(self._conns):
            self._check_job()
            waiting = {conn: part for part, conn in self._conns.items() if part not in answers}
            for sock in _select([*waiting, self._doorman.bell], _POLL):
                if sock is self._doorman.bell:
                    if self._admit():
                        raise ConnectionError("a new stage attempt started")
                    continue
                try:
                    answers[waiting[sock]] = bytes(_recv(sock, self.frame_limit))
                except FrameTooLarge as error:
                    self._drop()
                    raise RuntimeError(f"sparknmf: resident task {waiting[sock]} refused: {error}") from error
                except OSError as error:
                    self._drop()
                    raise ConnectionError(f"task {waiting[sock]}: {error}") from error
        tables = [pa.ipc.open_stream(answers[part]).read_all() for part in sorted(answers) if answers[part]]
        return pa.concat_tables(tables)


def _first_line(error) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _select(socks, timeout):
    """The sockets among ``socks`` that are readable within ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(timeout)]


def _listen_hosts(spark) -> tuple:
    """``(bind, advertised)``: where the driver listens for its tasks, and the address they connect to.

    Where Spark's driver listens (``spark.driver.bindAddress``, else
    ``spark.driver.host``), and on loopback for a local master, whose tasks
    all run on this machine; never on every interface unless Spark's own
    bind address says so.
    """
    if is_local_master(spark):
        return "127.0.0.1", "127.0.0.1"
    advertised = _advertised_host(spark)
    if is_connect(spark):
        return advertised, advertised
    bind = spark.conf.get("spark.driver.bindAddress", None) or spark.conf.get("spark.driver.host", None)
    return bind or advertised, advertised


def _advertised_host(spark) -> str:
    """The address executors reach this driver at (``spark.driver.host`` in classic sessions)."""
    host = None if is_connect(spark) else spark.conf.get("spark.driver.host", None)
    return host or socket.gethostbyname(socket.gethostname())
