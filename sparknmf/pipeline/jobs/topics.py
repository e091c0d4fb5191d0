"""spark-submit job: topics of a term-document matrix -> top terms per topic, document-topic weights, report.

    sparknmf-topics conf/local.toml conf/topics.toml [--set nmf.k=10 ...]
    sparknmf-topics conf/topics.toml --print-config | --dry-run
    python jobs/topics.py ...                   # the same, in a checkout
    spark-submit --py-files dist/sparknmf-0.1.0.zip jobs/topics.py conf/topics.toml

V is terms × documents (documents are the samples, the columns of V; use
``input.transpose`` for a documents × terms file) and is assembled on the
driver.  ``[vocabulary]`` names the terms (one per line, or a delimited file
with an id and a name field); ``[select]`` keeps the first documents and the
terms present in a range of document fractions (:func:`sparknmf.analysis.topics.select_terms`);
``[nmf]`` sets the factorization.  Every key is documented in conf/topics.toml.

Output folder: the saved model (``NMFModel.load``; W one row per kept term,
H one row per kept document), ``top_terms.csv`` / ``top_terms.json``
(factor, rank, term, weight), ``document_topics/`` (Parquet: document,
weights, dominant topic, its share), ``measures.json``, ``summary.json`` and
``report/index.html`` (top terms, optionally two factors against each other
and a dendrogram of their most prominent terms, basis and coefficient maps).
"""

import sys

import pyarrow as pa
import pyarrow.csv as pacsv

from sparknmf.analysis.metrics import fit_measures
from sparknmf.analysis.topics import (
    document_topics,
    prominent_terms,
    read_vocabulary,
    select_terms,
    term_names,
    top_terms,
)
from sparknmf.decomposition import NMF
from sparknmf.pipeline.inputs import INPUT_SECTION, check_path, fetch
from sparknmf.pipeline.jobconf import Option
from sparknmf.pipeline.jobrun import nmf_section, output_section, run_job
from sparknmf.pipeline.staging import write_json
from sparknmf.plots import factor_dendrogram, factor_scatter, top_features

SCHEMA = {
    "input": INPUT_SECTION,
    "vocabulary": {
        "path": Option("path", "", "file naming the terms ('' = the row ids of V are the terms)"),
        "delimiter": Option("str", "", "'' = one name per line (id = line number); else the field separator"),
        "id_field": Option("int", 0, "1-based field holding the term id (0 = the line number)"),
        "name_field": Option("int", 1, "1-based field holding the term's name"),
        "encoding": Option("str", "utf-8", "text encoding of the file, e.g. latin-1"),
    },
    "select": {
        "first_documents": Option("int", 0, "keep only the first this many documents (0 = all)"),
        "min_document_fraction": Option("float", 0.0, "keep terms in at least this share of the kept documents"),
        "max_document_fraction": Option("float", 1.0, "keep terms in at most this share of the kept documents"),
    },
    "nmf": nmf_section(),
    "output": output_section(
        top_terms=Option("int", 10, "terms listed per topic"),
        scatter=Option("list[int]", [], "two topics (1-based) to draw against each other in the report ([] = none)"),
        labels=Option("int", 40, "scatter: most prominent terms labelled"),
        dendrogram=Option("int", 0,
                          "terms most prominent on the scatter's topics clustered in a dendrogram (0 = none)"),
        term_name=Option("str", "term", "what a row of V is called in the report's titles, e.g. \"movie\""),
    ),
}


def topics(job):
    conf = job.conf
    vocabulary, output = conf["vocabulary"], conf["output"]
    scatter = [q - 1 for q in output["scatter"]]
    if scatter and (len(scatter) != 2 or min(scatter) < 0 or max(scatter) >= conf["nmf"]["k"]):
        raise conf.error("output.scatter", f"needs two topics between 1 and nmf.k = {conf['nmf']['k']}")
    if vocabulary["path"]:
        check_path(conf, "vocabulary.path", file=True, storage=job.storage)
    out, data = job.start(driver=True)
    with job.step("read vocabulary"):
        n, m = data.shape
        term_ids = data.row_ids if data.row_ids is not None else list(range(1, n + 1))
        doc_ids = data.col_ids if data.col_ids is not None else list(range(1, m + 1))
        names = [str(t) for t in term_ids]
        if vocabulary["path"]:
            with fetch(job.spark(), vocabulary["path"]) as local:
                terms_read = read_vocabulary(local, delimiter=vocabulary["delimiter"], id_field=vocabulary["id_field"],
                                             name_field=vocabulary["name_field"], encoding=vocabulary["encoding"])
            names = term_names(terms_read, term_ids)
    with job.step("select"):
        select = conf["select"]
        V, terms, docs = select_terms(data.data, first_documents=select["first_documents"],
                                      min_document_fraction=select["min_document_fraction"],
                                      max_document_fraction=select["max_document_fraction"])
        names = [names[i] for i in terms]
        doc_ids = [doc_ids[j] for j in docs]
        labels = None if data.labels is None else [data.labels[j] for j in docs]
    with job.step("fit"):
        model = NMF(**conf.params("nmf")).fit(V)
    model.rowIds, model.colIds = pa.array([term_ids[i] for i in terms]), pa.array(doc_ids)
    measures = {"shape": list(V.shape), "k": model.rank, "objective": model.objective, "n_iter": model.nIter,
                "converged": model.converged, **fit_measures(model.W, model.H, V)}
    job.counts.update(terms=V.shape[0], documents=V.shape[1], terms_read=n, documents_read=m)
    job.metrics.update(objective=model.objective, evar=measures["evar"])
    table = top_terms(model.W, names, output["top_terms"])
    with job.staged(out) as stage:
        with job.step("write outputs"):
            model.write().save(out.uri())
            pacsv.write_csv(table, stage / "top_terms.csv")
            write_json(stage / "top_terms.json", table.to_pylist())
            job.spark().createDataFrame(document_topics(model.H, doc_ids)).write.parquet(out.uri("document_topics"))
            write_json(stage / "measures.json", measures)
        if output["report"]:
            with job.step("report"):
                report_topics(stage / "report", conf, model, names, labels, scatter, job.timings)
        job.finish(out, measures=measures)


def report_topics(folder, conf, model, names, labels, scatter, timings):
    from sparknmf.plots.report import Report

    output = conf["output"]
    term = output["term_name"]
    report = Report(folder, f"Topics of {conf['input']['path']} (k = {model.rank})")
    report.add_parameters(conf.flat("input", "select", "nmf"))
    report.add_figure("top_terms", top_features(model.W, names, n=min(output["top_terms"], 20),
                                                      title=f"Top {term}s of each topic (k = {model.rank})"),
                      f"The heaviest {term}s of each topic.")
    if scatter:
        prominent = prominent_terms(model.W, scatter, max(output["labels"], output["dendrogram"]))
        report.add_figure("scatter", factor_scatter(model.W, scatter, names=names,
                                                          annotate=prominent[: output["labels"]]),
                          f"{term.capitalize()}s on topics {scatter[0] + 1} and {scatter[1] + 1}, the most prominent "
                          "labelled.")
        if output["dendrogram"] >= 2:
            chosen = prominent[: output["dendrogram"]]
            tree = factor_dendrogram(model.W[chosen], names=[names[i] for i in chosen], factors=scatter,
                                           title=f"The {chosen.size} {term}s most prominent on topics {scatter[0] + 1} "
                                                 f"and {scatter[1] + 1}")
            report.add_figure("dendrogram", tree,
                              f"Ward tree (Manhattan distances) of those {term}s on the same two topics.")
    report.add_fit(model, labels=labels, features=names)
    report.add_timings(timings)
    report.write()


def main(argv=None) -> int:
    return run_job("topics", SCHEMA, topics, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
