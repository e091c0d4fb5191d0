"""What every job shares: command line, configuration, session, timings, run summary, exit codes.

A job is a function ``body(job) -> int | None`` plus its configuration schema;
:func:`run_job` parses the command line::

    sparknmf-<job> [CONF.toml ...] [--set SECTION.KEY=VALUE ...]
                   [--print-config | --print-config-json | --example-config] [--dry-run] [--log-level LEVEL]
                   [job flags]

(or ``jobs/<name>.py`` in a checkout), reads the TOML files in order (later ones
override earlier ones key by key), applies the ``--set`` overrides, checks
everything against the schema and only then calls ``body``.

* ``--example-config`` prints a configuration file with every key under its
  documentation, set to its default (what an installed package has instead
  of the repository's conf/ files);
* ``--print-config`` prints the resolved configuration as TOML (every key, each set
  value with a comment naming where it was set; the output loads as a
  configuration file), ``--print-config-json`` as JSON; then exits 0 with no
  other work.
* ``--dry-run`` makes every check the job makes before its work (configuration,
  input paths and formats, output folder, publication) and exits 0 before
  reading data or fitting (:meth:`Job.checked`).
* ``--log-level`` sets the level of the ``sparknmf`` logger (INFO by default) and,
  when given, of Spark's log in the classic session the job starts (never of an
  active session it uses).

Exit codes:

* 0 -- done (or nothing to do, or a dry run that found nothing wrong);
* 2 -- bad configuration or input, reported before any work
  (``error: conf/factorize.toml: nmf.k must be an integer, got 'ten' (string)``);
* 3 -- refused (the recommendation refresh's metric gate, :class:`JobRefused`);
* 1 -- any other failure (with its traceback).

Every job also has the ``[spark]`` section (:data:`SPARK_SECTION`): master,
Spark Connect URL, application name, a checkpoint folder on shared storage,
and any Spark properties.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from sparknmf.errors import InvalidInputError
from sparknmf.pipeline.jobconf import ConfError, Option, example_toml, load_conf, params_section
from sparknmf.pipeline.staging import PublishError, StagedDirectory, write_json
from sparknmf.pipeline.storage import StorageError, is_local, local_path, storage_for

__all__ = [
    "SPARK_SECTION", "DryRunDone", "Job", "JobRefused", "LOG_LEVELS", "run_job", "nmf_section", "multistart_section",
    "output_section",
    "EXIT_OK", "EXIT_FAILED", "EXIT_INVALID", "EXIT_REFUSED",
]

logger = logging.getLogger("sparknmf")

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_REFUSED = 0, 1, 2, 3

SPARK_SECTION = {
    "master": Option("str", "", "master URL of a new session ('' = local[*]); under spark-submit, --master decides"),
    "remote": Option("str", "", "Spark Connect URL, e.g. 'sc://host:15002' ('' = a classic session)"),
    "app_name": Option("str", "sparknmf", "application name shown in the Spark UI"),
    "checkpoint_dir": Option("path", "", "folder on storage the driver can reach after a restart, for loop "
                                         "checkpoints ('' = none)"),
    "conf": Option("table", {}, "Spark properties for a new session, e.g. 'spark.executor.memory' = '8g'"),
}


# column Params and the duplicates policy come from [input]; loop checkpoints from [spark] checkpoint_dir
_INPUT_PARAMS = ("featuresCol", "outputCol", "rowCol", "colCol", "valueCol", "idCol", "duplicates", "checkpointDir",
                 "weightCol", "uncertaintyCol", "predictionCol")
_MULTISTART_PARAMS = ("nrun", "runMode", "samples", "stopChecks", "checkInterval", "consensusLimit", "consensusSample")


def nmf_section(only=None, defaults=None) -> dict:
    """``[nmf]``: the Params of :class:`~sparknmf.NMF` (snake_case), without column Params and checkpointDir."""
    from sparknmf.decomposition import NMF

    return params_section(NMF, only=only, exclude=_INPUT_PARAMS, defaults=defaults)


def multistart_section(defaults=None, exclude=()) -> dict:
    """``[multistart]``: the Params :class:`~sparknmf.MultiStartNMF` adds (``nrun``, ``run_mode``, ...)."""
    from sparknmf.analysis import MultiStartNMF

    return params_section(MultiStartNMF, only=[p for p in _MULTISTART_PARAMS if p not in exclude], defaults=defaults)


def output_section(**extra) -> dict:
    """``[output]``: the output folder, whether to replace it, whether to write a report; plus ``extra`` options."""
    return {
        "path": Option("path", doc="output folder (written in a hidden staging folder, then renamed into place)"),
        "overwrite": Option("bool", False, "replace an existing output folder once the new one is complete"),
        "report": Option("bool", True, "write report/index.html with figures (needs the plot extra)"),
        **extra,
    }


class JobRefused(RuntimeError):
    """The job decided not to publish (exit code 3); the message says why."""


class DryRunDone(Exception):
    """Raised by :meth:`Job.checked` under ``--dry-run``: every check passed, and the job stops there (exit 0)."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Job:
    """One run of a job: its configuration, command-line flags, session, timings and counters.

    Attributes
    ----------
    name : str
    conf : :class:`~sparknmf.pipeline.jobconf.Conf`
    args : argparse.Namespace
        The job's own flags.
    timings : dict
        Seconds per step (:meth:`step`).
    counts, metrics : dict
        Filled by the job for its run summary.
    """

    def __init__(self, name, conf, args):
        self.name, self.conf, self.args = name, conf, args
        self.timings: dict = {}
        self.counts: dict = {}
        self.metrics: dict = {}
        self.started = time.time()
        self._spark = None

    @contextlib.contextmanager
    def step(self, name: str):
        """Time a step (``with job.step("fit"): ...``); logged and kept for the summary."""
        logger.info("%s: %s ...", self.name, name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
            logger.info("%s: %s done in %.1f s", self.name, name, self.timings[name])

    @property
    def dry_run(self) -> bool:
        """``--dry-run``: check everything, then stop before reading data (:meth:`checked`)."""
        return bool(getattr(self.args, "dry_run", False))

    def checked(self, what: str = "the configuration, inputs and outputs") -> None:
        """Call once every check before the work has passed: under ``--dry-run`` the job stops here (exit 0)."""
        if self.dry_run:
            raise DryRunDone(what)

    def spark(self):
        """The session: the active one, or a new one as ``[spark]`` says (created on first use)."""
        if self._spark is None:
            from pyspark.sql import SparkSession

            from sparknmf.engine.session import get_session

            active = SparkSession.getActiveSession()
            if active is not None:
                logger.info("%s: using the active Spark session; [spark] master and conf are not applied", self.name)
                self._spark = active
            else:
                s = self.conf["spark"]
                python = s["conf"].get("spark.pyspark.python")
                if python and not s["remote"]:
                    # the Python of the executors' workers is the driver's PYSPARK_PYTHON when its SparkContext
                    # starts (spark-submit sets it from its own --conf only); the configuration's value wins
                    os.environ["PYSPARK_PYTHON"] = str(python)
                    logger.info("%s: executors run %s (spark.pyspark.python, %s)", self.name, python,
                                self.conf.source("spark.conf"))
                self._spark = get_session(s["master"] or None, remote=s["remote"] or None, app_name=s["app_name"],
                                          config=s["conf"])
                level = getattr(self.args, "log_level", None)  # given on the command line: Spark's log too
                if level and not _is_connect(self._spark):
                    self._spark.sparkContext.setLogLevel("WARN" if level == "WARNING" else level)
        return self._spark

    def start(self, *, driver: bool = False):
        """Check ``[input]`` and ``[output]`` (before any work), start the session and read V.

        Returns ``(output, input)``: the :class:`~sparknmf.pipeline.staging.StagedDirectory` and the
        :class:`~sparknmf.pipeline.inputs.MatrixInput` (collected to the driver with ``driver=True``).
        """
        from sparknmf.pipeline.inputs import check_input, read_input

        self.checkpoint_dir()
        check_input(self.conf, storage=self.storage)
        out = self.output()
        if self.dry_run:  # the columns too, from the table's schema (a run's Estimator checks them as it reads)
            from sparknmf.pipeline.inputs import SPARK_FORMAT_COLUMNS, check_columns

            check_columns(self.conf, "input", SPARK_FORMAT_COLUMNS.get(self.conf["input"]["format"], ()), self.spark)
        self.checked()
        spark = self.spark()
        with self.step("read input"):
            data = read_input(self.conf, spark)
            return out, (data.to_driver() if driver else data)

    def storage(self, path):
        """The :class:`~sparknmf.pipeline.storage.Storage` of ``path`` (a URI other than ``file:`` starts the
        session: its Hadoop file systems)."""
        return storage_for(path, self.spark)

    def checkpoint_dir(self):
        """``[spark] checkpoint_dir`` as a local Path (None when unset); the loop's checkpoints are files the
        driver writes, so a URI other than ``file:`` is refused naming the key."""
        value = self.conf["spark"]["checkpoint_dir"]
        if not value:
            return None
        if not is_local(value):
            raise self.conf.error("spark.checkpoint_dir", "loop checkpoints are files the driver writes: give a "
                                                          "local path or a shared mount (e.g. /mnt/shared/...)")
        return local_path(value)

    def driver_path_problem(self, path) -> str | None:
        """Why a path on the driver's file system is lost, or None: a relative path in cluster deploy mode is
        a folder in the driver's container (YARN, Kubernetes), deleted with it."""
        if not is_local(path) or Path(str(path)).is_absolute() or str(path).startswith("file:"):
            return None
        if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not started by spark-submit: client mode
            return None
        spark = self.spark()
        if _is_connect(spark) or spark.conf.get("spark.submit.deployMode", "client") != "cluster":
            return None
        return ("a relative path in cluster deploy mode is a folder in the driver's container, deleted when it "
                "ends: give an absolute path on a shared mount or an hdfs:// URI")

    def output(self, section: str = "output") -> StagedDirectory:
        """The job's staged output folder, checked before any work (exists without overwrite, not a folder, a
        URI that cannot be renamed into place, a relative path in cluster deploy mode...)."""
        values = self.conf[section]
        problem = self.driver_path_problem(values["path"])
        if problem:
            raise self.conf.error(f"{section}.path", problem)
        try:
            out = StagedDirectory(values["path"], overwrite=values["overwrite"], storage=self.storage(values["path"]))
        except StorageError as err:
            raise self.conf.error(f"{section}.path", err.reason(values["path"])) from None
        problem = out.problem()
        if problem:
            raise self.conf.error(f"{section}.path", problem)
        if values.get("report"):
            from sparknmf.plots import require_matplotlib

            try:
                require_matplotlib()
            except ImportError as err:
                raise self.conf.error(f"{section}.report", str(err)) from None
        return out

    @contextlib.contextmanager
    def staged(self, out: StagedDirectory):
        """``with job.staged(out) as stage:`` -- the staging folder, removed if the block fails."""
        stage = out.open()
        try:
            yield stage
        except BaseException:
            out.discard()
            raise

    def finish(self, out: StagedDirectory, **extra) -> dict:
        """Write ``summary.json`` into the staged output and move it into place; returns the summary."""
        summary = self.summary("done", output=str(out.path), **extra)
        write_json(out.stage / "summary.json", summary)
        out.commit()
        logger.info("%s: wrote %s", self.name, out.path)
        return summary

    def summary(self, status: str, **extra) -> dict:
        """The run summary: status, times, counts, metrics, configuration and where it came from."""
        from sparknmf.version import __version__

        finished = time.time()
        out = {
            "job": self.name, "status": status,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
            "seconds": round(finished - self.started, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "counts": self.counts, "metrics": self.metrics,
            "conf_files": self.conf.files, "overrides": list(getattr(self.args, "set", None) or []),
            "conf": self.conf.to_dict(),
            "versions": {"sparknmf": __version__, "sparknmf_from": str(Path(__file__).resolve().parents[1]),
                         "spark": self._spark.version if self._spark is not None else None},
            "master": self._spark.conf.get("spark.master", None) if self._spark is not None else None,
        }
        out.update(extra)
        return out


def _is_connect(spark) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _setup_logging(level: str = "INFO") -> None:
    package = logging.getLogger("sparknmf")
    if not any(getattr(h, "_sparknmf_job", False) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler._sparknmf_job = True
        package.addHandler(handler)
    package.setLevel(getattr(logging, level))


def _prog(name: str) -> str:
    """``sparknmf-<job>`` for the installed command, ``jobs/<name>.py`` for a checkout's script."""
    started = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return f"jobs/{name}.py" if started == f"{name}.py" else "sparknmf-" + name.replace("_", "-")


def run_job(name: str, schema: dict, body, argv=None, *, description: str = "", add_arguments=None) -> int:
    """Parse ``argv``, load the configuration, run ``body(job)``; returns the exit code (module docstring).

    Parameters
    ----------
    name : str
        The job's name (``factorize``), used in messages and the summary.
    schema : dict
        ``{section: {key: Option}}`` without ``[spark]``, which is added.
    body : callable
        ``body(job) -> exit code or None``.
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).
    add_arguments : callable, optional
        ``add_arguments(parser)`` adds the job's own flags.
    """
    parser = argparse.ArgumentParser(prog=_prog(name), description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("conf", nargs="*", help="TOML configuration files; later ones override earlier ones")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one key (a TOML value; plain text is a string), e.g. --set nmf.k=10")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--print-config", action="store_true",
                       help="print the resolved configuration as TOML (where each value was set in comments) and "
                            "exit; no other check or work")
    shown.add_argument("--print-config-json", action="store_true",
                       help="print the resolved configuration as JSON and exit")
    shown.add_argument("--example-config", action="store_true",
                       help="print a configuration file with every key of this job under its documentation, set to "
                            "its default (required keys commented out), and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the configuration, inputs and outputs as a run would, then exit 0 before "
                             "reading data or fitting")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                        help="level of the sparknmf log on stderr (default INFO) and, when given, of Spark's log in "
                             "the classic session the job starts")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    _setup_logging(args.log_level or "INFO")
    if args.example_config:
        print(example_toml({**schema, "spark": SPARK_SECTION},
                           header=f"{_prog(name)}: every option, set to its default (required ones commented out)"))
        return EXIT_OK
    try:
        conf = load_conf({**schema, "spark": SPARK_SECTION}, args.conf, args.set)
        if args.print_config or args.print_config_json:
            print(json.dumps(conf.to_dict(), indent=1) if args.print_config_json else conf.to_toml(
                header=f"the configuration of {name}: {', '.join(conf.files) or 'no file'}"
                       + "".join(f", --set {item}" for item in args.set)))
            return EXIT_OK
        job = Job(name, conf, args)
        status = body(job)
        return EXIT_OK if status is None else int(status)
    except DryRunDone as done:
        print(f"{name}: dry run: {done} checked; nothing was read, fitted or written")
        return EXIT_OK
    except JobRefused as err:
        print(f"{name}: refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except PublishError as err:
        print(f"{name}: failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    except (ConfError, InvalidInputError, FileNotFoundError, ValueError) as err:
        logger.debug("%s failed", name, exc_info=True)
        print(f"{name}: error: {err}", file=sys.stderr)
        return EXIT_INVALID
