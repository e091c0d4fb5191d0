"""The walkthroughs of docs/walkthroughs.md, each one command: runs the jobs on the real data and refreshes their figures.

    SPARKNMF_DATA=../shared/data PYTHONPATH=. python docs/walkthroughs.py ap|movielens|iris [--out out]

Each walkthrough runs the jobs exactly as a user would (their ``main(argv)``
with the configuration files under conf/, in one Spark session), writes the
jobs' output folders under ``--out``, copies the figures shown in docs/walkthroughs.md to
docs/images/walkthrough_*.png and prints the tables shown there (Markdown).

* ``ap`` -- AssociatedPress topics: the first 20 documents, terms in at least
  10% of them, k = 4 by ``snmf/r``, 40 terms per topic (conf/topics.toml); then
  every document and term with k = 10 (conf/walkthroughs/ap_full.toml).
* ``movielens`` -- MovieLens 100K: masked ALS with biases trained on u1.base,
  RMSE on u1.test and top-10 recommendations published by the refresh job
  (conf/recommend.toml), run twice to show that a rerun publishes nothing new;
  then NMF with k = 19 of the movies × users ratings, the 20 heaviest movies per
  factor by title, factor 1 against factor 2, a dendrogram
  (conf/walkthroughs/movielens_nmf.toml).
* ``iris`` -- rank surveys k = 2, 3, 4 with 10 runs of ``lee`` and of
  ``snmf/r``: purity, entropy, dispersion, cophenetic; consensus, basis and
  coefficient maps (conf/rank_survey.toml + conf/walkthroughs/iris.toml).
"""  # noqa: E501  # line 1 is the one-line --help description (__doc__.splitlines()[0])

from __future__ import annotations

import argparse
import csv
import importlib
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


def job(name):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"jobs.{name}")


def run(name, confs, *overrides):
    """``python jobs/<name>.py conf/<confs> --set <overrides>`` through the job's ``main``; stops on failure."""
    argv = [str(ROOT / "conf" / c) for c in confs]
    for item in overrides:
        argv += ["--set", item]
    print(f"$ python jobs/{name}.py {' '.join(confs)} {' '.join('--set ' + o for o in overrides)}".rstrip(),
          file=sys.stderr)
    start = time.perf_counter()
    code = job(name).main(argv)
    if code:
        raise SystemExit(f"jobs/{name}.py failed with exit code {code}")
    print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)


def run_to(name, confs, out, *overrides):
    """:func:`run` a job that writes one output folder, replacing ``out``; returns it."""
    run(name, confs, f"output.path={out}", "output.overwrite=true", *overrides)
    return Path(out)


def copy(source: Path, name: str):
    target = IMAGES / f"walkthrough_{name}.png"
    shutil.copyfile(source, target)
    print(f"  figure {target.relative_to(ROOT)} ({target.stat().st_size // 1024} KB)", file=sys.stderr)


def top_terms(folder: Path, per_topic: int):
    rows = list(csv.DictReader((folder / "top_terms.csv").open(encoding="utf-8")))
    topics = {}
    for row in rows:
        topics.setdefault(int(row["factor"]), []).append(row["term"])
    return {q: terms[:per_topic] for q, terms in topics.items()}


def ap(out: Path):
    first = run_to("topics", ["topics.toml"], out / "topics-ap-20")
    full = run_to("topics", ["topics.toml", "walkthroughs/ap_full.toml"], out / "topics-ap-full")
    copy(first / "report" / "top_terms.png", "ap20_top_terms")
    copy(full / "report" / "top_terms.png", "ap_full_top_terms")
    for folder in (first, full):
        measures = json.loads((folder / "measures.json").read_text())
        print(f"\n{folder.name}: V {measures['shape'][0]} terms × {measures['shape'][1]} documents, "
              f"{measures['n_iter']} iterations, evar {measures['evar']:.3f}\n")
        print("| topic | terms, heaviest first |\n| --- | --- |")
        for q, terms in top_terms(folder, 40 if folder is first else 15).items():
            print(f"| {q} | {', '.join(terms)} |")


def movielens(out: Path):
    movielens_als(out / "movielens-recommend")
    movielens_nmf(out / "movielens-nmf")


def movielens_als(root: Path):
    import pyarrow.parquet as pq

    from sparknmf.datasets import load_movielens_items
    from sparknmf.pipeline.publish import Publication

    shutil.rmtree(root, ignore_errors=True)  # a new publication: the first run starts from random factors
    for _ in range(2):  # the second run finds this input and configuration published and does nothing
        run("recommend", ["recommend.toml"], f"publish.root={root}")
    version = Publication(root).current()
    published = json.loads((version.path / "summary.json").read_text())
    rerun = json.loads((root / "last_run.json").read_text())
    metrics, counts = version.meta["metrics"], version.meta["counts"]
    print(f"\n{version.name}: {counts['train_ratings']} ratings of {counts['users']} users and {counts['items']} "
          f"items (u1.base), {counts['held_out_ratings']} held out (u1.test); fit "
          f"{published['timings']['fit']:.1f} s; rerun: {rerun['status']}\n")
    print("| held-out RMSE | NDCG@10 | precision@10 | recall@10 | users with a held-out rating >= 4 |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {metrics['rmse']:.4f} | {metrics['ndcg']:.4f} | {metrics['precision']:.4f} | {metrics['recall']:.4f} "
          f"| {metrics['queries']} |")
    items = load_movielens_items()
    titles = dict(zip(items.column("item").to_pylist(), items.column("title").to_pylist()))
    recommendations = pq.read_table(version.path / "recommendations").to_pylist()
    user1 = next(row for row in recommendations if row["user"] == 1)
    print("\n| user 1's top 10 | predicted rating |\n| --- | --- |")
    for rec in user1["recommendations"]:
        print(f"| {titles[rec['item']]} | {rec['rating']:.2f} |")


def movielens_nmf(folder: Path):
    run_to("topics", ["walkthroughs/movielens_nmf.toml"], folder)
    copy(folder / "report" / "scatter.png", "movielens_scatter")
    copy(folder / "report" / "dendrogram.png", "movielens_dendrogram")
    measures = json.loads((folder / "measures.json").read_text())
    print(f"\nV {measures['shape'][0]} movies × {measures['shape'][1]} users, {measures['n_iter']} iterations, "
          f"evar {measures['evar']:.3f}\n")
    print("| factor | the 20 heaviest movies |\n| --- | --- |")
    for q, titles in top_terms(folder, 20).items():
        print(f"| {q} | {'; '.join(titles)} |")


def iris(out: Path):
    tables = {}
    for algorithm in ("lee", "snmf/r"):
        name = algorithm.replace("/", "-")
        folder = run_to("rank_survey", ["rank_survey.toml", "walkthroughs/iris.toml"], out / f"iris-{name}",
                        f"nmf.algorithm={algorithm}")
        copy(folder / "report" / "survey.png", f"iris_{name}_survey")
        copy(folder / "report" / "consensus_k3.png", f"iris_{name}_consensus_k3")
        if algorithm == "lee":
            copy(folder / "report" / "basis_k3.png", "iris_lee_basis_k3")
            copy(folder / "report" / "coefficients_k3.png", "iris_lee_coef_k3")
        tables[algorithm] = json.loads((folder / "survey.json").read_text())
    print("\n| algorithm | k | purity | entropy | dispersion | cophenetic | randomised cophenetic |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for algorithm, rows in tables.items():
        shuffled = {r["k"]: r for r in rows if r["data"] == "randomized"}
        for r in (r for r in rows if r["data"] == "original"):
            print(f"| `{algorithm}` | {r['k']} | {r['purity']:.4f} | {r['entropy']:.4f} | {r['dispersion']:.4f} | "
                  f"{r['cophenetic']:.4f} | {shuffled[r['k']]['cophenetic']:.4f} |")


WALKTHROUGHS = {"ap": ap, "movielens": movielens, "iris": iris}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("walkthrough", choices=sorted(WALKTHROUGHS))
    parser.add_argument("--out", default=str(ROOT / "out"), help="folder for the jobs' outputs (default: out/)")
    args = parser.parse_args(argv)
    IMAGES.mkdir(parents=True, exist_ok=True)
    WALKTHROUGHS[args.walkthrough](Path(args.out))


if __name__ == "__main__":
    main()
