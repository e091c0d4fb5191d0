"""Rank survey: every clustering measure for a range of k (R's ``nmfEstimateRank``).

:func:`rank_survey` runs :func:`~sparknmf.analysis.clustering.multistart` for each k
and records :meth:`~sparknmf.analysis.clustering.MultiFit.summary` (purity and entropy
too when labels are given).  With ``randomized=True`` (default) it runs the
same survey on a randomised copy of V (:func:`randomize`: the entries of
each column permuted independently, as R NMF's ``randomize``), so that a
measure which keeps improving on random data as k grows shows overfitting,
not structure.

The result is a plain table (:class:`Survey`, a list of dicts, one per
(data, k)), which converts to a Spark DataFrame and writes CSV or JSON.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sparknmf.analysis import metrics
from sparknmf.analysis.clustering import multistart
from sparknmf.analysis.consensus import CONSENSUS_LIMIT, sample_index
from sparknmf.analysis.runs import TASK_LIMIT, check_nrun, check_rank_range, collect_blocks, stored_values
from sparknmf.decomposition import NMF
from sparknmf.engine.ingest import is_frame
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.engine.validation import as_matrix
from sparknmf.progress import check_verbose, progress

__all__ = ["Survey", "randomize", "rank_survey"]

_RANDOM_STREAM = 11
# the NMF Params that say how to read a DataFrame
_FRAME_PARAMS = ("rowCol", "colCol", "valueCol", "featuresCol", "idCol", "duplicates", "numRowBlocks", "numColBlocks")

survey_logger = logging.getLogger("sparknmf.survey")  # one line per rank as it finishes


def randomize(V, seed: int = 0):
    """A copy of V (n×m) with the entries of each column permuted independently.

    Column sums (sample totals) and the distribution of values within each
    column are kept; any structure shared across columns is destroyed.
    Uses ``numpy.random.default_rng([seed, 11])``.

    Parameters
    ----------
    V : ndarray or scipy sparse matrix of shape (n, m)

    Returns
    -------
    ndarray, or csr_matrix for sparse input, of shape (n, m)
    """
    rng = np.random.default_rng([int(seed), _RANDOM_STREAM])
    if not sp.issparse(V):
        return rng.permuted(np.asarray(V), axis=0)
    csc = sp.csc_matrix(V)
    n = csc.shape[0]
    rows = np.empty_like(csc.indices)
    for j in range(csc.shape[1]):  # a column's non-zeros move to random distinct rows
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        rows[lo:hi] = rng.choice(n, hi - lo, replace=False)
    out = sp.csc_matrix((csc.data.copy(), rows, csc.indptr.copy()), shape=csc.shape)
    out.sort_indices()
    return out.tocsr()


class Survey:
    """The table of a rank survey: one row (dict) per (data, k).

    ``data`` is ``"original"`` or ``"randomized"``; the other keys are those
    of :meth:`~sparknmf.analysis.clustering.MultiFit.summary`.

    Attributes
    ----------
    rows : list of dict
    """

    def __init__(self, rows):
        self.rows = list(rows)

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def column(self, name: str, data: str = "original") -> list:
        """Values of one measure for ``data``, in the order of k."""
        return [row[name] for row in self.rows if row["data"] == data]

    @property
    def columns(self) -> list:
        """Column names, in a stable order."""
        names: dict = {}
        for row in self.rows:
            names.update(dict.fromkeys(row))
        return list(names)

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows)

    def to_frame(self, spark=None):
        """The table as a Spark DataFrame (one row per (data, k))."""
        from sparknmf.engine.session import get_session

        return (spark or get_session()).createDataFrame(self.to_arrow())

    def write_csv(self, path) -> Path:
        """Write the table as CSV with a header line; returns the path."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        return path

    def write_json(self, path) -> Path:
        """Write the table as a JSON list of objects (NaN written as null); returns the path."""
        path = Path(path)
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                 for row in self.rows]
        path.write_text(json.dumps(clean, indent=1))
        return path


def _spark_matrix(V, frame_params):
    """A DataFrame's V as a BlockMatrix, read as :class:`~sparknmf.NMF` reads it (``frame_params``: its Params)."""
    params = dict(frame_params or {})
    unknown = sorted(set(params) - set(_FRAME_PARAMS))
    if unknown:
        raise ValueError(f"rank_survey: frame_params may set {list(_FRAME_PARAMS)}, got {unknown}")
    return NMF(k=1, backend="spark", **params)._backend(V)


def _randomized_copy(V, seed: int):
    """:func:`randomize` of V; a BlockMatrix is collected first, when it is small enough for the driver."""
    if not isinstance(V, BlockMatrix):
        return randomize(V, seed)
    if stored_values(V) > TASK_LIMIT:
        raise ValueError(f"rank_survey: the randomized survey permutes V on the driver, and this DataFrame's V "
                         f"stores {stored_values(V)} values, more than {TASK_LIMIT}; pass randomized=False")
    return randomize(collect_blocks(V), seed)


def rank_survey(V, ks, nrun: int = 30, *, labels=None, randomized: bool = True, seed: int = 0,
                samples: str = "columns", on_fit=None, verbose=0, frame_params=None, **options) -> Survey:
    """Every clustering measure for each rank in ``ks``, on V and on a randomised V.

    Parameters
    ----------
    V : ndarray or scipy sparse matrix of shape (n, m), or a Spark DataFrame
        A DataFrame is read as :meth:`sparknmf.NMF.fit` reads it: coordinates
        ``(row, col, value)`` or a vector column ``features`` (one sample per
        row); ``frame_params`` renames the columns.  Its runs execute on Spark
        (``mode`` "tasks" when V is small, else "distributed"); the randomized
        survey collects V to the driver, up to
        :data:`~sparknmf.analysis.runs.TASK_LIMIT` stored values.
    ks : iterable of int
        Ranks, each in ``[2, min(n, m)]``.
    nrun : int
        Runs per rank (>= 1).
    labels : sequence of shape (s,), optional
        Known class of each sample (s = m columns, or n with
        ``samples="rows"``): adds purity and entropy.
    randomized : bool
        Also survey ``randomize(V, seed)``.
    seed : int
        Seeds the runs (the same run seeds for every k) and the randomisation.
    samples : {"columns", "rows"}
    on_fit : callable, optional
        ``on_fit(data, k, fit)`` with ``data`` "original" or "randomized" and
        the :class:`~sparknmf.analysis.clustering.MultiFit` of each rank, as soon as it
        is done (e.g. to draw its maps without keeping every fit).
    verbose : int
        1: print a line as each rank finishes (data, k, seconds, cophenetic,
        dispersion, evar; logger ``"sparknmf.survey"``); 2: also every run's
        progress on the driver; 0 (default): nothing (:mod:`sparknmf.progress`).
    frame_params : dict, optional
        DataFrame input: :class:`~sparknmf.NMF` Params that say how to read it
        (``rowCol``, ``colCol``, ``valueCol``, ``featuresCol``, ``idCol``,
        ``duplicates``, ``numRowBlocks``, ``numColBlocks``).
    **options :
        Any other keyword of :func:`~sparknmf.analysis.clustering.multistart`
        (``algorithm``, ``max_iter``, ``tol``, ``mode``, ``stop``,
        ``consensus_limit``, ``consensus_sample``, ...).

    Returns
    -------
    Survey
        Rows ordered by data (original first), then k.

    Every argument is checked before the first run (a DataFrame's shape after reading it).
    """
    nrun = check_nrun(nrun)
    check_verbose(verbose, "rank_survey")
    if on_fit is not None and not callable(on_fit):
        raise TypeError(f"rank_survey: on_fit must be callable, got {on_fit!r}")
    try:
        inspect.signature(multistart).bind(V, 2, nrun, seed=seed, samples=samples, **options)
    except TypeError as err:
        raise TypeError(f"rank_survey: {err}") from None
    ks = list(ks)
    if not ks:
        raise ValueError("ks is empty: give at least one rank")
    if samples not in ("columns", "rows"):
        raise ValueError(f"samples must be 'columns' or 'rows', got {samples!r}")
    if frame_params is not None and not is_frame(V):
        raise ValueError("rank_survey: frame_params applies to DataFrame input only")
    V = _spark_matrix(V, frame_params) if is_frame(V) else as_matrix(V)
    try:
        with progress(verbose, "rank_survey", summary=(survey_logger.name,)):
            return _survey(V, ks, nrun, labels, randomized, seed, samples, on_fit, options)
    finally:
        if isinstance(V, BlockMatrix):
            V.unpersist()


def _survey(V, ks, nrun, labels, randomized, seed, samples, on_fit, options) -> Survey:
    """:func:`rank_survey` on a checked V (ndarray, CSR or BlockMatrix)."""
    ks = sorted(check_rank_range(k, V.shape, "k in ks") for k in ks)
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks has repeated ranks: {ks}")
    size = V.shape[1] if samples == "columns" else V.shape[0]
    if labels is not None:
        metrics.check_labels(labels, size)
    sample_index(size, options.get("consensus_limit", CONSENSUS_LIMIT), seed, options.get("consensus_sample", False))

    rows = []
    for name in ("original", "randomized") if randomized else ("original",):
        data = V if name == "original" else _randomized_copy(V, seed)
        for k in ks:
            fit = multistart(data, k, nrun, seed=seed, samples=samples, **options)
            row = {"data": name, **fit.summary(labels)}
            rows.append(row)
            survey_logger.info("rank_survey: %s k=%d done in %.2fs (%d runs): cophenetic %.4f dispersion %.4f "
                               "evar %.4f", name, k, fit.elapsed, nrun, row["cophenetic"], row["dispersion"],
                               row["evar"])
            if on_fit is not None:
                on_fit(name, k, fit)
    return Survey(rows)
