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

Protocol (TCP, length-prefixed frames; the socket's framing, authentication and
strangers are :mod:`sparknmf.engine.channel`):

* task → driver, on connecting: a *hello* (JSON, at most :data:`~sparknmf.engine.channel.HELLO_LIMIT`
  bytes, within :data:`~sparknmf.engine.channel.HELLO_TIMEOUT` seconds) naming the task (partition,
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
own (:class:`Doorman`) admits connections, so a stranger never holds up a
fit: nothing beyond :data:`~sparknmf.engine.channel.HELLO_LIMIT` bytes is allocated for a connection
until its hello proves the fit's key, a connection silent or slow for
:data:`~sparknmf.engine.channel.HELLO_TIMEOUT` seconds is closed, at most
:data:`~sparknmf.engine.channel.MAX_PENDING` are
waiting at once (the oldest is dropped), and every refusal is logged at
WARNING (logger ``sparknmf``).  A hello names its task attempt, so a captured
hello replayed on another fit fails (another key) and on the same fit is
refused (that task attempt is registered already, or given up).  Every later
frame, either way, is bounded by the fit's :func:`frame_limit` (its blocks
and factor slices), checked before anything is allocated.

The channel is authenticated, not encrypted.  When the session turns on
Spark's own protection (:data:`~sparknmf.engine.channel.SPARK_SECURITY`: ``spark.authenticate``,
``spark.network.crypto.enabled``, ``spark.ssl.enabled``,
``spark.ssl.rpc.enabled``, ``spark.io.encryption.enabled``) or sets
:data:`~sparknmf.engine.channel.REQUIRE_ENCRYPTION`, ``auto`` runs a Spark job per half-step (on
Spark's protected channels) and logs why at INFO, and ``resident`` is refused
with a ``ValueError`` (:func:`~sparknmf.engine.channel.channel_refusal`);
:data:`~sparknmf.engine.channel.ALLOW_PLAINTEXT`
accepts the clear-text channel under Spark's settings.

Requests carry all the state (factors, Grams), tasks keep only V, so a
restarted attempt answers the request that was in flight with the same
bytes: the driver waits for the new attempt's tasks to register and sends
it again.  Results are identical to the per-half-step jobs, which remain the
mode for Spark Connect sessions (whose client executors cannot be assumed to
reach) and for V too large to sit in the Python workers at once.

One module of near 500 lines on purpose: the protocol's two ends (the task's
loop and the driver's :class:`ResidentTasks`) answer each other line for line
and read best side by side; the socket under them is :mod:`sparknmf.engine.channel`.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import json
import logging
import secrets
import selectors
import socket
import sys
import time
import warnings
import weakref

import pyarrow as pa

from sparknmf.engine import calls
from sparknmf.engine.channel import (
    WELCOME_BYTES,
    Doorman,
    FrameTooLarge,
    channel_refusal,
    first_line,
    hello_proof,
    listen_hosts,
    message_bytes,
    recv_frame,
    recv_message,
    security_conf,
    send_frame,
    send_message,
    welcome,
)
from sparknmf.engine.session import describe_jobs, is_connect, parallelism

__all__ = ["EXECUTION_MODES", "ResidentTasks", "ResidentUnavailable", "resident_fit", "task_state", "use_resident"]

logger = logging.getLogger("sparknmf")

EXECUTION_MODES = ("auto", "resident", "jobs")
_RESIDENT_BYTES_PER_TASK = 2 << 30  # auto mode: at most ~2 GiB of blocks per Python worker
CONNECT_TIMEOUT = 30.0  # seconds a task tries to reach the driver
START_TIMEOUT = 120.0  # seconds for every task to register before the fit falls back to jobs
_POLL = 0.2  # seconds between checks of the job while the driver waits

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
    refusal = channel_refusal(security_conf(spark))
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


class ResidentUnavailable(RuntimeError):
    """The resident tasks did not all start (too few free task slots, or they cannot reach the driver);
    the caller runs jobs instead."""


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
        proof = hello_proof(key, fields)
        hello = [json.dumps({**fields, "proof": proof}).encode(), json.dumps(held).encode()]  # ready before connecting
        sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
        try:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on the small frame header
            for frame in hello:
                send_frame(sock, frame)
            if not hmac.compare_digest(bytes(recv_frame(sock, WELCOME_BYTES)), welcome(key, proof)):
                raise ConnectionError(f"the peer at {address[0]}:{address[1]} does not hold the fit's key")
            _STATE = {}
            while True:
                request = recv_message(sock, limit)
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
                send_frame(sock, answer)
        finally:
            _STATE = None
            sock.close()
        yield pa.RecordBatch.from_pydict({"part": [context.partitionId()]}, schema=pa.schema([("part", pa.int32())]))

    return run


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
        bind, advertised = listen_hosts(self.spark)
        try:
            family = socket.getaddrinfo(bind, 0, type=socket.SOCK_STREAM)[0][0]
            server = socket.create_server((bind, 0), family=family, backlog=max(128, 2 * self.tasks))
        except OSError as error:
            raise ResidentUnavailable(f"the driver cannot listen on {bind} ({error})") from error
        self.address = (advertised, server.getsockname()[1])
        self._doorman = Doorman(server, self._key, self.frame_limit, self.name)
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
                raise ResidentUnavailable(f"the resident tasks could not start ({first_line(error)})") from error
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
                send_message(conn, [])  # stop
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
            send_frame(conn, welcome(self._key, hello["proof"]))
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
            sizes = [message_bytes(frames) for frames in requests.values()]
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
                send_message(conn, requests[part])
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
                    answers[waiting[sock]] = bytes(recv_frame(sock, self.frame_limit))
                except FrameTooLarge as error:
                    self._drop()
                    raise RuntimeError(f"sparknmf: resident task {waiting[sock]} refused: {error}") from error
                except OSError as error:
                    self._drop()
                    raise ConnectionError(f"task {waiting[sock]}: {error}") from error
        tables = [pa.ipc.open_stream(answers[part]).read_all() for part in sorted(answers) if answers[part]]
        return pa.concat_tables(tables)


def _select(socks, timeout):
    """The sockets among ``socks`` that are readable within ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(timeout)]
