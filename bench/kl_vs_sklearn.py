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
   starts.  First the loops alone: every scikit-learn fit (its own random
   start, tol=1e-4) against ``brunet`` from the same start until it reaches
   that fit's objective (to 1e-6), summed over the 40 runs.  Then whole surveys:
   ``multistart(V, k, nrun=10, algorithm="brunet", tol=1e-4)`` one run after
   another on the driver (``mode="local"``) and as Spark tasks
   (``mode="tasks"``, embedded ``local[*]``), consensus included, against the
   40 scikit-learn fits; printed with the best KL per rank of each.

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


def _brunet_to_target(V, k, init, target, max_iter=2000, W0=None, H0=None, slack=1e-9):
    """Seconds from the call until brunet's objective reaches ``target·(1 + slack)`` (the loop of ``nmf``)."""
    from sparknmf.decomposition.factorize import factorize
    from sparknmf.engine.local import LocalMatrix
    from sparknmf.engine.validation import as_matrix

    start = time.perf_counter()
    reached = {}

    def callback(iteration, elapsed, objective):
        if "t" not in reached and objective <= target * (1 + slack):
            reached.update(t=time.perf_counter() - start, iter=iteration)

    def stop(iteration, W, H):
        return "t" in reached

    fit = factorize(LocalMatrix(as_matrix(V)), k, algorithm="brunet", init=init, max_iter=max_iter, tol=0,
                    callback=callback, stop_check=stop, W0=W0, H0=H0)
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


def _sklearn_random_start(V, k, seed):
    """scikit-learn's own ``init="random"`` start (W, H) for seed ``seed``."""
    from sklearn.decomposition._nmf import _initialize_nmf

    return _initialize_nmf(V, k, init="random", random_state=seed)


def survey(ks=(2, 3, 4, 5), nrun=10):
    """Part 2: the same starts to the same objective, then whole multi-start surveys."""
    from sklearn.decomposition import NMF

    from sparknmf import multistart

    V, _ = _gene_expression()
    print(f"\n== rank survey, dense {V.shape[0]}x{V.shape[1]}, k={ks[0]}..{ks[-1]}, {nrun} runs per rank, KL")
    sk_time = ours_time = 0.0
    best_sk, missed = {}, []
    for k in ks:
        for s in range(nrun):
            W0, H0 = _sklearn_random_start(V, k, s)
            start = time.perf_counter()
            model = NMF(k, solver="mu", beta_loss="kullback-leibler", init="custom", tol=1e-4, max_iter=2000)
            model.fit_transform(V, W=W0.copy(), H=H0.copy())
            sk_time += time.perf_counter() - start
            target = model.reconstruction_err_**2 / 2
            best_sk[k] = min(best_sk.get(k, np.inf), target)
            start = time.perf_counter()
            seconds, _, final = _brunet_to_target(V, k, "custom", target, W0=W0, H0=H0, slack=1e-6)
            if seconds is None:  # counted whole: all 2000 iterations
                seconds = time.perf_counter() - start
                missed.append(f"k={k} run {s}: {final / target - 1:+.1e}")
            ours_time += seconds
    print(f"   same starts (scikit-learn's random ones), to within 1e-6 of scikit-learn's objective per run: "
          f"scikit-learn {sk_time:.2f}s, brunet {ours_time:.2f}s = {ours_time / sk_time:.2f}x"
          + (f"; not reached in 2000 iterations (all counted; final gap): {'; '.join(missed)}"
             if missed else ""))
    for mode in ("local", "tasks"):
        start = time.perf_counter()
        best = {k: multistart(V, k, nrun=nrun, algorithm="brunet", init="random", mode=mode, seed=0, tol=1e-4,
                              max_iter=2000).objectives.min() for k in ks}
        ours = time.perf_counter() - start
        print(f"   multistart(..., algorithm='brunet', mode={mode!r}) to its own tol=1e-4, consensus included: "
              f"{ours:.2f}s = {ours / sk_time:.2f}x scikit-learn; best D(V||WH) / scikit-learn's: "
              + ", ".join(f"k={k} {best[k] / best_sk[k]:.4f}" for k in ks))


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
