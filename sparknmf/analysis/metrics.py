"""Quality measures of NMF clusterings, computed on the driver.

Everything here takes small, collected objects -- assignments (one cluster
index per sample), a consensus matrix C (s×s), the factors W (n×k) and
H (k×m) -- and never starts a Spark job.  Samples are the columns of V
(n×m) unless a function says otherwise.

Measures (R NMF names in brackets):

* :func:`cophenetic_correlation` [``cophcor``] -- average linkage on
  ``1 − C``; Pearson correlation between the cophenetic distances and
  ``1 − C`` over the pairs i < j (Brunet et al. 2004).
* :func:`dispersion` [``dispersion``] -- ``Σ_ij 4 (C_ij − ½)² / s²``
  (Kim & Park 2007); 1 for a crisp (0/1) consensus.
* :func:`purity`, :func:`entropy` [``purity``, ``entropy``] -- against known
  classes, exactly as Kim & Park (2008) with clusters c_q and classes C_l,
  n samples and l classes::

      purity  = (1/n) Σ_q max_l |c_q ∩ C_l|
      entropy = −1/(n log₂ l) Σ_q Σ_l |c_q ∩ C_l| log₂(|c_q ∩ C_l| / |c_q|)

  (0 log 0 = 0; purity 1 and entropy 0 mean the clusters are the classes).
* :func:`silhouette` -- mean silhouette width for a dissimilarity matrix;
  :func:`consensus_silhouette`, :func:`coefficient_silhouette` and
  :func:`basis_silhouette` apply it as R NMF does (``1 − C`` with the
  consensus clusters; ``1 − cor`` between the columns of H, or the rows of W,
  with the argmax clusters).
* :func:`rss` [``rss``], :func:`explained_variance` [``evar``]:
  ``‖V − WH‖²_F`` and ``1 − RSS / Σ v²``.
* :func:`sparseness` [``sparseness``] -- Hoyer (2004):
  ``(√n − ‖x‖₁/‖x‖₂) / (√n − 1)`` per column, averaged.
* :func:`feature_scores`, :func:`extract_features` [``featureScore``,
  ``extractFeatures``] -- Kim & Park's ("kim") and bioNMF's ("max") rules.
* :func:`predict` [``predict(x, prob=TRUE)``] -- cluster membership with
  the probability ``max / sum`` of each sample's coefficients.

One module on purpose (it is near 500 lines): R NMF's set of measures, each a
small pure function of collected objects, documented together in the list
above; cut by kind, the list would scatter over several files.

References
----------
J.-P. Brunet, P. Tamayo, T. R. Golub and J. P. Mesirov (2004), PNAS 101(12),
4164-4169. https://doi.org/10.1073/pnas.0308531101
H. Kim and H. Park (2007), Bioinformatics 23(12), 1495-1502.
https://doi.org/10.1093/bioinformatics/btm134
J. Kim and H. Park (2008), "Sparse nonnegative matrix factorization for
clustering", Georgia Tech CSE Technical Report GT-CSE-08-01.
P. O. Hoyer (2004), JMLR 5, 1457-1469.
P. Carmona-Saez et al. (2006), BMC Bioinformatics 7:78 (bioNMF, "max" rule).
https://doi.org/10.1186/1471-2105-7-78
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "assignments", "check_labels", "contingency", "purity", "entropy", "dispersion", "cophenetic_correlation",
    "consensus_linkage", "consensus_clusters", "silhouette", "silhouette_widths", "consensus_silhouette",
    "coefficient_silhouette", "basis_silhouette",
    "correlation_distance", "rss", "explained_variance", "sparseness", "feature_scores", "extract_features",
    "predict", "fit_measures",
]

_MAD_SCALE = 1.4826  # R's mad(): consistent estimator of σ for normal data


# ---------------------------------------------------------------- assignments and classes
def assignments(W, H, samples: str = "columns") -> np.ndarray:
    """Cluster of each sample: the index of its dominant factor.

    Parameters
    ----------
    W : ndarray of shape (n, k)
    H : ndarray of shape (k, m)
    samples : {"columns", "rows"}
        ``"columns"`` (default, R's convention): argmax of each column of H,
        an m-vector; ``"rows"``: argmax of each row of W, an n-vector.

    Returns
    -------
    ndarray of int32, of shape (m,) or (n,)
    """
    if samples == "columns":
        return np.argmax(np.asarray(H), axis=0).astype(np.int32)
    if samples == "rows":
        return np.argmax(np.asarray(W), axis=1).astype(np.int32)
    raise ValueError(f"samples must be 'columns' or 'rows', got {samples!r}")


def check_labels(labels, size: int, whom: str = "labels") -> np.ndarray:
    """Known classes as integer codes 0..l-1, checked: one per sample and at least two classes.

    Parameters
    ----------
    labels : sequence of shape (size,)
        Any hashable class names (strings, ints).
    size : int
        Number of samples.

    Returns
    -------
    ndarray of int64 of shape (size,)
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{whom} must be one-dimensional, got shape {arr.shape}")
    if arr.size != size:
        raise ValueError(f"{whom} has {arr.size} entries but there are {size} samples; give one class per sample")
    classes, codes = np.unique(arr, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"{whom} has one class only ({classes[0]!r}); purity and entropy need at least two classes")
    return codes.astype(np.int64)


def contingency(clusters, labels) -> np.ndarray:
    """Counts |c_q ∩ C_l|: clusters in rows, classes in columns.

    Parameters
    ----------
    clusters : array-like of shape (s,)
        Cluster of each sample (any hashable values).
    labels : array-like of shape (s,)
        Class of each sample.

    Returns
    -------
    ndarray of int64 of shape (number of clusters, number of classes)
    """
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape:
        raise ValueError(f"clusters and labels differ in length: {clusters.size} vs {labels.size}")
    _, q = np.unique(clusters, return_inverse=True)
    _, l = np.unique(labels, return_inverse=True)  # noqa: E741  # l: class index, as C_l in Kim & Park
    table = np.zeros((q.max() + 1, l.max() + 1), dtype=np.int64)
    np.add.at(table, (q, l), 1)
    return table


def purity(clusters, labels) -> float:
    """Kim & Park (2008): ``(1/n) Σ_q max_l |c_q ∩ C_l|``; see the module docstring."""
    codes = check_labels(labels, np.asarray(clusters).size)
    table = contingency(clusters, codes)
    return float(table.max(axis=1).sum() / table.sum())


def entropy(clusters, labels) -> float:
    """Kim & Park (2008): ``−1/(n log₂ l) Σ_q Σ_l |c_q ∩ C_l| log₂(|c_q ∩ C_l| / |c_q|)``.

    l is the number of classes; 0 log 0 = 0.
    """
    codes = check_labels(labels, np.asarray(clusters).size)
    table = contingency(clusters, codes).astype(np.float64)
    n, n_classes = table.sum(), table.shape[1]
    sizes = table.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(table > 0, table * np.log2(table / sizes), 0.0)
    return float(-terms.sum() / (n * np.log2(n_classes))) + 0.0  # no -0.0


# ---------------------------------------------------------------- consensus measures
def _check_square(C, whom="consensus"):
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] < 1:
        raise ValueError(f"{whom} must be a non-empty square matrix, got shape {C.shape}")
    return C


def dispersion(C) -> float:
    """``Σ_ij 4 (C_ij − ½)² / s²`` for a consensus matrix C (s×s); 1 when C is 0/1."""
    C = _check_square(C)
    return float(np.mean(4.0 * (C - 0.5) ** 2))


def _average_linkage(D):
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    condensed = squareform(np.asarray(D, dtype=np.float64), checks=False)
    return linkage(np.clip(condensed, 0.0, None), method="average"), condensed


def consensus_linkage(C) -> np.ndarray:
    """The average-linkage (UPGMA) tree of the distances ``1 − C``, as a scipy linkage matrix.

    The one tree behind :func:`cophenetic_correlation`, :func:`consensus_clusters`
    and the consensus map (:func:`sparknmf.plots.consensus_map` orders the
    samples by its leaves, ``scipy.cluster.hierarchy.leaves_list(Z)``).

    Parameters
    ----------
    C : ndarray of shape (s, s), s >= 2

    Returns
    -------
    Z : ndarray of shape (s − 1, 4)
    """
    C = _check_square(C)
    if C.shape[0] < 2:
        raise ValueError("consensus_linkage needs at least 2 samples, got a 1×1 consensus")
    return _average_linkage(1.0 - C)[0]


def cophenetic_correlation(C) -> float:
    """Cophenetic correlation of a consensus matrix C (s×s).

    Average linkage (UPGMA, as R's ``hclust(method="average")``) on the
    distances ``1 − C``; the result is the Pearson correlation between the
    cophenetic distances of that tree and ``1 − C`` over the pairs i < j.
    1 when the consensus is perfectly nested (an ultrametric, e.g. crisp).
    NaN when it is undefined: fewer than 3 samples, or all distances equal
    (e.g. every run puts every sample in one cluster).
    """
    from scipy.cluster.hierarchy import cophenet

    C = _check_square(C)
    if C.shape[0] < 3:
        return float("nan")
    Z, dist = _average_linkage(1.0 - C)
    coph = cophenet(Z)
    if np.ptp(dist) == 0 or np.ptp(coph) == 0:
        return float("nan")
    return float(np.corrcoef(coph, dist)[0, 1])


def consensus_clusters(C, k: int) -> np.ndarray:
    """Clusters of the consensus: the average-linkage tree of ``1 − C`` cut into (at most) k groups.

    Returns
    -------
    ndarray of int32 of shape (s,), values 0..k-1 (R: ``predict(fit, what="consensus")``).
    """
    from scipy.cluster.hierarchy import fcluster

    C = _check_square(C)
    if C.shape[0] == 1:
        return np.zeros(1, dtype=np.int32)
    return (fcluster(consensus_linkage(C), k, criterion="maxclust") - 1).astype(np.int32)


# ---------------------------------------------------------------- silhouettes
def silhouette_widths(D, clusters) -> np.ndarray:
    """Silhouette width of each sample for a dissimilarity matrix D (s×s) and a clustering.

    s(i) = (b_i − a_i) / max(a_i, b_i) with a_i the mean dissimilarity to the
    other members of i's cluster and b_i the smallest mean dissimilarity to
    another cluster; s(i) = 0 for a singleton cluster (as R's ``cluster``).
    All NaN with fewer than two clusters.

    Returns
    -------
    ndarray of shape (s,), values in [−1, 1]
    """
    D = _check_square(D, "dissimilarity")
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    codes = codes.ravel()
    if codes.size != D.shape[0]:
        raise ValueError(f"clusters has {codes.size} entries for a {D.shape[0]}×{D.shape[0]} dissimilarity")
    n_clusters = codes.max() + 1
    if n_clusters < 2:
        return np.full(codes.size, np.nan)
    onehot = np.zeros((codes.size, n_clusters))
    onehot[np.arange(codes.size), codes] = 1.0
    sums = D @ onehot  # Σ_j∈c D_ij
    sizes = onehot.sum(axis=0)
    own = sizes[codes]
    a = np.where(own > 1, sums[np.arange(codes.size), codes] / np.maximum(own - 1, 1), 0.0)
    means = sums / sizes
    means[np.arange(codes.size), codes] = np.inf
    b = means.min(axis=1)
    denom = np.maximum(a, b)
    return np.where((own > 1) & (denom > 0), (b - a) / np.where(denom > 0, denom, 1.0), 0.0)


def silhouette(D, clusters) -> float:
    """Mean silhouette width (:func:`silhouette_widths`); NaN with fewer than two clusters."""
    return float(np.mean(silhouette_widths(D, clusters)))


def correlation_distance(X) -> np.ndarray:
    """``1 − Pearson correlation`` between the columns of X (p×s); constant columns are at distance 1."""
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.corrcoef(X, rowvar=False)
    R = np.atleast_2d(np.nan_to_num(R, nan=0.0))
    D = 1.0 - R
    np.fill_diagonal(D, 0.0)
    return D


def consensus_silhouette(C, k: int) -> float:
    """Silhouette of the consensus clusters (:func:`consensus_clusters`) on ``1 − C``."""
    C = _check_square(C)
    return silhouette(1.0 - C, consensus_clusters(C, k))


def coefficient_silhouette(H, index=None) -> float:
    """Silhouette of the samples: ``1 − cor`` between columns of H (k×m), argmax clusters.

    ``index`` (optional) restricts it to those samples (see the consensus sample).
    """
    H = np.asarray(H)
    H = H if index is None else H[:, index]
    return silhouette(correlation_distance(H), np.argmax(H, axis=0))


def basis_silhouette(W, index=None) -> float:
    """Silhouette of the features: ``1 − cor`` between rows of W (n×k), argmax clusters.

    ``index`` (optional) restricts it to those features.
    """
    W = np.asarray(W)
    W = W if index is None else W[index]
    return silhouette(correlation_distance(W.T), np.argmax(W, axis=1))


# ---------------------------------------------------------------- fit quality
def rss(V, W, H) -> float:
    """Residual sum of squares ``‖V − WH‖²_F``.

    Parameters
    ----------
    V : ndarray, scipy sparse matrix, or a backend (LocalMatrix / BlockMatrix) of shape (n, m)
        A backend is read through its ``stats`` and one product ``V Hᵀ``:
        ``‖V‖² − 2⟨W, VHᵀ⟩ + ⟨WᵀW, HHᵀ⟩`` (no n×m product is formed).
    W : ndarray of shape (n, k)
    H : ndarray of shape (k, m)
    """
    W, H = np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    if isinstance(V, np.ndarray):
        return float(np.sum((V - W @ H) ** 2))
    if sp.issparse(V):
        sumsq, VHt = float(V.multiply(V).sum()), np.asarray(V @ H.T)
    else:
        sumsq, VHt = V.stats["sumsq"], V.multiply("W", H.T)
    value = sumsq - 2.0 * float(np.vdot(W, VHt)) + float(np.vdot(W.T @ W, H @ H.T))
    return max(value, 0.0)


def explained_variance(rss_value: float, sumsq: float) -> float:
    """``1 − RSS / Σ v²`` (R's ``evar``), from an RSS and the sum of squares of V."""
    return float(1.0 - rss_value / sumsq) if sumsq > 0 else float("nan")


def sparseness(X) -> float:
    """Hoyer's sparseness of each column of X (p×s), averaged over the columns.

    ``(√p − ‖x‖₁/‖x‖₂) / (√p − 1)``: 0 for a constant column, 1 for a column
    with a single non-zero.  All-zero columns are left out of the mean (NaN
    if every column is zero); p = 1 gives NaN.
    """
    X = np.abs(np.asarray(X, dtype=np.float64))
    p = X.shape[0]
    if p < 2:
        return float("nan")
    l1, l2 = X.sum(axis=0), np.sqrt((X**2).sum(axis=0))
    keep = l2 > 0
    if not keep.any():
        return float("nan")
    root = np.sqrt(p)
    return float(np.mean((root - l1[keep] / l2[keep]) / (root - 1.0)))


# ---------------------------------------------------------------- features
def feature_scores(W, method: str = "kim") -> np.ndarray:
    """Basis-specificity score of each feature (row of W, n×k).

    * ``"kim"`` (Kim & Park 2007): ``1 + Σ_q p_iq log₂ p_iq / log₂ k`` with
      ``p_iq = |W_iq| / Σ_q |W_iq|``; 1 for a feature on one factor only, 0
      for a feature spread evenly (0 for an all-zero row).
    * ``"max"``: the largest ``|W_iq|``.

    Returns
    -------
    ndarray of shape (n,)
    """
    W = np.abs(np.asarray(W, dtype=np.float64))
    if method == "max":
        return W.max(axis=1)
    if method != "kim":
        raise ValueError(f"method must be 'kim' or 'max', got {method!r}")
    k = W.shape[1]
    if k < 2:
        raise ValueError("feature_scores(method='kim') needs k >= 2 factors")
    totals = W.sum(axis=1, keepdims=True)
    P = np.divide(W, totals, out=np.zeros_like(W), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log2(P), 0.0)
    scores = 1.0 + plogp.sum(axis=1) / np.log2(k)
    scores[totals[:, 0] == 0] = 0.0
    return scores


def extract_features(W, method: str = "kim") -> list:
    """Features specific to each factor: a list of k index arrays (R's ``extractFeatures``).

    * ``"kim"`` (Kim & Park 2007): features whose score (:func:`feature_scores`)
      is at least ``median + 3·MAD`` of all scores (MAD scaled by 1.4826, as
      R's ``mad``) and whose largest entry is at least the median of all
      entries of W; each goes to the factor of its largest entry; ordered by
      decreasing score.
    * ``"max"`` (bioNMF, Carmona-Saez et al. 2006): for factor q, features by
      decreasing ``W_iq``, kept while ``W_iq`` is strictly larger than the
      feature's entries on every other factor.

    Parameters
    ----------
    W : ndarray of shape (n, k)

    Returns
    -------
    list of k ndarrays of int64 (possibly empty)
    """
    W = np.abs(np.asarray(W, dtype=np.float64))
    n, k = W.shape
    if method == "kim":
        scores = feature_scores(W, "kim")
        median = np.median(scores)
        threshold = median + 3.0 * _MAD_SCALE * np.median(np.abs(scores - median))
        best = np.argmax(W, axis=1)
        keep = (scores >= threshold) & (W.max(axis=1) >= np.median(W))
        order = np.flatnonzero(keep)[np.argsort(-scores[keep], kind="stable")]
        return [order[best[order] == q].astype(np.int64) for q in range(k)]
    if method != "max":
        raise ValueError(f"method must be 'kim' or 'max', got {method!r}")
    out = []
    for q in range(k):
        order = np.argsort(-W[:, q], kind="stable")
        others = np.delete(W[order], q, axis=1).max(axis=1) if k > 1 else np.full(n, -np.inf)
        losing = np.flatnonzero(others >= W[order, q])
        out.append(order[: losing[0] if losing.size else n].astype(np.int64))
    return out


def predict(W, H, samples: str = "columns"):
    """Cluster membership with probabilities (R's ``predict(fit, prob=TRUE)``).

    The cluster of a sample is its dominant factor; its probability is that
    coefficient divided by the sum of the sample's coefficients (NaN for an
    all-zero sample).

    Parameters
    ----------
    W : ndarray of shape (n, k)
    H : ndarray of shape (k, m)
    samples : {"columns", "rows"}
        Columns of V (coefficients H) or rows of V (basis W).

    Returns
    -------
    clusters : ndarray of int32 of shape (m,) or (n,)
    probabilities : ndarray of shape (m,) or (n,)
    """
    clusters = assignments(W, H, samples)
    X = np.abs(np.asarray(H if samples == "columns" else np.asarray(W).T, dtype=np.float64))
    totals = X.sum(axis=0)
    top = X[clusters, np.arange(X.shape[1])]
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = np.where(totals > 0, top / totals, np.nan)
    return clusters, prob


def fit_measures(W, H, V=None) -> dict:
    """The measures of one fit that need no runs: sparseness of W and H, and with V the RSS and evar.

    Parameters
    ----------
    W : ndarray of shape (n, k)
    H : ndarray of shape (k, m)
    V : ndarray, scipy sparse matrix or backend of shape (n, m), optional

    Returns
    -------
    dict with ``sparseness_basis``, ``sparseness_coef`` (+ ``rss``, ``evar`` with V).
    """
    out = {"sparseness_basis": sparseness(W), "sparseness_coef": sparseness(H)}
    if V is not None:
        residual = rss(V, W, H)
        if isinstance(V, np.ndarray):
            sumsq = float(np.sum(np.asarray(V, dtype=np.float64) ** 2))
        elif sp.issparse(V):
            sumsq = float(V.multiply(V).sum())
        else:
            sumsq = V.stats["sumsq"]
        out.update(rss=residual, evar=explained_variance(residual, sumsq))
    return out
