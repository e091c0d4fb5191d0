"""The README's walkthroughs, each one command: runs the jobs on the real data and refreshes the README's figures.

    SPARKNMF_DATA=../shared/data PYTHONPATH=. python docs/walkthroughs.py ap|movielens|iris [--out out]

Each walkthrough runs the jobs exactly as a user would (their ``main(argv)``
with the configuration files under conf/, in one Spark session), writes the
jobs' output folders under ``--out``, copies the figures shown in README.md to
docs/images/walkthrough_*.png and prints the tables shown there (Markdown).

* ``ap`` -- AssociatedPress topics: the first 20 documents, terms in at least
  10% of them, k = 4 by ``snmf/r``, 40 terms per topic (conf/topics.toml); then
  every document and term with k = 10 (conf/walkthroughs/ap_full.toml).
* ``movielens`` -- MovieLens 100K: NMF with k = 19 of the movies × users
  ratings, the 20 heaviest movies per factor by title, factor 1 against factor
  2, a dendrogram (conf/walkthroughs/movielens_nmf.toml).
* ``iris`` -- rank surveys k = 2, 3, 4 with 10 runs of ``lee`` and of
  ``snmf/r``: purity, entropy, dispersion, cophenetic; consensus, basis and
  coefficient maps (conf/rank_survey.toml + conf/walkthroughs/iris.toml).
"""

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


def run(name, confs, out, *overrides):
    argv = [str(ROOT / "conf" / c) for c in confs] + ["--set", f"output.path={out}", "--set", "output.overwrite=true"]
    for item in overrides:
        argv += ["--set", item]
    print(f"$ python jobs/{name}.py {' '.join(confs)} {' '.join('--set ' + o for o in overrides)}".rstrip(),
          file=sys.stderr)
    start = time.perf_counter()
    code = job(name).main(argv)
    if code:
        raise SystemExit(f"jobs/{name}.py failed with exit code {code}")
    print(f"  {time.perf_counter() - start:.0f} s -> {out}", file=sys.stderr)
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
    first = run("topics", ["topics.toml"], out / "topics-ap-20")
    full = run("topics", ["topics.toml", "walkthroughs/ap_full.toml"], out / "topics-ap-full")
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
    folder = run("topics", ["walkthroughs/movielens_nmf.toml"], out / "movielens-nmf")
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
        folder = run("rank_survey", ["rank_survey.toml", "walkthroughs/iris.toml"], out / f"iris-{name}",
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
