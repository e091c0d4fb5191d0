"""spark-submit job: NMF of a matrix -> W and H as Parquet, measures as JSON, an optional HTML report.

    sparknmf-factorize conf/local.toml conf/factorize.toml [--set nmf.k=10 ...]
    sparknmf-factorize conf/factorize.toml --print-config | --dry-run
    python jobs/factorize.py ...                   # the same, in a checkout
    spark-submit --master yarn --py-files dist/sparknmf-0.1.0.zip "$(python -m sparknmf.pipeline.jobs factorize)" conf/cluster.toml conf/factorize.toml

Configuration: ``[input]`` (Matrix Market, dense text, Parquet/CSV coordinates
or a vector column; :mod:`sparknmf.pipeline.inputs`), ``[nmf]`` (the Params of
:class:`sparknmf.NMF`), ``[multistart]`` (``nrun > 1``: the best of several
runs with the clustering measures, :class:`sparknmf.MultiStartNMF`),
``[output]``, ``[spark]``; every key is documented in conf/factorize.toml.

The output folder is a saved model (``NMFModel.load(path)``, or
``MultiStartNMFModel.load`` when ``nrun > 1``): ``metadata/``, ``W/`` and
``H/`` as Parquet tables ``(index, id, features)`` -- W (n×k) one row per row
of V, H (k×m) one row per column (sample) of V -- plus ``measures.json``,
``summary.json`` (timings, counts, configuration) and ``report/index.html``.
With ``[spark] checkpoint_dir``, a single fit saves its loop state there and a
rerun of the same configuration resumes it.
"""  # noqa: E501  # --help prints this docstring verbatim: the spark-submit command stays one line

import sys

import pyarrow as pa

from sparknmf.analysis import MultiStartNMF
from sparknmf.analysis.metrics import fit_measures
from sparknmf.decomposition import NMF
from sparknmf.pipeline.inputs import INPUT_SECTION
from sparknmf.pipeline.jobrun import multistart_section, nmf_section, output_section, run_job
from sparknmf.pipeline.staging import write_json

SCHEMA = {
    "input": INPUT_SECTION,
    "nmf": nmf_section(),
    "multistart": multistart_section(defaults={"nrun": 1}),
    "output": output_section(),
}


def factorize(job):
    conf = job.conf
    out, data = job.start()
    params = {**conf.params("nmf"), **data.params}
    nrun = conf["multistart"]["nrun"]
    checkpoint = job.checkpoint_dir() if nrun == 1 else None
    with job.step("fit"):
        if nrun > 1:
            model = MultiStartNMF(**params, **conf.params("multistart")).fit(data.data)
        else:
            estimator = NMF(**params)
            if checkpoint:
                estimator.setCheckpointDir(str(checkpoint / f"factorize-{conf.digest('input', 'nmf')}"))
            model = estimator.fitWith(data.data, resume=bool(checkpoint))
    if data.row_ids is not None:
        model.rowIds = pa.array(data.row_ids)
    if data.col_ids is not None:
        model.colIds = pa.array(data.col_ids)
    n, m = model.W.shape[0], model.H.shape[1]
    measures = {"shape": [n, m], "k": model.rank, "algorithm": conf["nmf"]["algorithm"], "objective": model.objective,
                "n_iter": model.nIter, "converged": model.converged, "stop_reason": model.result.stop_reason,
                "elapsed": model.result.elapsed}
    measures.update(model.summary(data.labels) if nrun > 1 else
                    fit_measures(model.W, model.H, data.data if data.on_driver else None))
    job.counts.update(rows=n, columns=m)
    job.metrics.update({key: measures[key] for key in ("objective", "evar", "rss") if key in measures})
    with job.staged(out) as stage:
        with job.step("write outputs"):
            model.write().save(out.uri())
            write_json(stage / "measures.json", measures)
        if conf["output"]["report"]:
            from sparknmf.plots.report import write_report

            names = None if model.rowIds is None else [str(v) for v in model.rowIds.to_pylist()]
            with job.step("report"):
                write_report(stage / "report", fit=model, labels=data.labels, features=names,
                             parameters=conf.flat("input", "nmf", "multistart"), timings=job.timings,
                             title=f"NMF of {conf['input']['path']} (k = {model.rank})")
        job.finish(out, measures=measures)


def main(argv=None) -> int:
    return run_job("factorize", SCHEMA, factorize, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
