"""NMF update rules: one function per algorithm, one keyword-only signature.

Every rule updates the rows of a factor X (n_b×k) given

* ``gram`` -- the other factor's contribution to the normal equations
  (``YᵀY``, k×k, for the least-squares rules; ``1ᵀY``, k, for ``brunet``),
* ``cross`` -- the cross product for these rows (n_b×k): ``V Y`` for the
  least-squares rules, ``(V ⊘ XYᵀ) Y`` for ``brunet``,
* ``X`` -- the current rows (warm start, or the multiplicative base),
* ``side`` -- ``"W"`` or ``"H"``: which factor of ``V ≈ W H`` is updated
  (X is W, or Hᵀ; see :mod:`sparknmf.kernels.objective`),
* ``params`` -- :class:`RuleParams`.

Rules are written once for "update W given H"; H is the transposed problem.

Objectives (V n×m, W n×k, H k×m):

* ``bpp``, ``hals``, ``lee``: ½‖V − WH‖²_F.
* ``brunet``: D(V‖WH) = Σ v log(v/(WH)) − v + WH (generalised KL).
* ``snmf/r``: ½(‖V − WH‖² + η²‖W‖²_F + β Σ_j ‖H_{·j}‖₁²), sparse H.
* ``snmf/l``: ½(‖V − WH‖² + β Σ_i ‖W_{i·}‖₁² + η²‖H‖²_F), sparse W.

With per-entry weights (:data:`WEIGHTED_RULES`): ``bpp`` is exact weighted
ANLS and ``lee`` the weighted multiplicative update, both minimising
½ Σ w (v − WH)² + ½λ(‖W‖² + ‖H‖²).

References
----------
J. Kim and H. Park (2011), SIAM J. Sci. Comput. 33(6). https://doi.org/10.1137/110821172
A. Cichocki and A.-H. Phan (2009), IEICE Trans. E92-A(3), 708-721 (HALS).
https://doi.org/10.1587/transfun.E92.A.708
D. D. Lee and H. S. Seung (2001), NIPS 13, 556-562 (multiplicative updates).
J.-P. Brunet et al. (2004), PNAS 101(12), 4164-4169. https://doi.org/10.1073/pnas.0308531101
H. Kim and H. Park (2007), Bioinformatics 23(12), 1495-1502 (SNMF/R, SNMF/L).
https://doi.org/10.1093/bioinformatics/btm134
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import ThreadpoolController

from sparknmf.kernels.nnls import nnls_bpp
from sparknmf.kernels.objective import FROBENIUS, KL, Statistic
from sparknmf.kernels.rowsolve import solve_nnls
from sparknmf.kernels.weighted import WEIGHTED_LS, WEIGHTED_MU, unpack_equations

__all__ = ["DEFAULT_ALGORITHM", "UPDATE_RULES", "WEIGHTED_RULES", "Rule", "RuleParams", "half_step_block",
           "hals_sweeps", "one_blas_thread", "resolve_algorithm", "update_block"]

EPS = float(np.finfo(np.float64).eps)
_BLAS = ThreadpoolController()  # finds the BLAS libraries once; limiting is then cheap


def one_blas_thread():
    """Context manager: BLAS on one thread, for many small calls (see :func:`update_block`)."""
    return _BLAS.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class RuleParams:
    """Numeric parameters of the update rules.

    eta : float
        SNMF: the dense factor's L2 penalty is η²‖·‖²_F (as Kim & Park's and
        R NMF's code apply it).  Resolved to ``max(V)`` when the user gives
        a negative value.
    beta : float
        SNMF: weight of the squared L1 norms of the sparse factor.
    eps : float
        Floor of the multiplicative and HALS updates (avoids zero locking
        and division by zero).
    sweeps : dict
        HALS: the most sweeps per update of each side ``{"W": .., "H": ..}``
        (accelerated HALS, Gillis & Glineur 2012): the cross product is the
        expensive part, so it is reused while a sweep still changes X by
        more than ``sweep_delta`` times the first sweep's change.
    sweep_delta : float
    lam : float
        Weighted rules: L2 weight λ, the objective gains ½λ(‖W‖² + ‖H‖²) so
        that rows with few observed entries stay defined.
    """

    eta: float = 0.0
    beta: float = 0.01
    eps: float = EPS
    sweeps: dict = field(default_factory=lambda: {"W": 1, "H": 1})
    sweep_delta: float = 0.1
    lam: float = 0.0


def hals_sweeps(shape, nnz: int, k: int, alpha: float = 1.0) -> dict:
    """Sweeps per HALS update so that they cost about ``alpha`` times the cross product.

    Updating W (n×k) costs ``nnz·k + m·k²`` for ``V Hᵀ`` and ``H Hᵀ`` and
    ``n·k²`` per sweep; the ratio ρ gives ``1 + ⌊alpha·ρ⌋`` sweeps (Gillis &
    Glineur 2012, with nnz in place of n·m for sparse V).  H likewise.
    """
    n, m = shape
    rho_w = nnz / (n * k) + m / n
    rho_h = nnz / (m * k) + n / m
    return {"W": 1 + int(alpha * rho_w), "H": 1 + int(alpha * rho_h)}


def _update_bpp(*, gram, cross, X, side, params):
    """ANLS: exact NNLS for every row, ``min_X ‖X Yᵀ − V‖² s.t. X ≥ 0``."""
    return nnls_bpp(gram, cross.T, init=X.T).T


_HALS_CHUNK_BYTES = 1 << 20  # rows of X swept together: about 1 MB of X, which stays in cache for all k columns


def _update_hals(*, gram, cross, X, side, params):
    """HALS sweeps: each column of X in turn is the exact minimiser with the others fixed.

    Up to ``params.sweeps[side]`` sweeps reuse one cross product.  Rows are
    independent problems, so each row stops on its own once a sweep changes
    it by less than ``sweep_delta`` times its first sweep did: a row's result
    depends only on that row, never on which other rows share its block
    (the factors do not depend on the block grid).  Rows are swept in chunks
    of about 1 MB, every sweep of a chunk before the next chunk, so that the
    chunk stays in cache.
    """
    X = np.array(X, order="F")  # columns contiguous: each step updates one column
    cross = np.asfortranarray(cross, dtype=X.dtype)
    n, k = X.shape
    chunk = max(1, _HALS_CHUNK_BYTES // (k * X.itemsize))
    columns = [(col, np.ascontiguousarray(gram[:, col], dtype=X.dtype), 1.0 / gram[col, col])
               for col in range(k) if gram[col, col] > 0]
    sweeps, limit = params.sweeps.get(side, 1), params.sweep_delta**2
    for start in range(0, n, chunk):
        Xc, Cc = X[start : start + chunk], cross[start : start + chunk]
        first = _hals_sweep(Xc, Cc, columns, params.eps)
        rows = np.flatnonzero(first > 0)  # a row that a whole sweep left alone is a fixed point
        for sweep in range(1, sweeps):
            if rows.size == Xc.shape[0]:
                change = _hals_sweep(Xc, Cc, columns, params.eps)
            else:  # the rows still moving, gathered
                Xa = np.asfortranarray(Xc[rows])
                change = _hals_sweep(Xa, np.asfortranarray(Cc[rows]), columns, params.eps)
                Xc[rows] = Xa
            moving = change > limit * first[rows]
            rows = rows[moving]
            if rows.size == 0:
                break
    return X


def _hals_sweep(X, C, columns, eps):
    """One HALS sweep over all columns of X (F order, in place); the squared change of each row."""
    new, diff = np.empty(X.shape[0], X.dtype), np.empty(X.shape[0], X.dtype)
    change = np.zeros(X.shape[0], X.dtype)
    for col, g, inverse in columns:
        old = X[:, col]
        np.matmul(X, g, out=new)  # new = max(eps, x + (c - X g) / g_jj), in place
        np.subtract(C[:, col], new, out=new)
        new *= inverse
        new += old
        np.maximum(new, eps, out=new)
        np.subtract(new, old, out=diff)
        diff *= diff
        change += diff
        old[:] = new
    return change


def _update_lee(*, gram, cross, X, side, params):
    """Lee-Seung multiplicative update for the Frobenius loss."""
    return np.maximum(X * cross / (X @ gram + params.eps), params.eps)


def _update_brunet(*, gram, cross, X, side, params):
    """Lee-Seung multiplicative update for the KL divergence (Brunet's form).

    ``gram`` is ``1ᵀY`` and ``cross`` is ``(V ⊘ XYᵀ) Y``.
    """
    return np.maximum(X * cross / np.maximum(gram, params.eps), params.eps)


def _snmf(sparse_side):
    """SNMF update: ANLS on the augmented problems of Kim & Park (2007).

    The sparse factor's Gram gains ``β 11ᵀ`` (squared L1 norms of its
    columns / rows), the dense factor's gains ``η² I``.
    """

    def update(*, gram, cross, X, side, params):
        k = gram.shape[0]
        if side == sparse_side:
            gram = gram + params.beta * np.ones((k, k))
        else:
            gram = gram + params.eta**2 * np.eye(k)
        return _update_bpp(gram=gram, cross=cross, X=X, side=side, params=params)

    return update


def _snmf_penalty(sparse_side):
    """½(η²‖dense‖²_F + β Σ ‖sparse column‖₁²) from the two Frobenius Grams."""

    def penalty(gram_w, gram_h, params):
        sparse, dense = (gram_h, gram_w) if sparse_side == "H" else (gram_w, gram_h)
        return 0.5 * (params.eta**2 * float(np.trace(dense)) + params.beta * float(sparse.sum()))

    return penalty


def _no_penalty(gram_w, gram_h, params):
    return 0.0


@dataclass(frozen=True)
class Rule:
    """An update rule, the statistic its pieces come from and its penalty.

    ``positive`` rules (multiplicative) need strictly positive factors: the
    loop floors their initial factors at ``eps``.
    """

    update: callable
    statistic: Statistic
    penalty: callable = _no_penalty
    positive: bool = False


def _update_weighted_anls(*, gram, cross, X, side, params):
    """Weighted ANLS: each row's own NNLS ``(G_i + λI) x = b_i``, batched (``cross`` packs G_i, b_i)."""
    grams, rhs = unpack_equations(cross)
    return solve_nnls(grams, rhs, params.lam, init=X).astype(X.dtype, copy=False)


def _update_weighted_mu(*, gram, cross, X, side, params):
    """Weighted multiplicative update (Wang, Kossenkov & Ochs 2006; R's ls-nmf), with L2 weight λ.

    ``cross`` holds ``(W ⊙ V) Y`` and ``(W ⊙ XYᵀ) Y`` side by side.
    """
    k = X.shape[1]
    return np.maximum(X * cross[:, :k] / (cross[:, k:] + params.lam * X + params.eps), params.eps)


def _l2_penalty(gram_w, gram_h, params):
    """½λ(‖W‖²_F + ‖H‖²_F) from the two Frobenius Grams."""
    return 0.5 * params.lam * (float(np.trace(gram_w)) + float(np.trace(gram_h)))


UPDATE_RULES = {
    "bpp": Rule(_update_bpp, FROBENIUS),
    "hals": Rule(_update_hals, FROBENIUS),
    "lee": Rule(_update_lee, FROBENIUS, positive=True),
    "brunet": Rule(_update_brunet, KL, positive=True),
    "snmf/r": Rule(_snmf("H"), FROBENIUS, _snmf_penalty("H")),
    "snmf/l": Rule(_snmf("W"), FROBENIUS, _snmf_penalty("W")),
}

DEFAULT_ALGORITHM = "auto"  # the default of NMF's algorithm Param, nmf() and multistart(): resolve_algorithm


def resolve_algorithm(algorithm: str, *, weighted: bool = False, multistart: bool = False) -> str:
    """The update rule that ``algorithm`` names: ``"auto"`` is resolved, any other name returned as is.

    ``"auto"`` is ``"hals"`` for one fit of ordinary (unweighted) V: from an
    NNDSVDa start it reached scikit-learn's objective in 0.3-0.5× its time on
    sparse and dense data (docs/benchmarks.md), where exact ANLS (``bpp``)
    took 0.9-1.0× on sparse data.  It is ``"bpp"`` for weighted V (``hals``
    has no weighted form here; weighted ANLS is exact) and for multi-start
    runs (their consensus, cophenetic and survey figures are those of exact
    ANLS from random starts, as before).
    """
    if algorithm != "auto":
        return algorithm
    return "bpp" if weighted or multistart else "hals"


# Rules for V with per-entry weights (uncertainties, missing entries): objective
# ½ Σ_ij w_ij (v_ij − (WH)_ij)² + ½λ(‖W‖² + ‖H‖²), see sparknmf.kernels.weighted.
WEIGHTED_RULES = {
    "bpp": Rule(_update_weighted_anls, WEIGHTED_LS, _l2_penalty),
    "lee": Rule(_update_weighted_mu, WEIGHTED_MU, _l2_penalty, positive=True),
}


def half_step_block(rule: Rule, params: RuleParams, side: str, gram_y, V, X, Y, *, update: bool = True,
                    data: bool = True):
    """One half-step on one block: the local backend, and a Spark task when q = 1.

    Parameters
    ----------
    V : ndarray or csr_matrix of shape (n_b, n_y)
        The data block in row orientation (``V`` for side W, ``Vᵀ`` for H).
    X : ndarray of shape (n_b, k)
        The rows being updated.
    Y : ndarray of shape (n_y, k)
        The other factor.
    update : bool
        ``False`` evaluates only (returns X unchanged).
    data : bool
        Whether to compute the data term (NaN otherwise).

    Returns
    -------
    X_new : ndarray of shape (n_b, k)
    gram : the statistic's Gram piece of ``X_new``
    data : float, the block's data term at the *incoming* (X, Y)
    """
    cross, term = rule.statistic.cross(V, X, Y, data=data)
    X_new, gram = update_block(rule, params, side, gram_y, cross, X, update=update)
    return X_new, gram, term


def update_block(rule: Rule, params: RuleParams, side: str, gram_y, cross, X, *, update: bool = True):
    """Apply ``rule`` to rows X (n_b×k) given the summed ``cross`` (n_b×k).

    The rules make many small BLAS calls (a matrix-vector product per HALS
    column, a k×k solve per pivoting group), which a multi-threaded BLAS
    only slows down (4× on a busy 2-core machine: threads spin for work
    too small to share), so they run with one BLAS thread.
    """
    if update:
        with one_blas_thread():
            X = rule.update(gram=gram_y, cross=cross, X=X, side=side, params=params)
    return X, rule.statistic.gram(X)
