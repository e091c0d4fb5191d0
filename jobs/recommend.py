"""spark-submit job: the scheduled recommendation refresh -- train, evaluate, gate, publish top-N for all users.

    python jobs/recommend.py conf/local.toml conf/recommend.toml [--set als.rank=50 ...]
    python jobs/recommend.py conf/recommend.toml --rollback
    spark-submit --py-files dist/sparknmf-0.1.0.zip jobs/recommend.py conf/cluster.toml conf/recommend.toml

A run, holding the publication's lock:

1. if the current publication was made from the same input files (by content) and configuration, it
   stops: nothing to do (reruns are idempotent);
2. reads the ratings and a held-out slice (``holdout.path``, or a seeded hash split of the input);
3. trains :class:`sparknmf.MaskedALS` on the rest, warm-started from the published model
   (``recommend.warm_start``; users and items it knows keep their parameters as a start) when that
   model has the same rank, biases and time terms, from a random start otherwise;
4. evaluates the new and the published model on the same held-out slice: RMSE of the predictions and
   NDCG@N of the top-N lists against the held-out ratings >= ``holdout.relevant``;
5. refuses to publish (exit code 3, the publication untouched) when a metric of ``gate.metrics`` is worse
   than the published model's by more than its margin;
6. writes the model and the top-N recommendations of every user (Parquet ``(user, recommendations
   array<struct<item, rating>>)``) to a staging folder, reads them back to validate (row count = users,
   schema, no null/NaN/inf score), renames the folder to the next version and switches ``CURRENT``
   (:class:`sparknmf.pipeline.publish.Publication`: a crash at any point leaves the previous publication
   readable); keeps the last ``publish.keep`` versions.

``--rollback`` switches ``CURRENT`` back to the previous version.  Every run writes its summary
(status ``published``, ``unchanged``, ``refused``, ``rolled back`` or ``failed``; timings, counts,
metrics of both models, versions) to ``publish.summary`` (default ``<root>/last_run.json``); a
published version also holds it as ``summary.json``.
Readers take ``<root>/versions/<CURRENT's version>/recommendations``.
"""

import logging
import shutil
import sys
from pathlib import Path

from sparknmf import MaskedALS, MaskedALSModel
from sparknmf.params import Interval
from sparknmf.pipeline.inputs import RATINGS_SECTION, check_ratings, content_digest, holdout_split, read_ratings
from sparknmf.pipeline.jobconf import Option, params_section
from sparknmf.pipeline.jobrun import JobRefused, run_job
from sparknmf.pipeline.publish import Publication, metric_gate, validate_table
from sparknmf.pipeline.staging import write_json
from sparknmf.ratings.evaluation import ranking_metrics, rmse

logger = logging.getLogger("sparknmf")

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
        "keep": Option("int", 5, "versions kept on disk (>= 2)", check=Interval(2, integer=True)),
        "summary": Option("path", "", "where every run writes its summary JSON ('' = <root>/last_run.json)"),
    },
}


def _columns(conf) -> dict:
    i = conf["input"]
    return {"userCol": i["user_col"], "itemCol": i["item_col"], "ratingCol": i["rating_col"],
            "timestampCol": i["timestamp_col"]}


def _layout(conf) -> dict:
    """What shapes a model's parameters: a published model warm-starts a fit only when this is the same."""
    als, timed = conf["als"], bool(conf["input"]["timestamp_col"])
    return {"rank": als["rank"], "biases": als["biases"], "time_bins": als["time_bins"] if timed else 0,
            "user_drift": als["user_drift"] and timed}


def _check(conf) -> None:
    """What the configuration files cannot say on their own, checked before any work."""
    check_ratings(conf)
    check_ratings(conf, "holdout")
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
    """Held-out RMSE and NDCG@N (precision, recall) of ``model``, and its top-N lists."""
    cols, n = _columns(conf), conf["recommend"]["top_n"]
    # a published model may have been saved with other column names or cold-start strategy
    for name, value in {**cols, "coldStartStrategy": conf["als"]["cold_start_strategy"]}.items():
        model.set(getattr(model, name), value)
    recs = model.recommendForAllUsers(n, exclude=train.select(cols["userCol"], cols["itemCol"])
                                      if conf["recommend"]["exclude_rated"] else None)
    relevant = test.filter(test[cols["ratingCol"]] >= conf["holdout"]["relevant"])
    ranking = ranking_metrics(recs, relevant, n, queryCol=cols["userCol"], targetCol=cols["itemCol"])
    metrics = {"rmse": rmse(model.transform(test), labelCol=cols["ratingCol"]), "ndcg": ranking["ndcg"],
               "precision": ranking["precision"], "recall": ranking["recall"], "queries": ranking["queries"]}
    return metrics, recs


def refresh(job):
    conf = job.conf
    root = conf["publish"]["root"]
    pub = Publication(root, keep=conf["publish"]["keep"])
    summary_path = Path(conf["publish"]["summary"] or Path(root) / "last_run.json")
    if job.args.rollback:
        with pub.lock():
            version = pub.rollback()
        write_json(summary_path, job.summary("rolled back", current=version.name, history=pub.history()))
        print(f"recommend: rolled back to {version.name}")
        return 0
    _check(conf)
    data = content_digest(conf["input"]["path"], conf["holdout"]["path"])
    fingerprint = None if data is None else f"{data}-{conf.digest('input', 'holdout', 'als', 'recommend')}"
    Path(root).mkdir(parents=True, exist_ok=True)
    with pub.lock():
        try:
            return _refresh(job, pub, fingerprint, summary_path)
        except Exception as err:
            if not isinstance(err, JobRefused):  # a refusal writes its own summary
                write_json(summary_path, job.summary("failed", error=f"{type(err).__name__}: {err}"))
            raise


def _refresh(job, pub, fingerprint, summary_path):
    """The refresh, holding the publication's lock (module docstring, steps 1-6)."""
    conf = job.conf
    pub.clean_staging()
    current = pub.current()
    if current is not None and fingerprint is not None and current.meta.get("fingerprint") == fingerprint:
        write_json(summary_path, job.summary("unchanged", current=current.name, history=pub.history()))
        print(f"recommend: {current.name} was made from the same input and configuration; nothing to do")
        return 0
    spark = job.spark()
    with job.step("read ratings"):
        train, test = _read(conf, spark)
        job.counts.update(train_ratings=train.count(), held_out_ratings=test.count())
    try:
        published = MaskedALSModel.load((current.path / "model").as_uri()) if current is not None else None
        cold = _cold_start_reason(current, conf)
        if cold is not None:
            logger.info("recommend: training from a random start: %s", cold)
        with job.step("fit"):
            estimator = MaskedALS(**conf.params("als"), **_columns(conf))
            model = estimator.fitFrom(train, initialModel=published if cold is None else None)
        with job.step("evaluate"):
            new, recs = _evaluate(model, train, test, conf)
            old = _evaluate(published, train, test, conf)[0] if published is not None else None
        job.metrics.update(new=new, published=old)
        job.counts.update(users=len(model.userIds), items=len(model.itemIds))
        extra = {"published_before": getattr(current, "name", None),
                 "warm_start": current.name if cold is None else None, "cold_start": cold}
        reasons = metric_gate(new, old, {m: conf["gate"][f"{m}_margin"] for m in conf["gate"]["metrics"]})
        if reasons:
            write_json(summary_path, job.summary("refused", reasons=reasons, current=current.name, **extra))
            raise JobRefused("; ".join(reasons) + f" (gate in {conf.source('gate.metrics')}); "
                             f"{current.name} stays published")
        with job.step("publish"):
            version = _publish(job, pub, model, recs, {"fingerprint": fingerprint, "layout": _layout(conf)}, extra)
    finally:
        train.unpersist()
        test.unpersist()
    write_json(summary_path, job.summary("published", current=version.name, history=pub.history(), **extra))
    print(f"recommend: published {version.name} (held-out RMSE {new['rmse']:.4f}, NDCG@"
          f"{conf['recommend']['top_n']} {new['ndcg']:.4f})")
    return 0


def _publish(job, pub, model, recs, meta, extra):
    """Write model and recommendations to a staging folder, validate them, switch CURRENT to them."""
    spark = job.spark()
    stage = pub.stage()
    try:
        model.write().save((stage / "model").as_uri())
        recs.write.parquet((stage / "recommendations").as_uri())
        write_json(stage / "summary.json", job.summary("published", **extra))

        def validate(folder):
            validate_table(spark, (folder / "recommendations").as_uri(), schema=recs.schema,
                           rows=job.counts["users"], numeric=["recommendations.rating"])

        return pub.commit(stage, {**meta, "metrics": job.metrics["new"], "counts": job.counts}, validate=validate)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _arguments(parser):
    parser.add_argument("--rollback", action="store_true",
                        help="switch the publication back to the previous version and stop")


def main(argv=None) -> int:
    return run_job("recommend", SCHEMA, refresh, argv, description=__doc__, add_arguments=_arguments)


if __name__ == "__main__":
    sys.exit(main())
