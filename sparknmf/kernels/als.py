"""The masked ALS half-step on one block of ratings (numpy only, no Spark).

Model (Koren, Bell & Volinsky 2009; Koren 2009 for the time terms)::

    r̂_ui(t) = μ + b_u + α_u·dev_u(t) + b_i + b_i,bin(t) + w_uᵀ h_i

Each side (users, items) keeps one parameter matrix P (rows × width) whose
columns are ``[factor (k) | bias (1, optional) | extras (e)]``; the extras are
a user's drift coefficient α_u (``kind="drift"``, design column
``dev_u(t) = sign(t − t̄_u)·|t − t̄_u|^β`` in days) or an item's time-bin biases
b_i,1..B (``kind="bins"``, design columns the bin indicator of t).

Updating one side is a per-row ridge problem (:func:`~sparknmf.kernels.rowsolve.solve_rows`):
the design row of entry (u, i) for a user is ``[h_i, 1, dev_u(t)]``, its
target ``r − μ − b_i − b_i,bin(t)``; for an item ``[w_u, 1, e_bin(t)]`` and
``r − μ − b_u − α_u dev_u(t)``.  Written once, used for both sides: only
the two :class:`SideSpec` swap.

Loss over the observed entries only::

    Σ_(u,i) c_ui (r_ui − r̂_ui)² + Σ_u s_u (λ‖w_u‖² + λ_b‖β_u‖²) + Σ_i s_i (λ‖h_i‖² + λ_b‖β_i‖²)

with ``c_ui`` the rating weights (default 1), ``β`` a row's bias and extras,
and ``s`` = 1 (plain ridge) or the row's total weight (count-scaled, ALS-WR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparknmf.kernels.rowsolve import solve_rows

__all__ = [
    "EXTRA_KINDS", "Entries", "SideSpec", "drift", "half_step", "implicit_sums", "implicit_offset", "implicit_system",
    "implicit_apply",
    "predict",
]

EXTRA_KINDS = ("none", "drift", "bins")


def drift(days: np.ndarray, mean_days: np.ndarray, beta: float) -> np.ndarray:
    """Koren's ``dev_u(t) = sign(t − t̄_u)·|t − t̄_u|^β`` (days)."""
    delta = np.asarray(days, dtype=np.float64) - mean_days
    return np.sign(delta) * np.abs(delta) ** beta


@dataclass
class Entries:
    """The ratings of one block, CSR-shaped: rows of this side, columns of the other.

    indptr : ndarray of shape (b + 1,)
    cols : ndarray of shape (nnz,)  -- indices into the other side
    ratings : ndarray of shape (nnz,)
    weights : ndarray of shape (nnz,) or None
    bins : ndarray of int of shape (nnz,) or None  -- time bin of each rating
    dev : ndarray of shape (nnz,) or None  -- dev_u(t) of each rating
    """

    indptr: np.ndarray
    cols: np.ndarray
    ratings: np.ndarray
    weights: np.ndarray | None = None
    bins: np.ndarray | None = None
    dev: np.ndarray | None = None

    def __post_init__(self):
        nnz = self.cols.shape[0]
        if self.indptr[0] != 0 or self.indptr[-1] != nnz or self.ratings.shape[0] != nnz:
            raise ValueError(f"Entries: indptr must run from 0 to nnz={nnz} and ratings have nnz values")
        for name in ("weights", "bins", "dev"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != nnz:
                raise ValueError(f"Entries: {name} must have {nnz} values, got {value.shape[0]}")

    @property
    def rows(self) -> np.ndarray:
        """Local row index of every entry."""
        return np.repeat(np.arange(self.indptr.size - 1), np.diff(self.indptr))


@dataclass(frozen=True)
class SideSpec:
    """Columns of one side's parameter matrix: ``[factor (rank) | bias | extras]``.

    kind : "none", "drift" (one column α, design dev_u(t)) or "bins" (``bins``
    columns, design the indicator of the rating's time bin).
    """

    rank: int
    bias: bool = True
    kind: str = "none"
    bins: int = 0

    def __post_init__(self):
        if self.kind not in EXTRA_KINDS:
            raise ValueError(f"kind must be one of {EXTRA_KINDS}, got {self.kind!r}")
        if self.kind == "bins" and self.bins < 1:
            raise ValueError("kind='bins' needs bins >= 1")

    @property
    def extras(self) -> int:
        return {"none": 0, "drift": 1, "bins": self.bins}[self.kind]

    @property
    def width(self) -> int:
        return self.rank + int(self.bias) + self.extras

    def design(self, entries: Entries) -> np.ndarray | None:
        """The non-factor design columns of every entry (nnz × (bias + extras)), or None."""
        nnz = entries.cols.shape[0]
        parts = [np.ones((nnz, 1))] if self.bias else []
        if self.kind == "drift":
            parts.append(entries.dev[:, None])
        elif self.kind == "bins":
            parts.append(np.eye(self.bins)[entries.bins])
        return np.hstack(parts) if parts else None

    def contribution(self, P: np.ndarray, rows: np.ndarray, entries: Entries) -> np.ndarray:
        """This side's bias and extra terms in the prediction of every entry (nnz,).

        ``P`` is this side's parameter matrix and ``rows`` each entry's row in it.
        """
        out = np.zeros(rows.shape[0])
        col = self.rank
        if self.bias:
            out += P[rows, col]
            col += 1
        if self.kind == "drift":
            out += P[rows, col] * entries.dev
        elif self.kind == "bins":
            out += P[rows, col + entries.bins]
        return out


def half_step(own: SideSpec, other: SideSpec, entries: Entries, P_other: np.ndarray, *, mu: float, reg: float,
              bias_reg: float, scaled: bool, nonnegative: bool, init: np.ndarray | None = None, offset=None):
    """Update the rows of one side's P for one block of its ratings.

    Parameters
    ----------
    own, other : SideSpec
        Layouts of the side being updated and of the fixed side.
    entries : Entries
        The block's ratings (rows: this side, cols: indices into ``P_other``).
    P_other : ndarray of shape (m, other.width)
        The fixed side's parameters.
    mu : float
        Global mean rating.
    reg, bias_reg : float
        λ for the factor columns, λ_b for the bias and extra columns.
    scaled : bool
        Scale each row's ridge by its total rating weight (ALS-WR).
    nonnegative : bool
        Constrain the factor columns to be ≥ 0 (biases and extras stay free).
    init : ndarray of shape (b, own.width), optional
        The current rows (warm start for the non-negative solver).
    offset : ndarray of shape (nnz,), optional
        A further known part of each prediction (the implicit-feedback term).

    Returns
    -------
    P_new : ndarray of shape (b, own.width)
    loss : float
        Σ c (r − r̂)² over the block's entries at the new rows.
    penalty : float
        The block's ridge terms at the new rows.
    """
    k = own.rank
    target = entries.ratings - mu - other.contribution(P_other, entries.cols, entries)
    if offset is not None:
        target = target - offset
    regs = np.r_[np.full(k, reg), np.full(own.width - k, bias_reg)]
    free = np.r_[np.zeros(k, bool), np.ones(own.width - k, bool)]
    X, loss, penalty = solve_rows(
        entries.indptr, entries.cols, P_other[:, :k], target, regs, extra=own.design(entries),
        weights=entries.weights, scale_by_weight=scaled, nonnegative=nonnegative, free=free, init=init,
    )
    return X, float(loss.sum()), float(penalty.sum())


def predict(user: SideSpec, item: SideSpec, P_user, P_item, users, items, entries: Entries, mu: float) -> np.ndarray:
    """r̂ for the pairs (users[n], items[n]) with the time information of ``entries`` (nnz,)."""
    k = user.rank
    dot = np.einsum("nk,nk->n", P_user[users, :k], P_item[items, :k])
    return mu + user.contribution(P_user, users, entries) + item.contribution(P_item, items, entries) + dot


# ---------------------------------------------------------------------------- implicit feedback (SVD++)
#
# With implicit feedback a user's factor is w_u + z_u, z_u = |N(u)|^-½ Σ_{j∈N(u)} y_j, N(u) the items the
# user rated (Koren 2008).  Given everything else, Y (m×k) solves the ridge problem
#     min_Y Σ_(u,i) c_ui (e_ui − h_iᵀ z_u)² + λ_y ‖Y‖²_F,   e_ui = r_ui − r̂_ui without z_u,
# whose normal operator is Y ↦ Nᵀ D (G_u (D N Y)_u) + λ_y Y with N the n×m rated-indicator matrix,
# D = diag(|N(u)|^-½) and G_u = Σ_i c_ui h_i h_iᵀ.  It is solved by a few conjugate-gradient steps; each
# step needs one pass over the user blocks (:func:`implicit_apply`), summed over blocks.


def implicit_sums(entries: Entries, Y: np.ndarray) -> np.ndarray:
    """z_u = |N(u)|^-½ Σ_{j∈N(u)} y_j for the block's rows (b×k); N(u) = the row's entries."""
    counts = np.diff(entries.indptr)
    N = _indicator(entries, Y.shape[0])
    return np.asarray(N @ Y) / np.sqrt(np.maximum(counts, 1))[:, None]


def implicit_offset(entries: Entries, Z: np.ndarray, H: np.ndarray) -> np.ndarray:
    """h_iᵀ z_u for every entry (nnz,), Z (b×k) the block's implicit sums, H (m×k) the item factors."""
    return np.einsum("nk,nk->n", Z[entries.rows], H[entries.cols])


def _indicator(entries: Entries, m: int):
    import scipy.sparse as sp

    b = entries.indptr.size - 1
    return sp.csr_matrix((np.ones(entries.cols.shape[0]), entries.cols, entries.indptr), shape=(b, m))


def implicit_system(entries: Entries, H: np.ndarray, residual: np.ndarray):
    """One user block's pieces of the Y problem that do not depend on Y.

    Parameters
    ----------
    entries : Entries
        A user block (rows users, cols items).
    H : ndarray of shape (m, k)
        Item factors.
    residual : ndarray of shape (nnz,)
        e_ui, the rating minus its prediction without the implicit term.

    Returns
    -------
    grams : ndarray of shape (b, k, k)
        G_u = Σ_i c_ui h_i h_iᵀ.
    rhs : ndarray of shape (m, k)
        The block's part of the right-hand side ``Nᵀ D (Σ_i c_ui e_ui h_i)_u``.
    """
    from sparknmf.kernels.rowsolve import row_equations

    eq = row_equations(entries.indptr, entries.cols, H, residual, weights=entries.weights)
    scale = 1.0 / np.sqrt(np.maximum(np.diff(entries.indptr), 1))[:, None]
    return eq.grams, np.asarray(_indicator(entries, H.shape[0]).T @ (scale * eq.rhs))


def implicit_apply(entries: Entries, grams: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The block's part of the normal operator applied to v (m×k): ``Nᵀ D G (D N v)``."""
    N = _indicator(entries, v.shape[0])
    scale = 1.0 / np.sqrt(np.maximum(np.diff(entries.indptr), 1))[:, None]
    s = scale * np.asarray(N @ v)
    return np.asarray(N.T @ (scale * np.einsum("bij,bj->bi", grams, s)))
