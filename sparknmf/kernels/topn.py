"""Top-n scoring of queries against targets by blocks (numpy and scipy only, no Spark).

For query factors Q (b×k), target factors T (t×k) and a target bias β (t)::

    top-n_t  q_rᵀ t_j + β_j      for every query row r, over the allowed targets j

computed one target chunk at a time: one matrix product ``Q T_chunkᵀ``,
``argpartition`` for the chunk's best n, and a merge with the best so far
(Spark's ``recommendForAll`` blockify, never a score per pair in Python).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["top_n"]

_TARGET_CHUNK = 8192  # targets per matrix product


def top_n(Q, T, n, *, bias=None, candidates=None, exclude=None, chunk=_TARGET_CHUNK):
    """Top-n targets for each query by blocks: ``Q Tᵀ + bias`` per target chunk, argpartition, merge.

    Parameters
    ----------
    Q : ndarray of shape (b, k)
        Query factors.
    T : ndarray of shape (t, k)
        Target factors.
    n : int
    bias : ndarray of shape (t,), optional
        Added to every target's score.
    candidates : ndarray of int, optional
        The only targets allowed (indices into T).
    exclude : (rows, targets) pair of int arrays, optional
        Pairs (query row, target index) never returned.
    chunk : int
        Targets scored by one matrix product.

    Returns
    -------
    targets : ndarray of int of shape (b, min(n, allowed))
        Best first.
    scores : ndarray of shape (b, min(n, allowed))
        ``-inf`` where fewer than n targets remain for a query.
    """
    b = Q.shape[0]
    allowed = np.arange(T.shape[0]) if candidates is None else np.asarray(candidates, np.int64)
    bias = np.zeros(T.shape[0]) if bias is None else np.asarray(bias)
    mask = None
    if exclude is not None and len(exclude[0]):
        mask = sp.csr_matrix((np.ones(len(exclude[0]), bool), (exclude[0], exclude[1])), shape=(b, T.shape[0]))
    n = min(n, allowed.size)
    best_t = np.zeros((b, 0), np.int64)
    best_s = np.zeros((b, 0))
    for start in range(0, allowed.size, chunk):
        cols = allowed[start : start + chunk]
        scores = Q @ T[cols].T + bias[cols]
        if mask is not None:
            hit = mask[:, cols].tocoo()
            scores[hit.row, hit.col] = -np.inf
        keep = min(n, cols.size)
        part = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        best_t = np.hstack([best_t, cols[part]])
        best_s = np.hstack([best_s, np.take_along_axis(scores, part, axis=1)])
        if best_t.shape[1] > n:
            part = np.argpartition(-best_s, n - 1, axis=1)[:, :n]
            best_t, best_s = np.take_along_axis(best_t, part, axis=1), np.take_along_axis(best_s, part, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_t, order, axis=1), np.take_along_axis(best_s, order, axis=1)
