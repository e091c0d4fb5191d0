"""Regenerate the figures of README.md and docs/ from the real datasets into docs/images/.

    SPARKNMF_DATA=../shared/data PYTHONPATH=. python docs/make_figures.py [--only iris|ap|movielens]

Everything runs on the driver without Spark (local multi-start runs), seeded,
so the same data give the same pictures:

* iris (4 measurements × 150 flowers, samples are columns), k = 3, 30 runs of
  ``bpp``: consensus map, basis map, coefficient map; rank survey k = 2..4 (k <= min(n, m) = 4) with
  30 runs per k and the randomised baseline;
* AssociatedPress (terms × documents), k = 5, ``bpp``: top terms per factor;
* MovieLens 100K (users × movies, ratings, unrated = 0), k = 12, ``bpp``:
  two factors of the movies against each other with well-known titles, and a
  Ward / Manhattan tree of those titles on the same two factors.

The movie titles come from ``u.item`` (latin-1, ``|``-separated), read here by
:func:`movie_titles` until the MovieLens loaders land in ``sparknmf.datasets``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sparknmf import multistart, nmf, plots
from sparknmf.analysis.survey import rank_survey
from sparknmf.datasets import data_dir, load_associated_press, load_iris
from sparknmf.errors import ConvergenceWarning

OUT = Path(__file__).resolve().parent / "images"
DPI = 100
IRIS_FEATURES = ["sepal length", "sepal width", "petal length", "petal width"]


def movie_titles(folder: Path) -> list[str]:
    """Titles of the 1682 movies of ``u.item``, in item-id order (ids 1..1682 without gaps)."""
    rows = [line.split("|") for line in (folder / "u.item").read_bytes().decode("latin-1").splitlines() if line]
    if [int(r[0]) for r in rows] != list(range(1, len(rows) + 1)):
        raise ValueError(f"{folder / 'u.item'}: item ids are not 1..{len(rows)} in order")
    return [r[1] for r in rows]


def movielens_matrix(folder: Path):
    """The users × movies rating matrix (943×1682, CSR) of ``u.data``; unrated entries are 0."""
    d = np.loadtxt(folder / "u.data", dtype=np.int64)
    return sp.csr_matrix((d[:, 2].astype(np.float64), (d[:, 0] - 1, d[:, 1] - 1)))


def iris_figures(base: Path):
    X, species = load_iris(base / "iris")
    V = X.T  # 4 measurements × 150 flowers
    fit = multistart(V, 3, nrun=30, algorithm="bpp", seed=1, mode="local")
    print("iris k=3:", {k: round(v, 3) for k, v in fit.summary(species).items() if isinstance(v, float)})
    plots.consensus_map(fit, labels=species, figsize=(7.5, 6), dpi=DPI,
                        title="iris: consensus of 30 runs (k = 3)", save=OUT / "iris_consensus.png")
    plots.basis_map(fit, features=IRIS_FEATURES, figsize=(5.5, 3.2), dpi=DPI,
                    title="iris: basis W (4 measurements × 3)", save=OUT / "iris_basis.png")
    plots.coef_map(fit, labels=species, figsize=(8, 3.6), dpi=DPI,
                   title="iris: coefficients H (3 × 150 flowers)", save=OUT / "iris_coef.png")
    survey = rank_survey(V, range(2, 5), nrun=30, labels=species, seed=1, algorithm="bpp", mode="local")
    plots.survey_plot(survey, dpi=DPI, figsize=(12, 5.6), title="iris: rank survey, 30 runs per k",
                      save=OUT / "iris_survey.png")


def ap_figures(base: Path):
    V, terms = load_associated_press(base / "associated_press")
    fit = nmf(V.T.tocsr(), 5, algorithm="bpp", seed=0)  # terms × documents
    plots.top_features(fit.W, terms, n=10, dpi=DPI, title="AssociatedPress: top terms of each factor (k = 5)",
                       save=OUT / "ap_top_terms.png")


def movielens_figures(base: Path, factors=(1, 8), shown=30):
    folder = base / "ml-100k"
    V, titles = movielens_matrix(folder), movie_titles(folder)
    fit = nmf(V, 12, algorithm="bpp", seed=0)
    H = fit.H  # 12 × 1682: movies in the columns
    # each factor named by its three heaviest movies
    factor_names = [f"factor {q + 1}: " + ", ".join(titles[i].rsplit(" (", 1)[0] for i in np.argsort(-H[q])[:3])
                    for q in range(H.shape[0])]
    ratings = np.diff(sp.csc_matrix(V).indptr)
    popular = np.flatnonzero(ratings >= 100)
    # well-known titles: rated by at least 100 users, those leaning furthest to either factor first
    priority = popular[np.argsort(-H[list(factors)][:, popular].max(axis=0), kind="stable")]
    plots.factor_scatter(H.T, factors, names=titles, annotate=priority[:60], factor_names=factor_names,
                         figsize=(9, 7.5), dpi=DPI, save=OUT / "movielens_factor_scatter.png",
                         title="MovieLens 100K: 1682 movies on two of 12 NMF factors (labels: rated by ≥ 100 users)")
    plots.factor_dendrogram(H.T[priority[:shown]], names=[titles[i] for i in priority[:shown]], factors=list(factors),
                            metric="cityblock", method="ward", dpi=DPI, figsize=(7, 6.2),
                            title="MovieLens 100K: Ward tree, Manhattan distance on the same two factors",
                            save=OUT / "movielens_dendrogram.png")


FIGURES = {"iris": iris_figures, "ap": ap_figures, "movielens": movielens_figures}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIGURES), action="append", help="regenerate only these figures")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    base = data_dir()
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name in args.only or FIGURES:
        start = time.perf_counter()
        FIGURES[name](base)
        print(f"{name}: {time.perf_counter() - start:.1f} s")
    for path in sorted(OUT.glob("*.png")):
        print(f"{path.relative_to(OUT.parent.parent)}  {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
