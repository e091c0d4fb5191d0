"""Strangers at the resident tasks' socket (issue 20): each probe against a real resident fit on ``local[2]``.

A probe runs in a thread started by the fit's callback after iteration 1 (NMF on resident tasks: V 60×40, k=3, a 2×1
grid, so two tasks), and the callback waits for it after iteration ``ITERATIONS - 1``: the probe meets the driver
while half-steps go on.  Every probe test checks that

* the fit ends with exactly the factors and history of an undisturbed resident fit of the same seed;
* the driver's resident memory (VmRSS) grows by less than ``RSS_BOUND``;
* each of the probe's connections was closed by the driver during the fit, and the refusals (exactly the probe's
  connections) were logged at WARNING by the ``sparknmf`` logger.

The Spark security settings' rule (``channel_refusal``) is tested on conf values, and once on a fit under
``spark.sparknmf.resident.requireEncryption`` (settable at run time, unlike ``spark.authenticate``).
"""

import json
import logging
import socket
import struct
import threading
import time

import numpy as np
import pytest

from sparknmf.decomposition.factorize import factorize
from sparknmf.engine import channel, resident
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.validation import as_matrix

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]

ITERATIONS = 12
RSS_BOUND = 50 << 20  # bytes
PROBE_TIMEOUT = 30.0  # seconds a probe may take (a silent one is closed after channel.HELLO_TIMEOUT, 5 s)


def _rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) << 10 for line in status if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def block(spark):
    V = np.random.default_rng(20).random((60, 40)) * (np.random.default_rng(21).random((60, 40)) < 0.7)
    block = BlockMatrix.from_array(spark, as_matrix(V), (2, 1))
    yield block
    block.unpersist()


def _fit(block, callback=None):
    block.execution = "resident"
    return factorize(block, 3, algorithm="hals", init="random", max_iter=ITERATIONS, tol=0, seed=3, callback=callback)


@pytest.fixture(scope="module")
def reference(block):
    return _fit(block)


def _identical(a, b):
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.H, b.H)
    assert a.history == b.history


def _closed_by_peer(sock, timeout=PROBE_TIMEOUT) -> bool:
    """Wait until the driver closes ``sock``; True if it did within ``timeout`` (any unread bytes are drained)."""
    sock.settimeout(timeout)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def _frame(payload: bytes) -> bytes:
    return struct.pack(">Q", len(payload)) + payload


class Probe:
    """Runs ``attack(address) -> [sockets]`` in a thread during a fit, then waits for the driver to close them."""

    def __init__(self, attack):
        self.attack, self.thread, self.error = attack, None, None
        self.sockets, self.closed, self.tasks, self.last_step = [], [], None, None

    def callback(self, block):
        def callback(iteration, elapsed, objective):
            if iteration == 1:
                self.tasks = block._resident
                self.thread = threading.Thread(target=self._run, args=(block._resident.address,), daemon=True)
                self.thread.start()
            elif iteration == ITERATIONS - 1:
                self.last_step = time.monotonic()
                self.thread.join(PROBE_TIMEOUT + 10)

        return callback

    def _run(self, address):
        try:
            self.sockets = self.attack(address)
            self.closed = [(_closed_by_peer(sock), time.monotonic()) for sock in self.sockets]
        except BaseException as error:  # reported by check()
            self.error = error
        finally:
            for sock in self.sockets:
                sock.close()

    def check(self):
        assert self.error is None, repr(self.error)
        assert self.sockets and all(closed for closed, _ in self.closed), "a probe connection stayed open"
        assert self.tasks._doorman.refused == len(self.sockets)


def _probed_fit(block, reference, caplog, attack):
    probe = Probe(attack)
    before = _rss()
    with caplog.at_level(logging.WARNING, logger="sparknmf"):
        result = _fit(block, probe.callback(block))
    grown = _rss() - before
    probe.check()
    _identical(reference, result)
    assert grown < RSS_BOUND, f"the driver's RSS grew by {grown >> 20} MB"
    messages = [record.getMessage() for record in caplog.records if record.name == "sparknmf"]
    refusals = [message for message in messages if "refused a connection" in message]
    assert len(refusals) == min(len(probe.sockets), channel.LOGGED_REFUSALS)
    return probe, refusals


def _connect(address):
    return socket.create_connection(address, timeout=10)


# ---------------------------------------------------------------------- the probes
def test_a_silent_or_slow_stranger_is_closed_after_the_hello_timeout_and_never_stalls_the_fit(block, reference, caplog):
    """Slow loris: nothing sent; half a header; a hello trickling in a byte per second."""

    def attack(address):
        silent, partial, trickle = _connect(address), _connect(address), _connect(address)
        partial.sendall(b"\x00\x00\x00")
        hello = _frame(json.dumps({"partition": 0, "task": 1, "stage": 1, "tasks": 2, "proof": "0" * 64}).encode())

        def drip():
            for byte in hello:
                try:
                    trickle.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(1.0)

        threading.Thread(target=drip, daemon=True).start()
        return [silent, partial, trickle]

    probe, refusals = _probed_fit(block, reference, caplog, attack)
    assert all(f"not authenticated within {channel.HELLO_TIMEOUT:g} s" in message for message in refusals)
    # the half-steps after the probe ran while the strangers were still connected: the driver never waited for them
    assert all(probe.last_step < closed_at for _, closed_at in probe.closed)


def test_garbage_is_refused(block, reference, caplog):
    def attack(address):
        rng = np.random.default_rng(1)
        noise, not_json, deep = _connect(address), _connect(address), _connect(address)
        noise.sendall(rng.integers(1, 256, 3000, dtype=np.uint8).tobytes())  # its first 8 bytes: a huge length
        not_json.sendall(_frame(rng.integers(0, 256, 200, dtype=np.uint8).tobytes()))
        deep.sendall(_frame(b"[" * 2000 + b"]" * 2000))  # nested past the parser's recursion limit
        return [noise, not_json, deep]

    _, refusals = _probed_fit(block, reference, caplog, attack)
    assert any("FrameTooLarge" in message for message in refusals)


def test_an_oversized_length_is_refused_before_anything_is_allocated(block, reference, caplog):
    """The issue's measured attack (a length of 2^40), and 2^30 followed by 8 MB of data."""

    def attack(address):
        huge, large = _connect(address), _connect(address)
        huge.sendall(bytes.fromhex("0000010000000000"))
        large.sendall(struct.pack(">Q", 1 << 30))
        try:
            large.sendall(b"\xff" * (8 << 20))
        except OSError:  # closed under the send: refused already
            pass
        return [huge, large]

    _, refusals = _probed_fit(block, reference, caplog, attack)
    assert all(f"above the limit of {channel.HELLO_LIMIT}" in message for message in refusals)
    assert any(f"a frame of {1 << 40} bytes announced" in message for message in refusals)


def test_a_hello_with_a_wrong_key_is_refused(block, reference, caplog):
    def attack(address):
        forged = _connect(address)
        fields = {"partition": 0, "task": 10**9, "stage": 10**6, "tasks": 2}
        proof = channel.hello_proof(b"\x00" * 32, fields)
        forged.sendall(_frame(json.dumps({**fields, "proof": proof}).encode()) + _frame(b"[[0, 0]]"))
        return [forged]

    _, refusals = _probed_fit(block, reference, caplog, attack)
    assert "wrong proof: not a task of this fit" in refusals[0]


def test_a_flood_of_connections_is_refused_and_the_fit_goes_on(block, reference, caplog):
    """200 connections at once, silent or with a few bytes: at most MAX_PENDING wait, the oldest are dropped."""

    def attack(address):
        flood = []
        for i in range(200):
            sock = _connect(address)
            if i % 2:
                sock.sendall(b"\x00" * 4)
            flood.append(sock)
        return flood

    probe, refusals = _probed_fit(block, reference, caplog, attack)
    dropped = [message for message in refusals if f"more than {channel.MAX_PENDING} connections" in message]
    assert dropped and probe.tasks._doorman.refused == 200
    assert any("refused 200 connections in all" in r.getMessage() for r in caplog.records)


def test_a_replayed_hello_is_refused_on_its_own_fit_and_on_another(block, reference, caplog, monkeypatch):
    """A relay in front of the driver records what the tasks send; their hellos replayed on the same fit (a task
    attempt registered already) and on the next fit (another key) are refused."""
    relay = Relay()
    serve = resident._serve

    def through_relay(address, key, limit):
        relay.target = tuple(address)
        return serve(relay.address, key, limit)

    monkeypatch.setattr(resident, "_serve", through_relay)

    def replay(address):
        replayed = []
        for captured in relay.hellos():
            sock = _connect(address)
            sock.sendall(captured)
            replayed.append(sock)
        return replayed

    try:
        probe, refusals = _probed_fit(block, reference, caplog, replay)  # the fit runs through the relay
    finally:
        monkeypatch.setattr(resident, "_serve", serve)
        relay.close()
    assert len(probe.sockets) == 2
    assert all("is registered already or was given up" in message for message in refusals)
    caplog.clear()
    probe, refusals = _probed_fit(block, reference, caplog, replay)
    assert all("wrong proof: not a task of this fit" in message for message in refusals)


class Relay:
    """A TCP relay to ``target`` (set before the first connection) that records each connection's first frames."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address, self.target, self.recorded = self.server.getsockname(), None, []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            record = bytearray()
            self.recorded.append(record)
            threading.Thread(target=self._pump, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(source, sink, record):
        try:
            while chunk := source.recv(65536):
                if record is not None and len(record) < 1 << 16:
                    record += chunk
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def hellos(self) -> list:
        """Each recorded connection's hello and block list (its first two frames), as sent."""
        captured = []
        for record in self.recorded:
            data, end = bytes(record), 0
            for _ in range(2):
                end += 8 + struct.unpack(">Q", data[end : end + 8])[0]
            captured.append(data[:end])
        return captured

    def close(self):
        self.server.close()


# ---------------------------------------------------------------------- where it listens, what it accepts
def test_the_driver_listens_on_loopback_for_a_local_master_and_where_spark_binds_otherwise(spark, block):
    seen = {}

    host = spark.conf.get("spark.driver.host")  # this machine's address on its network

    def look(iteration, elapsed, objective):
        if iteration == 1:
            seen["bound"], port = block._resident._doorman.server.getsockname()[:2]
            if not host.startswith("127."):
                with pytest.raises(ConnectionRefusedError):  # a stranger on the network finds nothing listening
                    socket.create_connection((host, port), timeout=5).close()

    _fit(block, look)
    assert seen["bound"] == "127.0.0.1"

    class Conf(dict):
        def get(self, key, default=None):
            return super().get(key, default)

    class Cluster:
        conf = Conf({"spark.master": "yarn", "spark.driver.host": "10.1.2.3"})

    assert channel.listen_hosts(Cluster()) == ("10.1.2.3", "10.1.2.3")
    Cluster.conf["spark.driver.bindAddress"] = "0.0.0.0"
    assert channel.listen_hosts(Cluster()) == ("0.0.0.0", "10.1.2.3")


def test_frames_above_the_limit_are_refused_before_allocation_on_both_ends():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack(">Q", 1 << 40))
        with pytest.raises(channel.FrameTooLarge, match=f"a frame of {1 << 40} bytes announced"):
            channel.recv_frame(right, 1 << 20)
        left.sendall(struct.pack(">Q", 1 << 60))  # a message of 2^60 frames
        with pytest.raises(channel.FrameTooLarge, match="frames announced"):
            channel.recv_message(right, 1 << 20)
        channel.send_message(left, [b"k", b"x" * 100])
        assert channel.recv_message(right, 1 << 20) == [b"k", b"x" * 100]
        channel.send_message(left, [b"x" * 600, b"y" * 600])  # each under the limit, not both
        with pytest.raises(channel.FrameTooLarge):
            channel.recv_message(right, 1000)
    assert channel.frame_limit(10, 100, 40, 2) < channel.frame_limit(10, 100, 40, 3) < 1 << 40


# ---------------------------------------------------------------------- Spark's security settings
@pytest.mark.parametrize("conf, refused", [
    ({}, None),
    ({"spark.authenticate": "true"}, "spark.authenticate=true"),
    ({"spark.network.crypto.enabled": "TRUE"}, "spark.network.crypto.enabled=true"),
    ({"spark.ssl.enabled": "true"}, "spark.ssl.enabled=true"),
    ({"spark.ssl.rpc.enabled": "true"}, "spark.ssl.rpc.enabled=true"),
    ({"spark.io.encryption.enabled": "true"}, "spark.io.encryption.enabled=true"),
    ({"spark.authenticate": "false", "spark.ssl.enabled": "false"}, None),
    ({"spark.authenticate": "true", channel.ALLOW_PLAINTEXT: "true"}, None),
    ({channel.REQUIRE_ENCRYPTION: "true"}, "requireEncryption=true"),
    ({channel.REQUIRE_ENCRYPTION: "true", channel.ALLOW_PLAINTEXT: "true"}, "requireEncryption=true"),
])
def test_spark_security_settings_rule_out_the_clear_text_channel(conf, refused):
    reason = channel.channel_refusal(conf)
    if refused is None:
        assert reason is None
    else:
        assert refused in reason and "executionMode='jobs'" in reason


def test_auto_runs_jobs_and_resident_is_refused_under_spark_security(spark, monkeypatch, caplog):
    monkeypatch.setattr(resident, "security_conf", lambda spark: {"spark.authenticate": "true"})
    with caplog.at_level(logging.INFO, logger="sparknmf"):
        assert not resident.use_resident("auto", spark, 1 << 20, 2)
    assert any("spark.authenticate=true" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    with pytest.raises(ValueError, match="executionMode='resident' is refused: spark.authenticate=true protects"):
        resident.use_resident("resident", spark, 1 << 20, 2)
    assert not resident.use_resident("jobs", spark, 1 << 20, 2)


def test_a_fit_requiring_encryption_runs_jobs_in_auto_and_refuses_resident(spark, block, reference, caplog):
    spark.conf.set(channel.REQUIRE_ENCRYPTION, "true")
    try:
        seen = []
        block.execution = "auto"
        with caplog.at_level(logging.INFO, logger="sparknmf"):
            result = factorize(block, 3, algorithm="hals", init="random", max_iter=ITERATIONS, tol=0, seed=3,
                               callback=lambda *_: seen.append(block._resident))
        assert seen and all(tasks is None for tasks in seen)  # a Spark job per half-step
        assert any("requireEncryption=true" in r.getMessage() for r in caplog.records)
        _identical(reference, result)  # the jobs give the resident fit's factors
        with pytest.raises(ValueError, match="executionMode='resident' is refused: .*requireEncryption=true"):
            _fit(block)
    finally:
        spark.conf.unset(channel.REQUIRE_ENCRYPTION)
