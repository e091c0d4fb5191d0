"""spark-submit job: the scheduled recommendation refresh -- train, evaluate, gate, publish top-N for all users.

    sparknmf-recommend conf/local.toml conf/recommend.toml [--set als.rank=50 ...]
    sparknmf-recommend conf/recommend.toml --print-config | --dry-run
    python jobs/recommend.py ...                   # the same, in a checkout
    python jobs/recommend.py conf/recommend.toml --rollback
    spark-submit --py-files dist/sparknmf-0.1.0.zip jobs/recommend.py conf/cluster.toml conf/recommend.toml

A run, holding the publication's lock:

1. if the current publication was made from the same input files (by content; on HDFS by the checksums
   the file system keeps) and configuration, it stops: nothing to do (reruns are idempotent);
2. reads the ratings and a held-out slice (``holdout.path``, or a seeded hash split of the input);
3. trains :class:`sparknmf.MaskedALS` on the rest, warm-started from the published model
   (``recommend.warm_start``; users and items it knows keep their parameters as a start) when that
   model has the same rank, biases and time terms, from a random start otherwise;
4. evaluates the new and the published model on the same held-out slice: RMSE of the predictions and
   NDCG@N of the top-N lists against the held-out ratings >= ``holdout.relevant``; with implicit data
   (``als.implicit_prefs = true``: plays, clicks, purchases; ``als.alpha``, ``als.confidence``) NDCG@N,
   precision, recall, MAP@N and AUC against every held-out event with a positive value, the gate on NDCG@N
   only (RMSE does not apply), and the explicit-only keys (biases, SVD++, time terms, rating range) off
   unless set, which is an error;
5. refuses to publish (exit code 3, the publication untouched) when a metric of ``gate.metrics`` is worse
   than the published model's by more than its margin;
6. writes the model and the top-N recommendations of every user (Parquet ``(user, recommendations
   array<struct<item, rating>>)``) to a staging folder, reads them back to validate (row count = users,
   schema, no null/NaN/inf score), renames the folder to the next version and switches ``CURRENT``
   (the folder publisher :class:`sparknmf.pipeline.publish.Publication`: a crash at any point leaves the
   previous publication readable); keeps the last ``publish.keep`` versions.

``--rollback`` switches ``CURRENT`` back to the previous version (holding the lock too).

The lock is ``<root>/LOCK`` (:mod:`sparknmf.pipeline.publish`, "The lock"): created complete with the
holder's host, pid, process start time and start time; a run that finds it held by a live run exits
with code 4 and a message naming the holder.  A LOCK left by a crash does not block: it is taken over
at once when its process is gone (or its PID reused) on this machine, after 10 minutes without a
heartbeat when it was taken on another host, after 30 s when it is unreadable or empty.

Every run that gets past the configuration checks writes its record (status ``published``,
``unchanged``, ``refused``, ``rolled back``, ``locked`` or ``failed`` with the error; ``action``
``refresh`` or ``rollback``; timings, counts, metrics of both models, versions; a locked run: the
``holder`` and the ``previous`` run's outcome) to ``publish.summary`` (default
``<root>/last_run.json``); when the disk is full it tries a small record (``"record": "small"``).
A published version also holds its record as ``summary.json``.
Readers take ``<root>/versions/<CURRENT's version>/recommendations``.

Exit codes: 0 published, unchanged or rolled back; 1 failed (a full disk: ``recommend: failed: the disk
is full: ...``; nothing to roll back to; a validation failure); 2 bad configuration or input, before any
work (no run record); 3 refused by the metric gate; 4 locked by another run (:data:`EXIT_LOCKED`);
5 the run record could not be written (:data:`EXIT_UNRECORDED`; ``last_run.json`` still describes an
earlier run, stderr says how this one ended); 143 terminated by SIGTERM (after writing its record
``failed``, ``terminated by SIGTERM``, and releasing the lock).
"""

import errno
import logging
import signal
import sys
from pathlib import Path

from sparknmf.params import Interval
from sparknmf.pipeline.inputs import (
    RATINGS_COLUMNS,
    RATINGS_SECTION,
    check_columns,
    check_ratings,
    content_digest,
    holdout_split,
    read_ratings,
)
from sparknmf.pipeline.jobconf import Option, params_section
from sparknmf.pipeline.jobrun import JobRefused, run_job
from sparknmf.pipeline.lock import LockBusy
from sparknmf.pipeline.publish import PUBLISHERS, PublishError, metric_gate, open_publisher, validate_table
from sparknmf.pipeline.staging import read_json, write_json
from sparknmf.pipeline.storage import StorageError, is_local, local_path
from sparknmf.ratings import MaskedALS, MaskedALSModel
from sparknmf.ratings.evaluation import ranking_metrics, rmse

logger = logging.getLogger("sparknmf")

EXIT_LOCKED = 4      # another run holds the publication's lock
EXIT_UNRECORDED = 5  # the run record could not be written

# columns come from [input]; loop checkpoints (checkpointDir, checkpointInterval: resuming a killed fit) are
# library options: a failed refresh is rerun, warm-starting from the published model
_NOT_IN_CONF = ("userCol", "itemCol", "ratingCol", "timestampCol", "predictionCol", "checkpointInterval",
                "checkpointDir")

SCHEMA = {
    "input": RATINGS_SECTION,
    "holdout": {
        "path": Option("path", "", "held-out ratings in the input's format ('' = a seeded split of the input)"),
        "fraction": Option("float", 0.1, "share of the input held out when holdout.path is ''",
                           check=Interval(0, 1, open_low=True, open_high=True)),
        "seed": Option("int", 0, "seed of the held-out split"),
        "relevant": Option("float", 4.0, "held-out ratings at least this high are the relevant items for NDCG@N"),
    },
    "als": params_section(MaskedALS, exclude=_NOT_IN_CONF, defaults={"coldStartStrategy": "biases"}),
    "recommend": {
        "top_n": Option("int", 10, "items recommended to every user (and N of NDCG@N)",
                        check=Interval(1, integer=True)),
        "exclude_rated": Option("bool", True, "never recommend an item the user rated in the training data"),
        "warm_start": Option("bool", True, "start from the published model's parameters (same rank, biases and "
                                           "time terms only)"),
    },
    "gate": {
        "metrics": Option("list[str]", ["rmse", "ndcg"], "metrics that must not get worse than the published "
                                                         "model's by more than their margin", choices=("rmse", "ndcg")),
        "rmse_margin": Option("float", 0.01, "allowed increase of held-out RMSE", check=Interval(0)),
        "ndcg_margin": Option("float", 0.01, "allowed decrease of held-out NDCG@N", check=Interval(0)),
    },
    "publish": {
        "root": Option("path", doc="folder of the publication: CURRENT, versions/, staging/, LOCK"),
        "publisher": Option("str", "folder", "how versions are kept and switched: 'folder' (a folder on a local "
                                             "disk or shared POSIX mount)", choices=tuple(PUBLISHERS)),
        "keep": Option("int", 5, "versions kept on disk (>= 2)", check=Interval(2, integer=True)),
        "summary": Option("path", "", "where every run writes its summary JSON ('' = <root>/last_run.json)"),
    },
}


def _columns(conf) -> dict:
    i = conf["input"]
    return {"userCol": i["user_col"], "itemCol": i["item_col"], "ratingCol": i["rating_col"],
            "timestampCol": i["timestamp_col"]}


# what only explicit ratings have: under als.implicit_prefs these keys keep the estimator's own defaults (off)
# unless a file or --set gives them, which the estimator then refuses (a configuration error before any work)
_EXPLICIT_ONLY = ("biases", "implicit_feedback", "time_bins", "user_drift", "rating_range")


def _implicit(conf) -> bool:
    return bool(conf["als"]["implicit_prefs"])


def _als_params(conf) -> dict:
    """The MaskedALS Params of ``[als]`` (implicit data: the explicit-only keys left at their defaults dropped)."""
    params = conf.params("als")
    if _implicit(conf):
        options = conf.schema["als"]
        for key in _EXPLICIT_ONLY:
            if conf.source(f"als.{key}") == "default":
                params.pop(options[key].param)
    return params


def _layout(conf) -> dict:
    """What shapes a model's parameters: a published model warm-starts a fit only when this is the same."""
    als, timed, implicit = conf["als"], bool(conf["input"]["timestamp_col"]), _implicit(conf)
    return {"rank": als["rank"], "biases": als["biases"] and not implicit,
            "time_bins": als["time_bins"] if timed and not implicit else 0,
            "user_drift": als["user_drift"] and timed and not implicit, "implicit_prefs": implicit}


def _check(conf, storage=None) -> None:
    """What the configuration files cannot say on their own, checked before any work."""
    check_ratings(conf, storage=storage)
    check_ratings(conf, "holdout", storage=storage)
    if _implicit(conf):
        try:
            MaskedALS(**_als_params(conf), **_columns(conf))._check_rules()
        except ValueError as err:
            raise conf.error("als.implicit_prefs", str(err)) from None
        if "rmse" in conf["gate"]["metrics"]:
            raise conf.error("gate.metrics", "implicit data (als.implicit_prefs = true) has no held-out RMSE: the "
                                             "model scores preferences, not ratings; gate on [\"ndcg\"]")
        return
    if conf["als"]["cold_start_strategy"] == "nan":
        raise conf.error("als.cold_start_strategy", "the held-out RMSE needs a prediction for every held-out rating: "
                                                    "use 'biases' (or 'drop')")


def _cold_start_reason(current, conf) -> str | None:
    """Why the fit cannot start from the published model (None: it can)."""
    if current is None:
        return "nothing is published yet"
    if not conf["recommend"]["warm_start"]:
        return f"recommend.warm_start = false ({conf.source('recommend.warm_start')})"
    old, new = current.meta.get("layout") or {}, _layout(conf)
    changed = [f"{key} {old.get(key)!r} -> {value!r}" for key, value in new.items() if old.get(key) != value]
    return f"the model of {current.name} has other parameters ({', '.join(changed)})" if changed else None


def _read(conf, spark):
    """Training and held-out ratings, cached."""
    ratings = read_ratings(conf, spark)
    if conf["holdout"]["path"]:
        train, test = ratings, read_ratings(conf, spark, path=conf["holdout"]["path"])
    else:
        cols = _columns(conf)
        train, test = holdout_split(ratings, conf["holdout"]["fraction"], conf["holdout"]["seed"],
                                    (cols["userCol"], cols["itemCol"]))
    return train.cache(), test.cache()


def _evaluate(model, train, test, conf):
    """Held-out RMSE and NDCG@N (precision, recall) of ``model``, and its top-N lists.

    Implicit data: NDCG@N, precision, recall, MAP@N and AUC@N against every held-out event with a positive
    value (``holdout.relevant`` is for ratings); the top-N lists leave out the training events (the model
    keeps them) when ``recommend.exclude_rated``.
    """
    cols, n = _columns(conf), conf["recommend"]["top_n"]
    # a published model may have been saved with other column names or cold-start strategy
    for name, value in {**cols, "coldStartStrategy": conf["als"]["cold_start_strategy"]}.items():
        model.set(getattr(model, name), value)
    if model.implicitPrefs:
        recs = model.recommendForAllUsers(n, filterRated=conf["recommend"]["exclude_rated"])
        relevant = test.filter(test[cols["ratingCol"]] > 0)
        ranking = ranking_metrics(recs, relevant, n, queryCol=cols["userCol"], targetCol=cols["itemCol"],
                                  catalogSize=model.count("item"))
        return {**{m: ranking[m] for m in ("ndcg", "precision", "recall", "map", "auc", "queries")}}, recs
    recs = model.recommendForAllUsers(n, exclude=train.select(cols["userCol"], cols["itemCol"])
                                      if conf["recommend"]["exclude_rated"] else None)
    relevant = test.filter(test[cols["ratingCol"]] >= conf["holdout"]["relevant"])
    ranking = ranking_metrics(recs, relevant, n, queryCol=cols["userCol"], targetCol=cols["itemCol"])
    metrics = {"rmse": rmse(model.transform(test), labelCol=cols["ratingCol"]), "ndcg": ranking["ndcg"],
               "precision": ranking["precision"], "recall": ranking["recall"], "queries": ranking["queries"]}
    return metrics, recs


class _Record:
    """The run record (``last_run.json``): written by every run that gets past the configuration checks."""

    def __init__(self, job, path: Path, action: str):
        self.job, self.path, self.action = job, path, action
        self.status: str | None = None  # the status last written (or tried)
        self.failed: str | None = None  # why nothing could be written for this run (the last write)

    def write(self, status: str, **extra) -> bool:
        """Write the record; when that fails (a full disk...) a small one; False when neither was written."""
        self.status = status
        try:
            write_json(self.path, self.job.summary(status, action=self.action, **extra))
            self.failed = None
            return True
        except Exception as err:  # OSError (ENOSPC, EDQUOT, EROFS...), or a summary that cannot be made
            error = f"{type(err).__name__}: {err}"
        small = {"job": self.job.name, "action": self.action, "status": status, "record": "small",
                 "record_error": error, **{k: v for k, v in extra.items() if k in ("error", "current")}}
        try:
            write_json(self.path, small)
        except Exception:
            self.failed = error
            return False
        self.failed = None
        return True

    def previous(self) -> dict | None:
        """The outcome recorded by the run before (kept in the record of a run refused by the lock)."""
        try:
            data = read_json(self.path)
            return {k: data.get(k) for k in ("action", "status", "started", "finished", "current", "error")}
        except (OSError, ValueError, AttributeError):
            return None


def refresh(job):
    """Check, take the lock, refresh or roll back; every outcome writes the run record (module docstring)."""
    conf = job.conf
    root = conf["publish"]["root"]
    try:
        pub = open_publisher(conf["publish"]["publisher"], root, keep=conf["publish"]["keep"])
    except StorageError as err:
        raise conf.error("publish.root", err.reason(root)) from None
    if conf["publish"]["summary"] and not is_local(conf["publish"]["summary"]):
        raise conf.error("publish.summary", "the run record is written by the driver: give a local or mounted path")
    for key in ("publish.root", "publish.summary"):
        problem = job.driver_path_problem(conf.get(key)) if conf.get(key) else None
        if problem:
            raise conf.error(key, problem)
    record = _Record(job, local_path(conf["publish"]["summary"]) if conf["publish"]["summary"] else
                     local_path(root) / "last_run.json", "rollback" if job.args.rollback else "refresh")
    fingerprint = None
    if not job.args.rollback:
        _check(conf, job.storage)
        if job.dry_run:  # the rating columns too, from the tables' schemas
            check_columns(conf, "input", RATINGS_COLUMNS, job.spark)
            if conf["holdout"]["path"]:
                check_columns(conf, "holdout", RATINGS_COLUMNS, job.spark,
                              values={**conf["input"], "path": conf["holdout"]["path"]})
    job.checked("the configuration, input and publication")
    try:
        if not job.args.rollback:
            data = content_digest(conf["input"]["path"], conf["holdout"]["path"], storage=job.storage)
            fingerprint = None if data is None else f"{data}-{conf.digest('input', 'holdout', 'als', 'recommend')}"
        local_path(root).mkdir(parents=True, exist_ok=True)
        record.path.parent.mkdir(parents=True, exist_ok=True)
        with pub.lock():
            status = _rollback(pub, record) if job.args.rollback else _refresh(job, pub, fingerprint, record)
    except LockBusy as err:
        print(f"recommend: locked: {err}", file=sys.stderr)
        if record.write("locked", error=str(err), holder=err.holder, previous=record.previous()):
            return EXIT_LOCKED
        return _unrecorded(record, "locked")
    except BaseException as err:
        if not isinstance(err, JobRefused):  # a refusal writes its own record
            record.write("failed", error=str(err) if isinstance(err, Terminated) else f"{type(err).__name__}: {err}")
        if record.failed is not None and isinstance(err, Exception):
            logger.error("recommend: %s failed", record.action, exc_info=True)
            return _unrecorded(record, f"refused: {err}" if isinstance(err, JobRefused) else
                               f"failed: {type(err).__name__}: {err}")
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise PublishError(f"the disk is full: {err}") from err
        raise
    return _unrecorded(record, record.status) if record.failed is not None else status


def _unrecorded(record, outcome: str) -> int:
    """Exit code 5: the run record could not be written; stderr says how the run ended."""
    print(f"recommend: {outcome}; and the run record {record.path} could not be written ({record.failed}): "
          f"it still describes an earlier run", file=sys.stderr)
    return EXIT_UNRECORDED


def _rollback(pub, record):
    """``--rollback``, holding the lock."""
    version = pub.rollback()
    record.write("rolled back", current=version.name, history=pub.history())
    print(f"recommend: rolled back to {version.name}")
    return 0


def _refresh(job, pub, fingerprint, record):
    """The refresh, holding the publication's lock (module docstring, steps 1-6)."""
    conf = job.conf
    pub.prepare()
    current = pub.current()
    if current is not None and fingerprint is not None and current.meta.get("fingerprint") == fingerprint:
        record.write("unchanged", current=current.name, history=pub.history())
        print(f"recommend: {current.name} was made from the same input and configuration; nothing to do")
        return 0
    spark = job.spark()
    with job.step("read ratings"):
        train, test = _read(conf, spark)
        job.counts.update(train_ratings=train.count(), held_out_ratings=test.count())
    try:
        published = MaskedALSModel.load(current.uri("model")) if current is not None else None
        cold = _cold_start_reason(current, conf)
        if cold is not None:
            logger.info("recommend: training from a random start: %s", cold)
        with job.step("fit"):
            estimator = MaskedALS(**_als_params(conf), **_columns(conf))
            model = estimator.fitFrom(train, initialModel=published if cold is None else None)
        with job.step("evaluate"):
            new, recs = _evaluate(model, train, test, conf)
            old = _evaluate(published, train, test, conf)[0] if published is not None else None
        job.metrics.update(new=new, published=old)
        job.counts.update(users=model.count("user"), items=model.count("item"))
        extra = {"published_before": getattr(current, "name", None),
                 "warm_start": current.name if cold is None else None, "cold_start": cold}
        reasons = metric_gate(new, old, {m: conf["gate"][f"{m}_margin"] for m in conf["gate"]["metrics"]})
        if reasons:
            record.write("refused", reasons=reasons, current=current.name, **extra)
            raise JobRefused("; ".join(reasons) + f" (gate in {conf.source('gate.metrics')}); "
                             f"{current.name} stays published")
        with job.step("publish"):
            version = _publish(job, pub, model, recs, {"fingerprint": fingerprint, "layout": _layout(conf)}, extra)
    finally:
        train.unpersist()
        test.unpersist()
    record.write("published", current=version.name, history=pub.history(), **extra)
    error = f"held-out RMSE {new['rmse']:.4f}, " if "rmse" in new else ""
    print(f"recommend: published {version.name} ({error}NDCG@{conf['recommend']['top_n']} {new['ndcg']:.4f})")
    return 0


def _publish(job, pub, model, recs, meta, extra):
    """Publish the model, the recommendations and the run summary as the next version, once validated."""
    spark = job.spark()

    def validate(locate):
        validate_table(spark, locate("recommendations"), schema=recs.schema, rows=job.counts["users"],
                       numeric=["recommendations.rating"])

    return pub.publish(meta={**meta, "metrics": job.metrics["new"], "counts": job.counts}, models={"model": model},
                       tables={"recommendations": recs}, documents={"summary.json": job.summary("published", **extra)},
                       validate=validate)


def _arguments(parser):
    parser.add_argument("--rollback", action="store_true",
                        help="switch the publication back to the previous version and stop")


class Terminated(SystemExit):
    """SIGTERM (a scheduler's time limit): raised in the main thread so that the run cleans up (staging
    folder, lock) and writes its record; exits with code 143 (128 + SIGTERM) as an unhandled SIGTERM would."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)

    def __str__(self):
        return "terminated by SIGTERM"


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        return run_job("recommend", SCHEMA, refresh, argv, description=__doc__, add_arguments=_arguments)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
