"""Loss pieces: what one block of V contributes to an update and to the loss.

Every update works in *row orientation*: it updates the rows of a factor X
(n_x×k) given the other factor Y (n_y×k), with the data oriented so that
``V ≈ X Yᵀ`` (V is n_x×n_y).  Updating W uses ``V``, X = W, Y = Hᵀ; updating
H uses ``Vᵀ``, X = Hᵀ, Y = W.  One rule therefore serves both factors.

A statistic supplies, per block:

* ``gram(Y)`` -- what the other factor contributes to the normal equations
  (``YᵀY``, k×k, for least squares; the column sums ``1ᵀY``, k, for KL);
* ``cross(V, X, Y)`` -- the cross product for the rows of X (n_b×k) and a
  scalar *data term* at the current (X, Y);
* ``objective(data, v_stat, gram_x, gram_y)`` -- the loss of the current
  (X, Y), summed over blocks, without ever forming ``X Yᵀ``.

Frobenius:  ½‖V − XYᵀ‖² = ½(‖V‖² − 2⟨X, VY⟩ + ⟨XᵀX, YᵀY⟩).
KL (generalised Kullback-Leibler divergence):
``D(V‖XYᵀ) = Σ_{v≠0} v log(v / (XYᵀ)) − Σ v + (1ᵀX)·(1ᵀY)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["FROBENIUS", "KL", "Statistic", "v_statistic"]


def _support(V):
    """V as a sparse matrix plus the row and column index of each stored value.

    The indices follow the order of ``V.data``, so a matrix with the same
    structure and new values is ``V.copy()`` with ``data`` replaced.
    """
    if not sp.issparse(V):
        V = sp.csr_matrix(V)
    elif V.format not in ("csr", "csc"):
        V = V.tocsr()
    coo = V.tocoo(copy=False)
    return V, coo.row, coo.col


def _frobenius_gram(Y):
    return Y.T @ Y


def _frobenius_cross(V, X, Y):
    C = np.asarray(V @ Y)
    return C, float(np.vdot(X, C))


def _frobenius_objective(data, v_stat, gram_x, gram_y):
    return 0.5 * (v_stat - 2.0 * data + float(np.vdot(gram_x, gram_y)))


def _kl_gram(Y):
    return Y.sum(axis=0)


_CHUNK = 1 << 18  # non-zeros per chunk when evaluating XYᵀ on the support of V


def _kl_cross(V, X, Y):
    """Cross product ``(V ⊘ XYᵀ) Y`` and ``Σ v log(v / (XYᵀ))`` over the non-zeros."""
    V, rows, cols = _support(V)
    vals = V.data
    ratio = np.empty(vals.shape, dtype=X.dtype)
    loss = 0.0
    for start in range(0, vals.size, _CHUNK):
        sl = slice(start, start + _CHUNK)
        approx = np.einsum("ij,ij->i", X[rows[sl]], Y[cols[sl]])
        ratio[sl] = vals[sl] / approx
        loss += float(np.dot(vals[sl], np.log(ratio[sl])))
    Q = V.copy()
    Q.data = ratio
    return np.asarray(Q @ Y), loss


def _kl_objective(data, v_stat, gram_x, gram_y):
    return data - v_stat + float(np.dot(gram_x, gram_y))


def v_statistic(V, name: str) -> float:
    """The constant the objective needs from V: ``‖V‖²`` (frobenius) or ``Σ v`` (kl)."""
    if sp.issparse(V):
        vals = V.data
    else:
        vals = np.asarray(V).ravel()
    if name == "frobenius":
        return float(np.dot(vals, vals))
    return float(vals.sum())


@dataclass(frozen=True)
class Statistic:
    """How a loss is assembled from per-block pieces (see module docstring)."""

    name: str
    gram: callable
    cross: callable
    objective: callable


FROBENIUS = Statistic("frobenius", _frobenius_gram, _frobenius_cross, _frobenius_objective)
KL = Statistic("kl", _kl_gram, _kl_cross, _kl_objective)
