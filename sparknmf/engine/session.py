"""The Spark session sparknmf runs in: the active one, or an embedded ``local[*]``.

Works for classic and Spark Connect sessions alike; nothing here needs a
``SparkContext`` in a Connect session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading

__all__ = [
    "get_session", "is_connect", "is_local_master", "parallelism", "conf_bytes", "describe_jobs", "blas_threads",
    "launched_by_spark_submit", "placement_keys", "session_conf",
]

logger = logging.getLogger("sparknmf")
_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
_DESCRIPTION = "spark.job.description"
_logged_blas = False


def _python_env():
    # Python workers must run the interpreter that has numpy, scipy and pyarrow
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def launched_by_spark_submit() -> bool:
    """True when this driver was started by ``spark-submit`` (which then owns the master URL)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_session(master: str | None = None, *, remote: str | None = None, app_name: str = "sparknmf",
                config: dict | None = None):
    """The active SparkSession, or a new one.

    Parameters
    ----------
    master : str, optional
        Master URL of a new classic session (default ``local[*]``).  Under
        ``spark-submit`` its ``--master`` decides and this is ignored.
    remote : str, optional
        A Spark Connect URL (``sc://host:15002``) instead of a classic session.
    app_name : str
    config : dict, optional
        More Spark properties for a new session (``{"spark.executor.memory": "8g"}``).

    A new classic session keeps BLAS at one thread per task
    (``spark.executorEnv.OPENBLAS_NUM_THREADS`` etc.) so that numpy kernels in
    parallel tasks do not oversubscribe the cores, and gives the driver JVM
    (which runs the tasks in local mode) ``SPARKNMF_DRIVER_MEMORY`` (4g).
    """
    from pyspark.sql import SparkSession

    _python_env()
    active = SparkSession.getActiveSession()
    if active is not None and master is None and remote is None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if remote:
        builder = builder.remote(remote)
    elif launched_by_spark_submit() or os.environ.get("SPARK_REMOTE"):
        if master:
            logger.info("the master URL comes from spark-submit (or SPARK_REMOTE); master=%r is not applied", master)
    else:
        builder = builder.master(master or "local[*]")
        # local mode runs tasks in the driver JVM, whose 1 GB default is small for cached blocks
        builder = builder.config("spark.driver.memory", os.environ.get("SPARKNMF_DRIVER_MEMORY", "4g"))
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    # few, small shuffles (block keys, ids): a handful of partitions per core, not 200
    builder = builder.config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2)))
    builder = builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
    if not remote:
        for var in _BLAS_VARS:
            builder = builder.config(f"spark.executorEnv.{var}", "1")
    for key, value in (config or {}).items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    spark = builder.getOrCreate()
    _log_blas_once()
    return spark


def is_connect(spark) -> bool:
    """True for a Spark Connect session."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _local_slots(master: str) -> int | None:
    """Task slots of a local master (``local``: 1, ``local[N]`` / ``local[N,F]``: N, ``local[*]``: the cores);
    None for a cluster master."""
    if master == "local":
        return 1
    found = re.match(r"local\[(\d+|\*)", master)
    if not found:
        return None
    return (os.cpu_count() or 1) if found.group(1) == "*" else int(found.group(1))


def is_local_master(spark) -> bool:
    """True for a classic session whose tasks all run on this machine (master ``local``, ``local[N]``, ...)."""
    return not is_connect(spark) and _local_slots(spark.conf.get("spark.master", "") or "") is not None


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40}


def conf_bytes(spark, key: str, default: str) -> int:
    """A size setting of the session (``"1g"``, ``"512m"``, ``"2048"`` bytes) in bytes."""
    text = (spark.conf.get(key, default) or default).strip().lower()
    found = re.fullmatch(r"(\d+)\s*([a-z]*)", text)
    if not found or found.group(2) not in _UNITS:
        raise ValueError(f"{key}: not a size: {text!r}")
    return int(found.group(1)) * _UNITS[found.group(2)]


def parallelism(spark) -> int:
    """Cores available to tasks: ``spark.default.parallelism``, else from the master URL."""
    value = spark.conf.get("spark.default.parallelism", None)
    if value:
        return max(1, int(value))
    slots = _local_slots(spark.conf.get("spark.master", "") or "")
    if slots is not None:
        return slots
    instances = int(spark.conf.get("spark.executor.instances", "2") or 2)
    cores = int(spark.conf.get("spark.executor.cores", "1") or 1)
    return max(1, instances * cores)


def blas_threads() -> str:
    """The BLAS thread settings of this process, for the log."""
    return ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in _BLAS_VARS)


def _log_blas_once():
    global _logged_blas
    if not _logged_blas:
        logger.info("driver BLAS threads: %s; executors use 1 thread per task", blas_threads())
        _logged_blas = True


_OVERRIDES_LOCK = threading.Lock()
_OVERRIDES = {}  # (id(session), conf name) -> [holders, the value before the first holder]


@contextlib.contextmanager
def session_conf(spark, settings: dict):
    """Set the session's runtime confs ``settings`` (name -> value) inside the block.

    Classic and Connect sessions both read them when they plan and run a
    query.  The value before the first of overlapping blocks (fits in
    parallel threads) is restored when the last one ends, so a user's setting
    is never lost to interleaved restores.
    """
    with _OVERRIDES_LOCK:
        for key, value in settings.items():
            held = _OVERRIDES.setdefault((id(spark), key), [0, None])
            if held[0] == 0:
                held[1] = spark.conf.get(key, None)
            held[0] += 1
            spark.conf.set(key, value)
    try:
        yield
    finally:
        with _OVERRIDES_LOCK:
            for key in settings:
                held = _OVERRIDES[(id(spark), key)]
                held[0] -= 1
                if held[0]:
                    continue
                del _OVERRIDES[(id(spark), key)]
                if held[1] is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, held[1])


def describe_jobs(spark, text: str):
    """Name the Spark jobs run inside the block (``spark.job.description``): a :func:`session_conf` context."""
    return session_conf(spark, {_DESCRIPTION: text})


def placement_keys(count: int) -> list:
    """Integers ``v_0 … v_{count-1}`` that ``repartition(count, column)`` sends to partitions ``0 … count-1``.

    Spark's hash partitioning puts an ``int`` value v in partition
    ``pmod(murmur3(v, seed 42), count)``; a column holding ``v_t`` for the
    rows meant for partition t places them exactly, in one shuffle and
    without the sampling job of a range partitioning.
    """
    keys, value = {}, 0
    while len(keys) < count:
        keys.setdefault(_murmur3_int(value) % count, value)  # Python's % is pmod for a positive count
        value += 1
    return [keys[slot] for slot in range(count)]


def _murmur3_int(value: int, seed: int = 42) -> int:
    """Spark's ``Murmur3_x86_32.hashInt`` (the hash of ``F.hash`` and of hash partitioning), signed."""
    mask = 0xFFFFFFFF
    k1 = (value & mask) * 0xCC9E2D51 & mask
    k1 = ((k1 << 15) | (k1 >> 17)) & mask
    k1 = k1 * 0x1B873593 & mask
    h1 = seed ^ k1
    h1 = ((h1 << 13) | (h1 >> 19)) & mask
    h1 = (h1 * 5 + 0xE6546B64) & mask
    h1 ^= 4  # the length in bytes
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & mask
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & mask
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 & 0x80000000 else h1
