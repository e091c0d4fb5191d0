"""spark-submit job: rank survey of a matrix -> the survey table as CSV and JSON, a report with plots.

    sparknmf-rank-survey conf/local.toml conf/rank_survey.toml [--set survey.ks=[2,3,4] ...]
    sparknmf-rank-survey conf/rank_survey.toml --print-config | --dry-run
    python jobs/rank_survey.py ...                   # the same, in a checkout
    spark-submit --py-files dist/sparknmf-0.1.0.zip jobs/rank_survey.py conf/rank_survey.toml

For each k in ``survey.ks``, ``multistart.nrun`` runs from derived seeds
(:func:`sparknmf.rank_survey`), on V and, with ``survey.randomized``, on V
with the entries of each column permuted.  V is held on the driver (a
DataFrame input is collected).  Configuration: ``[input]``, ``[survey]``,
``[nmf]`` (the update rule and its settings), ``[multistart]`` (runs, where
they execute, Brunet's stopping rule, consensus limit), ``[output]``,
``[spark]``; every key is documented in conf/rank_survey.toml.

Output folder: ``survey.csv`` and ``survey.json`` (one row per (data, k):
cophenetic, dispersion, silhouettes, RSS, evar, sparseness, purity and
entropy with labels), ``summary.json`` and ``report/index.html`` (the survey
plot and table; with ``output.maps`` the consensus, basis and coefficient
maps of every k).
"""

import sys

from sparknmf.analysis.runs import ConnectivityStop
from sparknmf.analysis.survey import rank_survey
from sparknmf.pipeline.inputs import INPUT_SECTION
from sparknmf.pipeline.jobconf import Option
from sparknmf.pipeline.jobrun import multistart_section, nmf_section, output_section, run_job
from sparknmf.plots.rank import PANELS

SCHEMA = {
    "input": INPUT_SECTION,
    "survey": {
        "ks": Option("list[int]", doc="the ranks to survey, each in [2, min(n, m)]"),
        "randomized": Option("bool", True, "also survey V with each column's entries permuted (baseline)"),
    },
    "nmf": nmf_section(only=("algorithm", "init", "maxIter", "tol", "seed", "eta", "beta", "dtype", "timeLimit")),
    "multistart": multistart_section(defaults={"nrun": 30}),
    "output": output_section(
        maps=Option("bool", False, "the report also shows the consensus, basis and coefficient maps of every k"),
        measures=Option("list[str]", [], "panels of the survey plot ([] = every measure)", choices=tuple(PANELS)),
    ),
}


def survey(job):
    conf = job.conf
    out, data = job.start(driver=True)
    nmf, runs, output = conf["nmf"], conf["multistart"], conf["output"]
    stop = ConnectivityStop(runs["stop_checks"], runs["check_interval"]) if runs["stop_checks"] else None
    fits = {}

    def keep(name, k, fit):  # the fits of the original data, for the report's maps
        if name == "original":
            fits[f"k = {k}"] = fit

    with job.step("rank survey"):
        table = rank_survey(
            data.data, conf["survey"]["ks"], runs["nrun"], labels=data.labels, randomized=conf["survey"]["randomized"],
            seed=nmf["seed"], samples=runs["samples"],
            on_fit=keep if output["report"] and output["maps"] else None, algorithm=nmf["algorithm"], init=nmf["init"],
            max_iter=nmf["max_iter"], tol=nmf["tol"], time_limit=nmf["time_limit"] or None, eta=nmf["eta"],
            beta=nmf["beta"], dtype=nmf["dtype"], mode=runs["run_mode"], stop=stop,
            consensus_limit=runs["consensus_limit"], consensus_sample=runs["consensus_sample"], spark=job.spark())
    job.counts.update(rows=data.shape[0], columns=data.shape[1], fits=len(table) * runs["nrun"])
    with job.staged(out) as stage:
        table.write_csv(stage / "survey.csv")
        table.write_json(stage / "survey.json")
        if output["report"]:
            from sparknmf.plots.report import write_report

            with job.step("report"):
                names = None if data.row_ids is None else [str(v) for v in data.row_ids]
                write_report(stage / "report", survey=table, fits=fits, labels=data.labels, features=names,
                             measures=output["measures"] or None, parameters=conf.flat("input", "survey", "nmf",
                                                                                       "multistart"),
                             timings=job.timings,
                             title=f"Rank survey: {nmf['algorithm']}, {runs['nrun']} runs per k")
        job.finish(out)


def main(argv=None) -> int:
    return run_job("rank_survey", SCHEMA, survey, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
