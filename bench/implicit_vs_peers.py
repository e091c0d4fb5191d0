"""MaskedALS(implicitPrefs=True) against MLlib ALS(implicitPrefs=True) and implicit's AlternatingLeastSquares.

All three run in the same process on the same 2 cores (one local[2] session; ``implicit`` with
num_threads=2), at the same rank, λ, α and number of iterations, with the same confidences
c = 1 + α·r: MLlib and MaskedALS are given α, ``implicit`` (which takes its stored values as the
confidence c = α'·r) the values 1 + α·r with α' = 1.  λ means what each library means by it:
MLlib scales it by each row's number of positive events (ALS-WR), ``implicit`` does not; MaskedALS runs
both ways (``regularization="weighted"`` against MLlib, ``"plain"`` against ``implicit``), each at
the λ of the peer it is compared with.

1. MovieLens 100K as implicit data (every rating an event, value = the rating), splits u1-u5 (needs
   SPARKNMF_DATA): the top 10 unseen items of every user (training events left out, for every library:
   MLlib's lists are made from its factors by the same top-N kernel, since it cannot filter), scored by
   ``sparknmf.ratings.evaluation.ranking_metrics`` against every held-out event: NDCG@10, precision@10,
   MAP@10; and the fit time (MaskedALS and MLlib from a cached DataFrame, their input checks included;
   ``implicit`` from a ready CSR matrix).  One warm-up fit of each on u1 first.
2. Synthetic events from bench/als_vs_mllib.py's generator at ``--scale`` (1.0 = 9M events; the
   default 0.1 fits this shared 2-core machine): seconds per iteration at each rank, as
   (fit with 1 + ``--iters`` iterations − fit with 1 iteration) / ``--iters``, so ingest and set-up cancel
   (after a warm-up fit of each).  ``ours_cg`` is MaskedALS with ``cgSteps=3``, the solver ``implicit`` uses.

Usage::

    SPARKNMF_DATA=../shared/data PYTHONPATH=$PWD python bench/implicit_vs_peers.py
    python bench/implicit_vs_peers.py --part movielens --ranks 10
    python bench/implicit_vs_peers.py --part synthetic --scale 0.1 --ranks 10 50

Figures are printed, ratios against each peer included (written to bench/results/implicit_vs_peers.json).
``implicit`` is a bench-only dependency (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: implicit's own threads take the cores (its advice)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from bench.als_vs_mllib import session, synthetic_ratings  # noqa: E402

LIBRARIES = ("mllib", "ours_weighted", "implicit", "ours_plain", "ours_cg")


def _csr(table, n, m, alpha):
    """Events as the users × items CSR of confidences 1 + α·r that ``implicit`` takes (float32)."""
    u = table.column("user").to_numpy()
    i = table.column("item").to_numpy()
    r = table.column("rating").to_numpy().astype(np.float64)
    return sp.csr_matrix(((1.0 + alpha * r).astype(np.float32), (u, i)), shape=(n, m))


def _recs_frame(spark, users, lists, scores):
    """A recommendations DataFrame ``(user, recommendations array<struct<item, rating>>)`` from index lists."""
    rows = [(int(u), [(int(i), float(s)) for i, s in zip(items, sc) if np.isfinite(s)])
            for u, items, sc in zip(users, lists, scores)]
    return spark.createDataFrame(rows, "user int, recommendations array<struct<item:int,rating:float>>")


def _top_unseen(U, V, seen, n):
    """Top n items per user from factors, leaving out ``seen`` (CSR users × items): sparknmf's top-N kernel."""
    from sparknmf.kernels.topn import top_n

    coo = seen.tocoo()
    return top_n(U, V, n, exclude=(coo.row.astype(np.int64), coo.col.astype(np.int64)))


def _timed(fit):
    start = time.perf_counter()
    out = fit()
    return out, time.perf_counter() - start


def _fits(rank, reg, alpha, iters, seed=0):
    """The four fitters: name -> (kind, estimator/model factory)."""
    from implicit.als import AlternatingLeastSquares
    from pyspark.ml.recommendation import ALS

    from sparknmf import MaskedALS

    ours = dict(implicitPrefs=True, rank=rank, alpha=alpha, maxIter=iters, tol=0.0, seed=seed)
    return {
        "mllib": lambda: ALS(implicitPrefs=True, rank=rank, regParam=reg["weighted"], alpha=alpha, maxIter=iters,
                             userCol="user", itemCol="item", ratingCol="rating", seed=seed),
        "ours_weighted": lambda: MaskedALS(**ours, regParam=reg["weighted"], regularization="weighted"),
        "implicit": lambda: AlternatingLeastSquares(factors=rank, regularization=reg["plain"], alpha=1.0,
                                                    iterations=iters, num_threads=2, random_state=seed,
                                                    dtype=np.float64),
        "ours_plain": lambda: MaskedALS(**ours, regParam=reg["plain"], regularization="plain"),
        # the same solver as implicit's default: 3 conjugate-gradient steps per row, warm-started
        "ours_cg": lambda: MaskedALS(**ours, regParam=reg["plain"], regularization="plain", cgSteps=3),
    }


def _factors(frame, count):
    rows = frame.collect()
    k = len(rows[0].features)
    out = np.zeros((count, k))
    for r in rows:
        out[r.id] = r.features
    return out


def movielens(spark, results, ranks, reg, alpha, iters, libraries, seeds=(0,)):
    import pyarrow as pa

    from sparknmf.datasets import data_dir, load_movielens_100k
    from sparknmf.ratings.evaluation import ranking_metrics

    folder = data_dir() / "ml-100k"
    n, m = 944, 1683  # MovieLens ids run from 1; index = id
    out = []
    for rank in ranks:
        rows = []
        runs = [("u1", seeds[0])] + [(split, seed) for seed in seeds for split in ("u1", "u2", "u3", "u4", "u5")]
        for split, seed in runs:  # the first u1 is the warm-up
            fits = {name: make for name, make in _fits(rank, reg, alpha, iters, seed).items() if name in libraries}
            train_t, test_t = load_movielens_100k(split, folder)
            train_t = pa.table({c: train_t.column(c) for c in ("user", "item", "rating")})
            csr = _csr(train_t, n, m, alpha)
            seen = (csr > 0).astype(np.float32)
            train = spark.createDataFrame(train_t).cache()
            test = spark.createDataFrame(test_t).select("user", "item").cache()
            train.count(), test.count()
            row = {"split": split, "rank": rank, "seed": seed}
            for name, make in fits.items():
                if name == "implicit":
                    model = make()
                    _, seconds = _timed(lambda: model.fit(csr, show_progress=False))
                    users = np.unique(csr.nonzero()[0])
                    lists, scores = model.recommend(users, csr[users], N=10, filter_already_liked_items=True)
                    recs = _recs_frame(spark, users, lists, scores)
                elif name == "mllib":
                    model, seconds = _timed(lambda: make().fit(train))
                    U, V = _factors(model.userFactors, n), _factors(model.itemFactors, m)
                    users = np.unique(csr.nonzero()[0])
                    lists, scores = _top_unseen(U[users], V, seen[users], 10)
                    recs = _recs_frame(spark, users, lists, scores)
                else:
                    model, seconds = _timed(lambda: make().fit(train))
                    recs = model.recommendForAllUsers(10)  # leaves the training events out (filterRated)
                metrics = ranking_metrics(recs, test, 10)
                row.update({f"{name}_fit_s": seconds, f"{name}_ndcg": metrics["ndcg"],
                            f"{name}_precision": metrics["precision"], f"{name}_map": metrics["map"]})
            train.unpersist(), test.unpersist()
            if rows:  # not the warm-up
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            rows.append(row)
        rows = rows[1:]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in ("split", "rank", "seed")}
        if len(seeds) > 1:  # how much the u1-u5 mean moves with the seed alone: the noise of a quality ratio
            for name in libraries:
                per_seed = [np.mean([r[f"{name}_ndcg"] for r in rows if r["seed"] == seed]) for seed in seeds]
                mean[f"{name}_ndcg_seed_std"] = float(np.std(per_seed, ddof=1))
        for ours, peer in (("ours_weighted", "mllib"), ("ours_plain", "implicit"), ("ours_cg", "implicit")):
            if ours not in libraries or peer not in libraries:
                continue
            for metric in ("ndcg", "precision", "map", "fit_s"):
                mean[f"{ours}_{metric}_vs_{peer}"] = mean[f"{ours}_{metric}"] / mean[f"{peer}_{metric}"]
        print(f"MovieLens 100K implicit, rank {rank}, u1-u5 mean:",
              json.dumps({k: round(v, 4) for k, v in mean.items()}), flush=True)
        out.append({"rank": rank, "splits": rows, "mean": mean})
    results["movielens"] = {"runs": out, "reg": reg, "alpha": alpha, "iterations": iters}


def synthetic(spark, results, scale, ranks, reg, alpha, iters, libraries, data=None):
    import pyarrow.parquet as pq

    folder = Path(data) if data else Path(tempfile.mkdtemp(prefix="implicit-synthetic-"))
    if not (folder / "train.parquet").exists():
        synthetic_ratings(folder, scale)
    table = pq.read_table(folder / "train.parquet")
    n = int(table.column("user").to_numpy().max()) + 1
    m = int(table.column("item").to_numpy().max()) + 1
    csr = _csr(table, n, m, alpha)
    train = spark.read.parquet(str(folder / "train.parquet")).cache()
    events = train.count()
    print(f"synthetic ({folder}): {events} events, {n} users × {m} items", flush=True)
    rows = []
    for rank in ranks:
        row = {"rank": rank}
        for name in libraries:
            seconds = {}
            for count in (1, 1, 1 + iters):  # the first: a warm-up
                make = _fits(rank, reg, alpha, count)[name]
                if name == "implicit":
                    _, seconds[count] = _timed(lambda: make().fit(csr, show_progress=False))
                else:
                    _, seconds[count] = _timed(lambda: make().fit(train))
            row[f"{name}_s_per_iter"] = (seconds[1 + iters] - seconds[1]) / iters
            row[f"{name}_fit_s"] = seconds[1 + iters]
        for ours, peer in (("ours_weighted", "mllib"), ("ours_plain", "implicit"), ("ours_cg", "implicit")):
            if ours in libraries and peer in libraries:
                row[f"{ours}_vs_{peer}"] = row[f"{ours}_s_per_iter"] / row[f"{peer}_s_per_iter"]
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    train.unpersist()
    results["synthetic"] = {"events": events, "users": n, "items": m, "scale": scale, "iterations": iters,
                            "runs": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("movielens", "synthetic", "all"), default="all")
    parser.add_argument("--ranks", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--iterations", type=int, default=15, help="MovieLens: iterations of every library")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="MovieLens: every split is fitted from each seed (the spread across seeds is printed)")
    parser.add_argument("--iters", type=int, default=5, help="synthetic: iterations timed")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--reg-weighted", type=float, default=0.1, help="λ of MLlib and MaskedALS 'weighted'")
    parser.add_argument("--reg-plain", type=float, default=30.0, help="λ of implicit and MaskedALS 'plain'")
    parser.add_argument("--scale", type=float, default=0.1, help="synthetic size relative to 9M events")
    parser.add_argument("--memory", default="6g", help="spark.driver.memory")
    parser.add_argument("--data", help="folder for the synthetic Parquet files (reused when present)")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES,
                        help="the fits to run (ours_cg: MaskedALS with cgSteps=3, as implicit's solver)")
    args = parser.parse_args()
    spark = session(args.memory)
    reg = {"weighted": args.reg_weighted, "plain": args.reg_plain}
    results = {"args": vars(args), "spark": spark.version}
    if args.part in ("movielens", "all"):
        movielens(spark, results, args.ranks, reg, args.alpha, args.iterations, args.libraries, args.seeds)
    if args.part in ("synthetic", "all"):
        synthetic(spark, results, args.scale, args.ranks, reg, args.alpha, args.iters, args.libraries, args.data)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"implicit_vs_peers_{args.part}.json").write_text(json.dumps(results, indent=1, default=str))
    spark.stop()


if __name__ == "__main__":
    main()
