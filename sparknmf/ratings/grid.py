"""Fits of a parameter grid on ratings ingested once: ``MaskedALS.fitMultiple`` and ``grid_search``.

pyspark's tuning (``CrossValidator``, ``TrainValidationSplit``) calls
``estimator.fitMultiple(train, paramMaps)`` and then ``next()`` on the
returned iterator from ``parallelism`` threads, once per param map.  By
default every ``next()`` is a whole ``fit``: validation, ingest, fit.  Here
the param maps are grouped by the Params that shape the rating blocks
(:meth:`~sparknmf.ratings.estimator.MaskedALS.ingestKey`); each group's
training data is validated and stored as blocks **once**, on its first
``next()``, every point of the group fits on those blocks
(:meth:`~sparknmf.ratings.estimator.MaskedALS.fitBlocks`), and the blocks are
released after the group's last point (or when a fit fails).

The fits run one at a time (a lock): they share the cached blocks and, by
default, each holds every core with its resident tasks, so parallel fits
would only queue behind each other (or wait on a barrier).  The callers'
threads still transform and evaluate in parallel.
"""

from __future__ import annotations

import threading

__all__ = ["GridFits"]


class GridFits:
    """Thread-safe iterator of ``(index, model)``, one per param map, ingesting each group's blocks once.

    Parameters
    ----------
    estimator : MaskedALS
        The estimator whose copies (with each param map) are fitted.
    dataset : DataFrame
        The training ratings.
    paramMaps : sequence of dict {Param: value}
        Every copy is checked (``_check_rules``) here, before any Spark job.

    Yields
    ------
    (int, MaskedALSModel)
        An index into ``paramMaps`` and its model: the model ``estimator.fit(dataset, paramMaps[index])``
        returns (same seed, same parameters).  Indices come grouped by ingest Params, in grid order within a group.
    """

    def __init__(self, estimator, dataset, paramMaps):
        self.dataset = dataset
        self.estimators = [estimator.copy(dict(params)) for params in paramMaps]
        for est in self.estimators:
            est._check_rules()
        keys = [est.ingestKey() for est in self.estimators]
        first = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        self.order = sorted(range(len(keys)), key=lambda index: first[keys[index]])
        self.keys = keys
        self.position = 0
        self.blocks, self.blocks_key = None, None
        self.lock = threading.Lock()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.order)

    def _release(self):
        if self.blocks is not None:
            self.blocks.unpersist()
        self.blocks, self.blocks_key = None, None

    def __next__(self):
        with self.lock:
            if self.position >= len(self.order):
                raise StopIteration("no grid points remaining")
            index = self.order[self.position]
            self.position += 1
            est, key = self.estimators[index], self.keys[index]
            try:
                if self.blocks_key != key:
                    self._release()
                    self.blocks, self.blocks_key = est.ingest(self.dataset), key
                model = est.fitBlocks(self.blocks)
            except BaseException:
                self._release()
                raise
            last = self.position >= len(self.order) or self.keys[self.order[self.position]] != key
            if last:
                self._release()
        return index, model

    next = __next__  # pyspark's _FitMultipleIterator has it too
