"""Demo: NMF on an embedded Spark session finds planted parts and topics.

    python -m sparknmf.demo [--master local[*]] [--verbose]

1. A block-diagonal matrix (features × samples, three planted clusters of
   samples, :func:`sparknmf.datasets.block_diagonal`) goes to Spark as a
   DataFrame of coordinates; ``NMF(k=3).fit(df)`` runs on Spark and every
   sample lands in the cluster of its planted block (purity 1.00).
2. The local function :func:`sparknmf.nmf` (no Spark) finds the three topics
   of a few built-in sentences and prints the top terms of each.

No network, no data download; about 15-25 s on a 2-core machine, most of it
the start of Spark's JVM.  ``--verbose`` shows the library's per-iteration
log and Spark's own WARN lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import time
import warnings

import numpy as np

# Spark's console log for a quiet run: only errors, on stderr, as Spark would print them
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
# PySpark's gateway logs as a shell: at the root's level, Spark does not announce a default level of WARN
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""

# PySpark 4 warns on import when pandas >= 3 is installed; the demo uses no pandas
_PANDAS_NOTICE = "PySpark does not yet fully support pandas"

_SIZES, _FEATURES = (15, 15, 15), 30

_CORPUS = {
    "space": [
        "The telescope photographed a distant galaxy and its bright stars.",
        "Astronomers watched the planet pass across the face of its star.",
        "The rocket carried a probe into orbit around the moon.",
        "A new telescope in orbit measures the light of stars in a far galaxy.",
        "The probe sent images of the planet and its moon back to astronomers.",
        "The rocket launch put a telescope into orbit to study the star.",
    ],
    "cooking": [
        "Knead the dough, let it rise, then bake the bread in a hot oven.",
        "Simmer the tomato sauce with garlic and basil, then pour it over the pasta.",
        "Whisk flour, butter and sugar, then bake the cake in the oven.",
        "Season the sauce with garlic, salt and pepper and serve it with pasta.",
        "Bread dough needs flour, water, salt and yeast.",
        "Melt the butter, add sugar and flour, and bake the cake until golden.",
    ],
    "football": [
        "The striker scored a late goal and the team won the match.",
        "The goalkeeper saved a penalty in the final minutes of the match.",
        "The league leaders lost at home after the referee sent off their striker.",
        "Fans cheered as the team scored a second goal before half time.",
        "The coach picked a new goalkeeper for the league match.",
        "A penalty from the striker gave the team a win over the league leaders.",
    ],
}
_STOPWORDS = {
    "a", "across", "add", "after", "and", "around", "as", "at", "back", "before", "for", "from", "gave", "in", "into",
    "it", "its", "let", "new", "of", "off", "over", "put", "the", "their", "then", "to", "until", "with",
}


def _quiet_spark_config() -> tuple:
    """Session settings that keep Spark's console to errors: a log4j2 file at level ERROR, no progress bar,
    no web UI (whose port search logs a WARN when another Spark application holds 4040)."""
    handle, path = tempfile.mkstemp(prefix="sparknmf-demo-log4j2-", suffix=".properties")
    with os.fdopen(handle, "w") as file:
        file.write(_LOG4J2)
    return {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{path}",
            "spark.ui.showConsoleProgress": False, "spark.ui.enabled": False}, path


def _ignore_pandas_notice():
    """Hide PySpark's pandas-version FutureWarning in the driver and (through the environment the JVM hands on)
    in the Python workers; every other warning still shows."""
    warnings.filterwarnings("ignore", message=re.escape(_PANDAS_NOTICE), category=FutureWarning)
    rule = f"ignore:{_PANDAS_NOTICE}:FutureWarning"
    current = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{current},{rule}" if current else rule


def _progress(label):
    """A callback that rewrites one status line on a terminal (and prints nothing otherwise)."""
    if not sys.stdout.isatty():
        return None

    def show(iteration, elapsed, objective):
        print(f"\r   {label}: iteration {iteration:3d}, objective {objective:.6g}, {elapsed:5.2f} s", end="",
              flush=True)

    return show


def _clear_progress():
    if sys.stdout.isatty():
        print("\r\033[K", end="", flush=True)


def _in_order(values, ids, size):
    """Rows of ``values`` in positional order 0..size-1 (a fitted model keeps its rows in id order)."""
    if ids is None:
        return values
    out = np.zeros((size,) + values.shape[1:], values.dtype)
    out[np.asarray(ids.to_numpy(zero_copy_only=False), dtype=np.int64)] = values
    return out


def _purity(clusters, labels) -> float:
    """Fraction of samples in the majority planted class of their cluster."""
    return sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters)) / labels.size


def _letters(clusters):
    """Cluster numbers as letters A, B, C ... in order of first appearance."""
    order = {c: chr(ord("A") + i) for i, c in enumerate(dict.fromkeys(clusters.tolist()))}
    return "".join(order[c] for c in clusters.tolist())


def _heat_map(V, rows_per_line):
    """One text line per ``rows_per_line`` features, one character per sample: '#' high, '+' middle, '.' low."""
    bands = V.reshape(-1, rows_per_line, V.shape[1]).mean(axis=1) / V.max()
    return ["".join("#" if x > 0.4 else "+" if x > 0.15 else "." for x in band) for band in bands]


def planted_parts(spark, progress):
    """Part 1: the clusters of a block-diagonal matrix, found by NMF on Spark."""
    import pyarrow as pa

    from sparknmf import NMF
    from sparknmf.datasets import block_diagonal

    V, labels = block_diagonal(_SIZES, features=_FEATURES, seed=0)
    n, m = V.shape
    rows, cols = np.nonzero(V)
    frame = spark.createDataFrame(pa.table({"row": rows, "col": cols, "value": V[rows, cols]}))
    print(f"1. Planted parts: V is {n} features x {m} samples, {len(_SIZES)} blocks of {_SIZES[0]} samples "
          f"('#' high, '.' background)")
    for line in _heat_map(V, _FEATURES // (2 * len(_SIZES))):
        print(f"     {line}")
    start = time.perf_counter()
    model = NMF(k=len(_SIZES), init="nndsvd", maxIter=200, tol=1e-4).fitWith(
        frame, callback=progress and progress("NMF on Spark"))
    seconds = time.perf_counter() - start
    _clear_progress()
    H = _in_order(model.H.T, model.colIds, m).T
    clusters = np.argmax(H, axis=0)  # each sample's cluster: its largest coefficient
    print(f"   NMF(k={len(_SIZES)}).fit(df) on Spark: {rows.size} coordinates, {model.nIter} iterations, "
          f"{seconds:.1f} s (with the start of Spark's Python workers)")
    print(f"     planted block  {''.join(str(c + 1) for c in labels)}")
    print(f"     NMF cluster    {_letters(clusters)}")
    purity = _purity(clusters, labels)
    print(f"   purity {purity:.2f}" + (": every sample is in the cluster of its planted block" if purity == 1 else ""))
    return purity


def _document_terms():
    """The corpus as a terms × documents count matrix, its terms and each document's topic."""
    documents, topics = [], []
    for topic, sentences in _CORPUS.items():
        for sentence in sentences:
            words = [w for w in re.findall(r"[a-z]+", sentence.lower()) if w not in _STOPWORDS and len(w) > 2]
            documents.append(words)
            topics.append(topic)
    vocabulary = {w for words in documents for w in words}
    singular = {w: w[:-1] if w.endswith("s") and w[:-1] in vocabulary else w for w in vocabulary}
    documents = [[singular[w] for w in words] for words in documents]
    counts = {}
    for words in documents:
        for w in set(words):
            counts[w] = counts.get(w, 0) + 1
    terms = sorted(w for w, c in counts.items() if c >= 2)  # terms of at least two documents
    index = {w: i for i, w in enumerate(terms)}
    V = np.zeros((len(terms), len(documents)))
    for j, words in enumerate(documents):
        for w in words:
            if w in index:
                V[index[w], j] += 1
    return V, terms, topics


def topics_of_corpus(progress, top=6):
    """Part 2: the topics of the built-in sentences, found by the local :func:`sparknmf.nmf`."""
    from sparknmf import nmf

    V, terms, topics = _document_terms()
    k = len(_CORPUS)
    start = time.perf_counter()
    fit = nmf(V, k, init="nndsvd", max_iter=500, tol=1e-4, callback=progress and progress("nmf"))
    seconds = time.perf_counter() - start
    _clear_progress()
    print(f"2. Topics of {V.shape[1]} built-in sentences: nmf(V, k={k}) locally on {V.shape[0]} terms x "
          f"{V.shape[1]} documents, {fit.n_iter} iterations in {seconds:.2f} s")
    assigned = np.argmax(fit.H, axis=0)
    names = np.array(topics)
    for c in range(k):
        words = ", ".join(terms[i] for i in np.argsort(-fit.W[:, c], kind="stable")[:top])
        members = names[assigned == c]
        found = max(set(members), key=list(members).count) if members.size else "-"
        print(f"     topic {c + 1}: {words:<52} {members.size} sentences, "
              f"{np.sum(members == found)} about {found}")
    return _purity(assigned, np.unique(names, return_inverse=True)[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparknmf.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", default=None, help="Spark master URL of the embedded session (default local[*])")
    parser.add_argument("--verbose", action="store_true",
                        help="log every iteration (logger 'sparknmf' at INFO) and Spark's own WARN lines")
    args = parser.parse_args(argv)

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sparknmf").setLevel(logging.INFO if args.verbose else logging.WARNING)
    _ignore_pandas_notice()
    begin = time.perf_counter()

    import sparknmf
    from sparknmf.engine.session import get_session, is_connect

    config, log4j_file = ({}, None) if args.verbose else _quiet_spark_config()
    print(f"sparknmf {sparknmf.__version__} demo: starting an embedded Spark session ...", flush=True)
    try:
        spark = get_session(args.master, config=config)
    finally:
        if log4j_file:
            os.unlink(log4j_file)  # read once, when the JVM started
    if not args.verbose and not is_connect(spark):
        spark.sparkContext.setLogLevel("ERROR")
    print(f"   Spark {spark.version}, master {spark.conf.get('spark.master', '?')}, "
          f"ready in {time.perf_counter() - begin:.1f} s")
    progress = None if args.verbose else _progress
    purity = planted_parts(spark, progress)
    topic_purity = topics_of_corpus(progress)
    print(f"done in {time.perf_counter() - begin:.1f} s"
          + ("" if args.verbose else "; python -m sparknmf.demo --verbose shows every iteration"))
    return 0 if purity == 1.0 and topic_purity == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
