"""The resident tasks' socket: bounded frames, authentication, the door for strangers, and when it may open.

Every connection starts with a hello of at most :data:`HELLO_LIMIT` bytes,
read within :data:`HELLO_TIMEOUT` seconds: the task's partition, attempt,
stage and task count and an HMAC-SHA256 of them under a random per-fit key
(:func:`hello_proof`) that reaches the tasks only inside their function.  The
driver answers with its own HMAC (:func:`welcome`), so both ends know the
other.  Connections are accepted and authenticated by :class:`Doorman` on its
own thread with non-blocking reads; at most :data:`MAX_PENDING` strangers wait
at once, and each refusal is logged.  Every later frame is an 8-byte length
and its bytes; a length above the fit's :func:`frame_limit` raises
:class:`FrameTooLarge` before anything is allocated, on both ends.

The channel is authenticated, not encrypted: :func:`channel_refusal` rules it
out under Spark's own security settings (:data:`SPARK_SECURITY`) unless
:data:`ALLOW_PLAINTEXT` accepts clear text, and always under
:data:`REQUIRE_ENCRYPTION`.  The driver listens where Spark's driver does
(:func:`listen_hosts`).  The protocol on top is :mod:`sparknmf.engine.resident`.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import json
import logging
import selectors
import socket
import struct
import threading
import time

from sparknmf.engine.session import is_connect, is_local_master

__all__ = [
    "ALLOW_PLAINTEXT", "HELLO_LIMIT", "HELLO_TIMEOUT", "MAX_PENDING", "REQUIRE_ENCRYPTION", "SPARK_SECURITY",
    "WELCOME_BYTES", "Doorman", "FrameTooLarge", "advertised_host", "channel_refusal", "first_line", "frame_limit",
    "hello_proof", "listen_hosts", "message_bytes", "recv_frame", "recv_message", "security_conf", "send_frame",
    "send_message", "welcome",
]

logger = logging.getLogger("sparknmf")

HEADER = struct.Struct(">Q")
HELLO_LIMIT = 4096  # bytes: the largest hello read from a connection not yet authenticated
HELLO_TIMEOUT = 5.0  # seconds a new connection has to authenticate (its hello and block list)
MAX_PENDING = 64  # connections waiting to authenticate at once; the oldest is dropped for a new one
LOGGED_REFUSALS = 20  # refusals logged one by one per fit; later ones are counted, and the count logged at the end
_FRAME_SLACK = 1 << 20  # bytes: Call headers, Arrow schemas, scalars, the key column's name
_BLOCK_SLACK = 64 << 10  # bytes per block: its Arrow batch's metadata and padding
_ACCEPT_RETRY = 0.05  # seconds before accepting again after the system refused a connection
WELCOME_BYTES = 32  # bytes of the driver's welcome (an HMAC-SHA256)


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


def security_conf(spark) -> dict:
    return {key: spark.conf.get(key, None) for key in (*SPARK_SECURITY, ALLOW_PLAINTEXT, REQUIRE_ENCRYPTION)}


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


class FrameTooLarge(ValueError):
    """A peer announced a frame above the limit; nothing was allocated for it."""


# ---------------------------------------------------------------------- framing
def send_frame(sock, payload) -> None:
    """A frame: its length, then ``payload`` (bytes or any buffer)."""
    size = memoryview(payload).nbytes
    sock.sendall(HEADER.pack(size))
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


def recv_frame(sock, limit: int) -> bytearray:
    """A frame of at most ``limit`` bytes (:class:`FrameTooLarge` before allocating a larger one)."""
    (size,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if size > limit:
        raise FrameTooLarge(f"a frame of {size} bytes announced, above the limit of {limit}")
    return _recv_exact(sock, size)


def send_message(sock, frames) -> None:
    """A message: its number of frames, then each frame (bytes or any buffer)."""
    sock.sendall(HEADER.pack(len(frames)))
    for frame in frames:
        send_frame(sock, frame)


def message_bytes(frames) -> int:
    """Bytes of a message on the wire, headers included."""
    return HEADER.size * (1 + len(frames)) + sum(memoryview(frame).nbytes for frame in frames)


def recv_message(sock, limit: int) -> list:
    """A message of at most ``limit`` bytes in all, headers included (:class:`FrameTooLarge` otherwise)."""
    (count,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
    left = limit - HEADER.size
    if count > left // HEADER.size:
        raise FrameTooLarge(f"a message of {count} frames announced, above the limit of {limit} bytes")
    frames = []
    for _ in range(count):
        frame = recv_frame(sock, left - HEADER.size)
        left -= HEADER.size + len(frame)
        frames.append(frame)
    return frames


HELLO_FIELDS = ("partition", "task", "stage", "tasks")


def hello_proof(key: bytes, fields: dict) -> str:
    """The hello's HMAC-SHA256 of its task's ``fields`` under the fit's ``key``: binds it to that task attempt."""
    text = "|".join(["sparknmf-resident-hello", *(str(fields[name]) for name in HELLO_FIELDS)])
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def welcome(key: bytes, proof: str) -> bytes:
    """The driver's answer to a hello: proves it holds the fit's key too."""
    return hmac.new(key, b"sparknmf-resident-welcome|" + proof.encode(), hashlib.sha256).digest()


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
                chunk = conn.recv(HEADER.size - len(self.header))
                if not chunk:
                    raise ConnectionError("closed before sending a whole frame")
                self.header += chunk
                if len(self.header) == HEADER.size:
                    (size,) = HEADER.unpack(self.header)
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


class Doorman:
    """The accept loop of one fit, in a thread of its own: lets in only the fit's tasks.

    A connection must send, within :data:`HELLO_TIMEOUT` seconds, a hello of
    at most :data:`HELLO_LIMIT` bytes whose proof is right for the fit's
    ``key``, then its block list (at most the fit's ``limit``).  Reads never
    block, at most :data:`MAX_PENDING` connections wait at once (the oldest
    is dropped for a new one), and anything else is refused: closed, and
    logged at WARNING (the first :data:`LOGGED_REFUSALS`, then counted).
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
        if self.refused > LOGGED_REFUSALS:
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
        """Count (and log, up to :data:`LOGGED_REFUSALS`) a refused connection; any thread may call it."""
        with self._lock:
            self.refused += 1
            count = self.refused
        if count <= LOGGED_REFUSALS:
            logger.warning("resident tasks of %s: refused a connection from %s (%s)%s", self.name, _peer(peer), reason,
                           "; further refusals are counted, not logged" if count == LOGGED_REFUSALS else "")

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
                time.sleep(_ACCEPT_RETRY)
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
            self._refuse(selector, door, f"{type(error).__name__}: {first_line(error)}")

    def _check_hello(self, frame) -> dict:
        hello = json.loads(bytes(frame))
        if not isinstance(hello, dict) or not isinstance(hello.get("proof"), str):
            raise ValueError("not a hello")
        fields = {name: hello.get(name) for name in HELLO_FIELDS}
        if any(type(value) is not int or value < 0 for value in fields.values()):
            raise ValueError("not a hello")
        if not hmac.compare_digest(hello["proof"].encode(), hello_proof(self.key, fields).encode()):
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


def listen_hosts(spark) -> tuple:
    """``(bind, advertised)``: where the driver listens for its tasks, and the address they connect to.

    Where Spark's driver listens (``spark.driver.bindAddress``, else
    ``spark.driver.host``), and on loopback for a local master, whose tasks
    all run on this machine; never on every interface unless Spark's own
    bind address says so.
    """
    if is_local_master(spark):
        return "127.0.0.1", "127.0.0.1"
    advertised = advertised_host(spark)
    if is_connect(spark):
        return advertised, advertised
    bind = spark.conf.get("spark.driver.bindAddress", None) or spark.conf.get("spark.driver.host", None)
    return bind or advertised, advertised


def advertised_host(spark) -> str:
    """The address executors reach this driver at (``spark.driver.host`` in classic sessions)."""
    host = None if is_connect(spark) else spark.conf.get("spark.driver.host", None)
    return host or socket.gethostbyname(socket.gethostname())


def first_line(error) -> str:
    """The first line of an error's message, at most 300 characters, for a log line."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
