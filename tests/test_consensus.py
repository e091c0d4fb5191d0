"""Multi-start runs, the consensus matrix, Brunet's stopping rule, the Estimator; iris and AssociatedPress."""

import math

import numpy as np
import pyarrow as pa
import pytest

import sparknmf
from sparknmf.analysis import MultiFit, MultiStartNMF, MultiStartNMFModel, clustering, metrics, multistart
from sparknmf.analysis.consensus import consensus_matrix
from sparknmf.analysis.runs import ConnectivityStop, run_seeds
from sparknmf.datasets import block_diagonal


@pytest.fixture
def blocks():
    """30 features × 24 samples in 3 planted clusters of 8."""
    return block_diagonal((8, 8, 8), features=30, seed=4)


def _same_runs(a, b, exact=True):
    np.testing.assert_array_equal(a.assignments, b.assignments)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    compare = np.testing.assert_array_equal if exact else lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-9,
                                                                                                   atol=1e-12)
    compare(a.objectives, b.objectives)
    compare(a.W, b.W)
    compare(a.H, b.H)


# ---------------------------------------------------------------- consensus matrix
def test_consensus_hand_computed():
    C = consensus_matrix([[0, 0, 1], [0, 1, 1]])
    np.testing.assert_allclose(C.matrix, [[1, .5, 0], [.5, 1, .5], [0, .5, 1]])
    assert not C.sampled and C.index.tolist() == [0, 1, 2]


def test_identical_runs_give_crisp_consensus():
    C = consensus_matrix([[2, 2, 0, 1, 1]] * 6).matrix
    assert set(np.unique(C)) == {0.0, 1.0}
    assert metrics.dispersion(C) == 1.0 and metrics.cophenetic_correlation(C) == pytest.approx(1.0)


def test_identical_multistart_runs_give_crisp_consensus(blocks, monkeypatch):
    V, _ = blocks
    monkeypatch.setattr(clustering, "run_seeds", lambda seed, nrun: np.full(nrun, 7, dtype=np.int64))
    fit = multistart(V + 0.5, 4, nrun=4, mode="local", max_iter=20)  # every run from the same seed
    assert len(set(fit.objectives)) == 1
    C = fit.consensus().matrix
    assert set(np.unique(C)) <= {0.0, 1.0} and metrics.dispersion(C) == 1.0


def test_consensus_size_limit_and_seeded_sample():
    A = np.random.default_rng(0).integers(0, 3, (5, 50))
    with pytest.raises(ValueError, match=r"consensus over the size limit: 50 samples > consensus_limit=10"):
        consensus_matrix(A, limit=10)
    C = consensus_matrix(A, limit=10, sample=True, seed=3)
    again = consensus_matrix(A, limit=10, sample=True, seed=3)
    assert C.sampled and C.index.size == 10 and np.all(np.diff(C.index) > 0)
    np.testing.assert_array_equal(C.index, again.index)
    expected = np.random.default_rng([3, 7]).choice(50, 10, replace=False)
    np.testing.assert_array_equal(C.index, np.sort(expected))  # the documented draw
    full = consensus_matrix(A, limit=50).matrix
    np.testing.assert_allclose(C.matrix, full[np.ix_(C.index, C.index)])


# ---------------------------------------------------------------- runs
def test_run_seeds_derive_from_one_seed():
    seeds = run_seeds(5, 10)
    assert len(set(seeds.tolist())) == 10
    np.testing.assert_array_equal(run_seeds(5, 3), seeds[:3])
    assert not np.array_equal(run_seeds(6, 10), seeds)


def test_multistart_keeps_best_and_every_assignment(blocks):
    V, labels = blocks
    fit = multistart(V, 3, nrun=5, mode="local", seed=2, max_iter=50)
    assert fit.assignments.shape == (5, 24) and fit.mode == "local"
    assert fit.best.objective == fit.objectives.min()
    assert fit.best.seed == fit.seeds[np.argmin(fit.objectives)]
    for r in range(5):  # every run is the plain fit with its derived seed
        one = sparknmf.nmf(V, 3, algorithm="bpp", init="random", seed=int(fit.seeds[r]), max_iter=50)
        np.testing.assert_array_equal(fit.assignments[r], np.argmax(one.H, axis=0))
    again = multistart(V, 3, nrun=5, mode="local", seed=2, max_iter=50)
    _same_runs(fit, again)
    assert fit.rss == pytest.approx(np.sum((V - fit.W @ fit.H) ** 2))
    clusters, prob = fit.predict()
    np.testing.assert_array_equal(clusters, np.argmax(fit.H, axis=0))
    assert np.all((prob > 0) & (prob <= 1))


def test_samples_as_rows(blocks):
    V, labels = blocks
    fit = multistart(V.T, 3, nrun=3, mode="local", samples="rows", max_iter=50)
    assert fit.assignments.shape == (3, 24)
    assert fit.summary(labels)["purity"] == 1.0


def test_summary_has_every_measure(blocks):
    V, labels = blocks
    s = multistart(V, 3, nrun=6, mode="local", max_iter=100).summary(labels)
    for key in ("cophenetic", "dispersion", "purity", "entropy", "silhouette_coef", "silhouette_basis",
                "silhouette_consensus", "rss", "evar", "sparseness_basis", "sparseness_coef"):
        assert np.isfinite(s[key]), key
    assert s["purity"] == 1.0 and s["entropy"] == 0.0 and s["dispersion"] == 1.0
    assert s["cophenetic"] == pytest.approx(1.0)


def test_nmf_function_with_nrun(blocks):
    V, labels = blocks
    fit = sparknmf.nmf(V, 3, nrun=3, max_iter=50, seed=1)
    assert isinstance(fit, MultiFit) and fit.nrun == 3
    with pytest.raises(ValueError, match="W0, H0, callback, checkpoint_dir and resume are not supported"):
        sparknmf.nmf(V, 3, nrun=3, callback=print)


# ---------------------------------------------------------------- Brunet's stopping rule
def test_connectivity_checker_counts_unchanged_checks():
    check = ConnectivityStop(checks=2, interval=5).checker("columns")
    W = np.ones((2, 2))
    same = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert [check(i, W, same) for i in (0, 3, 5)] == [False, False, False]  # 3 is no check; at 5: 1 unchanged
    assert check(10, W, same[::-1]) is True  # factors swapped, same partition: 2 unchanged checks
    fresh = ConnectivityStop(checks=2, interval=5).checker("columns")
    changed = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert [fresh(0, W, same), fresh(5, W, same), fresh(10, W, changed), fresh(15, W, changed)] == [False] * 4


def test_connectivity_rule_stops_runs(blocks):
    V, _ = blocks
    fit = multistart(V, 3, nrun=3, algorithm="brunet", tol=0, max_iter=2000, mode="local",
                     stop=ConnectivityStop(checks=3, interval=10))
    assert fit.stop_reasons == ["stop_check"] * 3
    assert all(30 <= n < 2000 and n % 10 == 0 for n in fit.n_iters)
    with pytest.raises(ValueError, match="checks must be an integer >= 1"):
        ConnectivityStop(checks=0)


# ---------------------------------------------------------------- bad input, before any work
@pytest.mark.parametrize("kwargs, message", [
    ({"nrun": 0}, r"nrun must be an integer >= 1, got 0"),
    ({"k": 1}, r"k=1 is out of range: clustering needs 2 <= k <= min\(n, m\) = 24"),
    ({"k": 25}, r"k=25 is out of range"),
    ({"algorithm": "als"}, r"algorithm must be one of"),
    ({"init": "custom"}, r"init must be one of .* for multi-start runs"),
    ({"mode": "cluster"}, r"mode must be one of \['auto', 'local', 'tasks', 'distributed'\]"),
    ({"samples": "cols"}, r"samples must be 'columns' or 'rows'"),
    ({"consensus_limit": 10},
     r"consensus over the size limit: 24 samples > consensus_limit=10 .*consensus_sample=True"),
    ({"stop": 40}, r"stop must be a ConnectivityStop"),
])
def test_bad_input_raises_before_any_run(blocks, no_fits, kwargs, message):
    V, _ = blocks
    args = {"k": 3, "nrun": 2, "mode": "local", **kwargs}
    with pytest.raises(ValueError, match=message):
        multistart(V, **args)


def test_sampled_consensus_when_allowed(blocks):
    V, labels = blocks
    fit = multistart(V, 3, nrun=3, mode="local", consensus_limit=10, consensus_sample=True, max_iter=50)
    s = fit.summary(labels)
    assert s["consensus_samples"] == 10 and s["consensus_sampled"] is True


# ---------------------------------------------------------------- Spark: tasks and distributed runs
@pytest.mark.spark
def test_spark_tasks_equal_local_runs(spark, blocks):
    V, _ = blocks
    local = multistart(V, 3, nrun=5, mode="local", seed=11, algorithm="lee", max_iter=40, tol=0)
    tasks = multistart(V, 3, nrun=5, mode="tasks", seed=11, algorithm="lee", max_iter=40, tol=0, spark=spark)
    assert tasks.mode == "tasks"
    _same_runs(local, tasks)
    assert [f for f in tasks.stop_reasons] == local.stop_reasons
    assert multistart(V, 3, nrun=2, seed=11, max_iter=5, tol=0).mode == "tasks"  # auto with an active session


@pytest.mark.spark
def test_distributed_runs_equal_local_runs(spark, blocks):
    V, _ = blocks
    local = multistart(V, 3, nrun=2, mode="local", seed=5, max_iter=1, tol=0)
    distributed = multistart(V, 3, nrun=2, mode="distributed", seed=5, max_iter=1, tol=0, spark=spark, grid=(2, 1))
    assert distributed.mode == "distributed"
    _same_runs(local, distributed, exact=False)
    assert distributed.rss == pytest.approx(local.rss)


@pytest.mark.spark
def test_estimator_on_dataframe_and_persistence(spark, blocks, tmp_path):
    V, labels = blocks
    rows, cols = np.nonzero(V)
    frame = spark.createDataFrame(pa.table({"row": rows.astype(np.int64), "col": [f"s{j:02d}" for j in cols],
                                            "value": V[rows, cols]}))
    estimator = MultiStartNMF(k=3, nrun=4, maxIter=30, tol=0, seed=8)
    assert estimator.getNrun() == 4 and estimator.getRunMode() == "auto"
    model = estimator.fit(frame)
    reference = multistart(V, 3, nrun=4, mode="local", max_iter=30, tol=0, seed=8)
    _same_runs(model.runs, reference)
    assert model.runs.mode == "tasks"  # small DataFrame input: blocks collected, runs as tasks
    assert model.colIds.to_pylist() == [f"s{j:02d}" for j in range(24)]
    assert model.summary(labels)["purity"] == 1.0
    path = str(tmp_path / "multistart")
    model.save(path)
    loaded = MultiStartNMFModel.load(path)
    np.testing.assert_array_equal(loaded.assignments, model.assignments)
    np.testing.assert_array_equal(loaded.W, model.W)
    assert loaded.runs.stop_reasons == model.runs.stop_reasons and loaded.nrun == 4
    assert loaded.summary(labels) == pytest.approx(model.summary(labels))
    with pytest.raises(ValueError, match="invalid nrun=0"):
        MultiStartNMF(k=3, nrun=0).fit(frame)
    with pytest.raises(ValueError, match="checkpointDir is not supported for multi-start runs"):
        MultiStartNMF(k=3, nrun=2, checkpointDir=str(tmp_path)).fit(frame)


def test_estimator_defaults_match_signature():
    import inspect

    estimator = MultiStartNMF()
    for name, parameter in inspect.signature(MultiStartNMF.__init__).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            assert estimator.getOrDefault(name) == parameter.default, name


# ---------------------------------------------------------------- real data
def _dispersion_reference(assignments):
    """Consensus by comparing every pair in every run, then Σ 4(C − ½)² / n²."""
    nrun, n = assignments.shape
    C = sum(np.equal.outer(a, a).astype(float) for a in assignments) / nrun
    return float(np.sum(4 * (C - 0.5) ** 2) / n**2)


def _purity_entropy_reference(clusters, labels):
    n, classes = len(labels), sorted(set(labels))
    purity = entropy = 0.0
    for c in set(clusters.tolist()):
        members = [labels[j] for j in range(n) if clusters[j] == c]
        counts = [members.count(name) for name in classes]
        purity += max(counts)
        entropy -= sum(x * math.log2(x / len(members)) for x in counts if x)
    return purity / n, entropy / (n * math.log2(len(classes)))


@pytest.mark.data
@pytest.mark.spark
@pytest.mark.parametrize("algorithm", ["lee", "snmf/r"])
def test_iris_end_to_end(spark, data_dir, algorithm):
    from sparknmf.datasets import load_iris

    X, species = load_iris(data_dir / "iris")
    V = X.T  # 4 measurements × 150 flowers: samples are columns
    for k in (2, 3, 4):
        fit = multistart(V, k, nrun=10, algorithm=algorithm, seed=1, mode="tasks", spark=spark)
        s = fit.summary(species)
        best = fit.assignments[np.argmin(fit.objectives)]
        assert (s["purity"], s["entropy"]) == pytest.approx(_purity_entropy_reference(best, species))
        assert s["dispersion"] == pytest.approx(_dispersion_reference(fit.assignments))
        assert 0 < s["purity"] <= 1 and 0 <= s["entropy"] <= 1 and -1 <= s["cophenetic"] <= 1


@pytest.mark.data
def test_associated_press_terms_per_factor(data_dir):
    from sparknmf.datasets import load_associated_press

    V, terms = load_associated_press(data_dir / "associated_press")
    fit = sparknmf.nmf(V.T.tocsr(), 5, max_iter=100, seed=0)  # terms × documents: W holds the terms
    words = [[terms[i] for i in idx] for idx in metrics.extract_features(fit.W, "max")]
    assert len(words) == 5 and all(words), "the max rule keeps at least the top term of each factor"
    for idx, top in zip(words, np.argmax(fit.W, axis=0)):
        assert idx[0] == terms[top]
    kim = metrics.extract_features(fit.W, "kim")  # may select nothing: see README (threshold above 1 here)
    assert len(kim) == 5 and all(set(map(int, s)) <= set(range(len(terms))) for s in kim)
