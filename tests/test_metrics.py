"""Clustering measures against hand-computed values and slow plain-Python references."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from sparknmf.analysis import metrics


# ---------------------------------------------------------------- slow references (loops, straight from the formulas)
def _purity_entropy_reference(clusters, labels):
    """Kim & Park (2008) by counting with dictionaries."""
    n = len(clusters)
    classes = sorted(set(labels))
    counts = {}
    for c, l in zip(clusters, labels):  # noqa: E741  # l: class index, as C_l in Kim & Park
        counts.setdefault(c, {}).setdefault(l, 0)
        counts[c][l] += 1
    purity = sum(max(row.values()) for row in counts.values()) / n
    total = 0.0
    for row in counts.values():
        size = sum(row.values())
        total += sum(x * math.log2(x / size) for x in row.values() if x)
    return purity, -total / (n * math.log2(len(classes)))


def _kim_reference(W):
    """R NMF's extractFeatures(method='kim'), row by row."""
    n, k = W.shape
    scores = []
    for row in W:
        p = row / row.sum()
        scores.append(1 + sum(x * math.log2(x) for x in p if x > 0) / math.log2(k))
    scores = np.array(scores)
    med = np.median(scores)
    threshold = med + 3 * 1.4826 * np.median(np.abs(scores - med))
    selected = [i for i in range(n) if scores[i] >= threshold and W[i].max() >= np.median(W)]
    selected.sort(key=lambda i: -scores[i])
    return [[i for i in selected if int(np.argmax(W[i])) == q] for q in range(k)]


# ---------------------------------------------------------------- purity, entropy
def test_purity_entropy_hand_computed():
    clusters = [0, 0, 0, 1, 1, 1, 1]
    labels = ["a", "a", "b", "b", "b", "c", "c"]
    # clusters × classes: [[2, 1, 0], [0, 2, 2]]
    np.testing.assert_array_equal(metrics.contingency(clusters, labels), [[2, 1, 0], [0, 2, 2]])
    assert metrics.purity(clusters, labels) == pytest.approx(4 / 7)
    log3 = math.log2(3)
    assert metrics.entropy(clusters, labels) == pytest.approx((2 + 3 * log3) / (7 * log3))
    assert (metrics.purity(clusters, labels), metrics.entropy(clusters, labels)) == pytest.approx(
        _purity_entropy_reference(clusters, labels))


def test_purity_entropy_perfect_and_worst():
    labels = np.repeat([0, 1, 2], 4)
    assert metrics.purity(labels[::-1] + 10, labels) == 1.0  # cluster names do not matter
    assert metrics.entropy(labels[::-1] + 10, labels) == 0.0
    one_cluster = np.zeros(12, dtype=int)
    assert metrics.purity(one_cluster, labels) == pytest.approx(1 / 3)
    assert metrics.entropy(one_cluster, labels) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_purity_entropy_random_against_reference(seed):
    rng = np.random.default_rng(seed)
    clusters, labels = rng.integers(0, 4, 60), rng.integers(0, 3, 60)
    expected = _purity_entropy_reference(list(clusters), list(labels))
    assert (metrics.purity(clusters, labels), metrics.entropy(clusters, labels)) == pytest.approx(expected)


def test_labels_errors():
    with pytest.raises(ValueError, match="labels has 3 entries but there are 4 samples"):
        metrics.purity([0, 1, 0, 1], ["a", "b", "a"])
    with pytest.raises(ValueError, match="one class only"):
        metrics.entropy([0, 1, 0, 1], ["a"] * 4)
    with pytest.raises(ValueError, match="one-dimensional"):
        metrics.check_labels([[0, 1]], 2)


# ---------------------------------------------------------------- consensus measures
def test_dispersion_hand_computed():
    crisp = np.kron(np.eye(2), np.ones((3, 3)))
    assert metrics.dispersion(crisp) == 1.0
    assert metrics.dispersion(np.full((4, 4), 0.5)) == 0.0
    assert metrics.dispersion([[1, 0.5], [0.5, 1]]) == pytest.approx(0.5)  # (1 + 0 + 0 + 1) / 4


def test_cophenetic_nested_is_one():
    # an ultrametric consensus: {0,1} at 0.8, {2,3} at 0.6, the two groups at 0.2
    C = np.array([[1, .8, .2, .2], [.8, 1, .2, .2], [.2, .2, 1, .6], [.2, .2, .6, 1]])
    assert metrics.cophenetic_correlation(C) == pytest.approx(1.0)
    crisp = np.kron(np.eye(3), np.ones((2, 2)))
    assert metrics.cophenetic_correlation(crisp) == pytest.approx(1.0)


def test_cophenetic_hand_computed():
    # distances 1 − C: d01 = .2, d02 = .6, d12 = .8; UPGMA joins {0,1} at .2, then 2 at (.6 + .8)/2 = .7
    C = 1 - np.array([[0, .2, .6], [.2, 0, .8], [.6, .8, 0]])
    expected = np.corrcoef([.2, .7, .7], [.2, .6, .8])[0, 1]
    assert metrics.cophenetic_correlation(C) == pytest.approx(expected)


def test_cophenetic_undefined_is_nan():
    assert math.isnan(metrics.cophenetic_correlation(np.ones((5, 5))))
    assert math.isnan(metrics.cophenetic_correlation(np.eye(2)))


def test_consensus_clusters():
    C = np.array([[1, .9, .1, .0], [.9, 1, .2, .1], [.1, .2, 1, .8], [.0, .1, .8, 1]])
    clusters = metrics.consensus_clusters(C, 2)
    assert clusters[0] == clusters[1] != clusters[2] == clusters[3]


# ---------------------------------------------------------------- silhouettes
def test_silhouette_hand_computed():
    x = np.array([0.0, 1.0, 5.0, 6.0])
    D = np.abs(x[:, None] - x[None, :])
    # s = (5.5 − 1)/5.5, (4.5 − 1)/4.5, (4.5 − 1)/4.5, (5.5 − 1)/5.5
    expected = (4.5 / 5.5 + 3.5 / 4.5) / 2
    assert metrics.silhouette(D, [0, 0, 1, 1]) == pytest.approx(expected)
    assert metrics.silhouette(D, [0, 0, 0, 1]) == pytest.approx(np.mean([
        (6 - 3) / 6, (5 - 2.5) / 5, (1 - 4.5) / 4.5, 0.0]))  # a singleton scores 0
    assert math.isnan(metrics.silhouette(D, [1, 1, 1, 1]))


def test_silhouette_against_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    X = rng.random((30, 3))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    labels = rng.integers(0, 3, 30)
    assert metrics.silhouette(D, labels) == pytest.approx(
        sklearn_metrics.silhouette_score(D, labels, metric="precomputed"))


def test_factor_silhouettes_of_clean_clusters():
    H = np.array([[5, 4, 6, 0, .1, 0], [0, .1, 0, 5, 4, 6]], dtype=float)
    assert metrics.coefficient_silhouette(H) > 0.9
    assert metrics.basis_silhouette(H.T) == pytest.approx(metrics.coefficient_silhouette(H))
    assert metrics.coefficient_silhouette(H, index=[0, 1, 3, 4]) > 0.9


# ---------------------------------------------------------------- RSS, evar, sparseness
def test_rss_and_evar_hand_computed():
    V = np.array([[1.0, 2.0], [3.0, 4.0]])
    W, H = np.array([[1.0], [2.0]]), np.array([[1.0, 2.0]])
    # W H = [[1, 2], [2, 4]]: residual [[0, 0], [1, 0]]
    assert metrics.rss(V, W, H) == pytest.approx(1.0)
    assert metrics.rss(sp.csr_matrix(V), W, H) == pytest.approx(1.0)
    assert metrics.explained_variance(1.0, 30.0) == pytest.approx(1 - 1 / 30)


def test_rss_from_backend_pieces():
    from sparknmf.engine.local import LocalMatrix

    rng = np.random.default_rng(1)
    V, W, H = rng.random((7, 5)), rng.random((7, 2)), rng.random((2, 5))
    assert metrics.rss(LocalMatrix(V), W, H) == pytest.approx(np.sum((V - W @ H) ** 2))


def test_hoyer_sparseness_hand_computed():
    assert metrics.sparseness(np.array([[1.0], [0], [0], [0]])) == pytest.approx(1.0)
    assert metrics.sparseness(np.ones((4, 1))) == pytest.approx(0.0)
    assert metrics.sparseness(np.array([[1.0], [1], [0], [0]])) == pytest.approx(2 - math.sqrt(2))
    X = np.array([[1.0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]])  # columns 1, 0 and all-zero (left out)
    assert metrics.sparseness(X) == pytest.approx(0.5)


# ---------------------------------------------------------------- features
def test_feature_scores_hand_computed():
    W = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 1.0], [0.0, 0.0]])
    scores = metrics.feature_scores(W, "kim")
    expected_31 = 1 + (0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    np.testing.assert_allclose(scores, [1.0, 0.0, expected_31, 0.0])
    np.testing.assert_allclose(metrics.feature_scores(W, "max"), [1, 1, 3, 0])
    with pytest.raises(ValueError, match="method must be 'kim' or 'max'"):
        metrics.feature_scores(W, "mean")


def test_extract_features_max_rule_hand_computed():
    W = np.array([[3, 1], [2, 1], [1, 2], [0.5, 0.6], [1, 1]], dtype=float)
    selected = metrics.extract_features(W, "max")
    assert [s.tolist() for s in selected] == [[0, 1], [2]]


def test_extract_features_kim_rule_against_reference():
    rng = np.random.default_rng(3)
    W = 1 + 0.1 * rng.random((60, 3))
    W[[4, 17, 30]] = [[5, 0.01, 0.02], [0.01, 6, 0.01], [0.02, 0.02, 4]]
    W[[8, 50]] = [[7, 0.5, 0.01], [0.01, 0.01, 3]]
    got = [s.tolist() for s in metrics.extract_features(W, "kim")]
    assert got == _kim_reference(W)
    assert got == [[4, 8], [17], [50, 30]]  # by decreasing score within each factor


# ---------------------------------------------------------------- predict, assignments
def test_predict_with_probabilities():
    W = np.array([[1.0, 0.0], [0.2, 0.8], [0.0, 0.0]])
    H = np.array([[3.0, 1.0, 0.0], [1.0, 1.0, 2.0]])
    clusters, prob = metrics.predict(W, H)
    np.testing.assert_array_equal(clusters, [0, 0, 1])  # a tie goes to the first factor
    np.testing.assert_allclose(prob, [0.75, 0.5, 1.0])
    clusters, prob = metrics.predict(W, H, samples="rows")
    np.testing.assert_array_equal(clusters, [0, 1, 0])
    np.testing.assert_allclose(prob[:2], [1.0, 0.8])
    assert math.isnan(prob[2])
    with pytest.raises(ValueError, match="samples must be 'columns' or 'rows'"):
        metrics.assignments(W, H, "cols")


def test_silhouette_widths_per_sample():
    D = np.array([[0, 1, 4, 5], [1, 0, 4, 4], [4, 4, 0, 2], [5, 4, 2, 0]], dtype=float)
    widths = metrics.silhouette_widths(D, [0, 0, 1, 1])
    # sample 0: a = 1, b = (4 + 5) / 2 = 4.5
    assert widths[0] == pytest.approx(1 - 1 / 4.5)
    assert widths.mean() == pytest.approx(metrics.silhouette(D, [0, 0, 1, 1]))
    assert np.isnan(metrics.silhouette_widths(D, [3, 3, 3, 3])).all()


def test_consensus_linkage_is_the_tree_of_cophenetic_and_clusters():
    from scipy.cluster.hierarchy import fcluster

    C = np.kron(np.eye(2), np.ones((3, 3))) * 0.9 + 0.05
    np.fill_diagonal(C, 1.0)
    Z = metrics.consensus_linkage(C)
    assert Z.shape == (5, 4)
    np.testing.assert_array_equal(fcluster(Z, 2, "maxclust") - 1, metrics.consensus_clusters(C, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.consensus_linkage([[1.0]])
