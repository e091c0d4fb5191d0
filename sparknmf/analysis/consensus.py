"""The consensus matrix of multi-start runs (Monti et al. 2003; Brunet et al. 2004), driver side.

The consensus matrix C (s×s) is the mean over runs of the connectivity
matrices (``C_ij`` = fraction of runs that put samples i and j in the same
cluster), built from the runs' collected assignments (an s-vector per run).
It lives on the driver, so it has a size limit: at most ``limit`` samples
(default :data:`CONSENSUS_LIMIT` = 4000, i.e. 128 MB of float64).  With more
samples, ``sample=True`` uses a uniform sample without replacement of
``limit`` samples, drawn by
``numpy.random.default_rng([seed, 7]).choice(s, limit, replace=False)`` and
sorted (``Consensus.index`` lists them); without it, :func:`sample_index`
raises, which :func:`~sparknmf.analysis.clustering.multistart` calls before any run starts.

References
----------
S. Monti et al. (2003), Machine Learning 52, 91-118 (consensus clustering).
https://doi.org/10.1023/A:1023949509487
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CONSENSUS_LIMIT", "Consensus", "consensus_matrix", "sample_index"]

CONSENSUS_LIMIT = 4000
_SAMPLE_STREAM = 7


@dataclass
class Consensus:
    """A consensus matrix and the samples it covers.

    Attributes
    ----------
    matrix : ndarray of shape (s, s)
        ``C_ij`` = fraction of runs putting samples ``index[i]`` and ``index[j]`` together.
    index : ndarray of int64 of shape (s,)
        Positions of the samples (all of them unless ``sampled``).
    sampled : bool
        True when a seeded sample of the samples is used (size limit).
    """

    matrix: np.ndarray
    index: np.ndarray
    sampled: bool = False


def sample_index(size: int, limit: int, seed: int, allow: bool, what: str = "samples") -> tuple[np.ndarray, bool]:
    """Positions of the samples a consensus covers: all ``size`` of them, or a seeded sample of ``limit``.

    Returns ``(index, sampled)``; over the limit without ``allow`` it raises a
    ``ValueError`` that names the sizes and the options.
    """
    if size <= limit:
        return np.arange(size, dtype=np.int64), False
    if not allow:
        raise ValueError(
            f"consensus over the size limit: {size} {what} > consensus_limit={limit} "
            f"(an n×n matrix of {size * size * 8 / 2**20:.0f} MB on the driver); pass consensus_sample=True "
            f"to use a seeded sample of {limit} {what}, or raise consensus_limit"
        )
    rng = np.random.default_rng([int(seed), _SAMPLE_STREAM])
    return np.sort(rng.choice(size, limit, replace=False)).astype(np.int64), True


def consensus_matrix(assignments, *, limit: int = CONSENSUS_LIMIT, sample: bool = False, seed: int = 0) -> Consensus:
    """Mean connectivity of a set of runs.

    Parameters
    ----------
    assignments : array-like of int of shape (nrun, s_total)
        Cluster of each sample in each run.
    limit : int
        Largest number of samples for which the full matrix is built.
    sample : bool
        Over the limit: use ``limit`` samples drawn with the seed (module
        docstring) instead of raising.
    seed : int

    Returns
    -------
    Consensus
    """
    A = np.atleast_2d(np.asarray(assignments))
    if A.size == 0:
        raise ValueError("consensus_matrix needs at least one run with at least one sample")
    index, sampled = sample_index(A.shape[1], int(limit), seed, sample)
    A = A[:, index]
    C = np.zeros((index.size, index.size))
    for run in A:
        C += run[:, None] == run[None, :]
    return Consensus(C / A.shape[0], index, sampled)
