"""sparknmf's ``brunet`` (KL) against scikit-learn's multiplicative KL updates, measured in the same run.

    python bench/kl_vs_sklearn.py [--repeat N] [--skip-survey] [--survey-only]

1. AssociatedPress (SPARKNMF_DATA), k = 20: scikit-learn
   ``NMF(solver="mu", beta_loss="kullback-leibler", init="nndsvda", tol=1e-4)``
   runs to convergence; its final generalised KL divergence D(V‖WH) is the
   target.  sparknmf's ``algorithm="brunet"`` (the same Lee-Seung KL update,
   R NMF's default method) from its own NNDSVDa start and from a random start:
   the time until its objective first reaches the target, from the call.
2. A rank survey on a dense 5000×38 matrix (the usual gene-expression shape:
   4 planted groups of samples), k = 2..5, 10 runs per rank from random
   starts: scikit-learn (one fit per run and rank, the same solver and tol)
   against ``multistart(V, k, nrun=10, algorithm="brunet", tol=1e-4)`` run
   one after another on the driver (``mode="local"``).  Printed: total time
   and the best KL per rank of each.

Ratios are against scikit-learn in the same run; times are medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def _sklearn_kl(V, k, init="nndsvda", seed=0):
    from sklearn.decomposition import NMF

    start = time.perf_counter()
    model = NMF(k, solver="mu", beta_loss="kullback-leibler", init=init, tol=1e-4, max_iter=2000,
                random_state=seed).fit(V)
    return time.perf_counter() - start, model.reconstruction_err_**2 / 2, model.n_iter_


def _brunet_to_target(V, k, init, target, max_iter=2000):
    """Seconds from the call until brunet's objective reaches ``target`` (the loop of ``nmf``, with a stop check)."""
    from sparknmf.decomposition.factorize import factorize
    from sparknmf.engine.local import LocalMatrix
    from sparknmf.engine.validation import as_matrix

    start = time.perf_counter()
    reached = {}

    def callback(iteration, elapsed, objective):
        if "t" not in reached and objective <= target * (1 + 1e-9):
            reached.update(t=time.perf_counter() - start, iter=iteration)

    def stop(iteration, W, H):
        return "t" in reached

    fit = factorize(LocalMatrix(as_matrix(V)), k, algorithm="brunet", init=init, max_iter=max_iter, tol=0,
                    callback=callback, stop_check=stop)
    return reached.get("t"), reached.get("iter"), fit.objective


def _median(measure, repeat):
    runs = [measure() for _ in range(repeat)]
    times = [r[0] if r[0] is not None else float("inf") for r in runs]
    return runs[int(np.argsort(times)[(repeat - 1) // 2])], times


def associated_press(repeat):
    from sparknmf.datasets import data_dir, load_associated_press

    folder = data_dir(required=False)
    if folder is None:
        print("AssociatedPress skipped: SPARKNMF_DATA is not set")
        return
    V = load_associated_press(folder / "associated_press")[0]
    (sk_time, target, sk_iter), sk_times = _median(lambda: _sklearn_kl(V, 20), repeat)
    print(f"== AssociatedPress 2246x10473 (k=20), KL: scikit-learn mu {sk_time:.2f}s "
          f"(runs: {', '.join(f'{t:.2f}' for t in sk_times)}), {sk_iter} iterations, D(V||WH) {target:.8g}")
    for init in ("nndsvda", "random"):
        (seconds, iters, final), times = _median(lambda: _brunet_to_target(V, 20, init, target), repeat)
        if seconds is None:
            print(f"   brunet from {init:8s}: did not reach the target (final {final:.8g})")
        else:
            print(f"   brunet from {init:8s}: {seconds:7.2f}s to target at iteration {iters:4d} = "
                  f"{seconds / sk_time:.2f}x scikit-learn (runs: {', '.join(f'{t:.2f}' for t in times)})")


def _gene_expression(seed=0, n=5000, m=38, groups=4):
    """Dense n×m: 4 planted groups of samples over partly shared metagenes, plus noise."""
    rng = np.random.default_rng(seed)
    W = rng.gamma(0.5, 1.0, (n, groups))
    labels = np.arange(m) % groups
    H = 0.1 * rng.random((groups, m))
    H[labels, np.arange(m)] += 1.0
    return W @ H + 0.05 * rng.random((n, m)), labels


def survey(ks=(2, 3, 4, 5), nrun=10):
    from sparknmf import multistart

    V, _ = _gene_expression()
    print(f"\n== rank survey, dense {V.shape[0]}x{V.shape[1]}, k={ks[0]}..{ks[-1]}, {nrun} runs per rank, KL")
    start = time.perf_counter()
    best_sk = {}
    for k in ks:
        best_sk[k] = min(_sklearn_kl(V, k, init="random", seed=s)[1] for s in range(nrun))
    sk_time = time.perf_counter() - start
    start = time.perf_counter()
    best = {k: multistart(V, k, nrun=nrun, algorithm="brunet", mode="local", seed=0, tol=1e-4,
                          max_iter=2000).objectives.min() for k in ks}
    ours = time.perf_counter() - start
    print(f"   scikit-learn mu: {sk_time:.2f}s; sparknmf multistart brunet (local): {ours:.2f}s = "
          f"{ours / sk_time:.2f}x scikit-learn")
    for k in ks:
        print(f"   k={k}: best D(V||WH) scikit-learn {best_sk[k]:.6g}, sparknmf {best[k]:.6g} "
              f"({best[k] / best_sk[k]:.4f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-survey", action="store_true")
    parser.add_argument("--survey-only", action="store_true")
    args = parser.parse_args()
    if not args.survey_only:
        associated_press(args.repeat)
    if not args.skip_survey:
        survey()


if __name__ == "__main__":
    main()
