"""``MultiStartNMF``: the Estimator form of :func:`~sparknmf.analysis.clustering.multistart`, and its Model.

Every Param of :class:`~sparknmf.NMF` plus the multi-start Params; the model
is the best run as an :class:`~sparknmf.NMFModel` plus every run's
assignment, the consensus and the clustering summary.
"""

from __future__ import annotations

import numpy as np
from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters

from sparknmf.analysis.clustering import MultiFit, multistart
from sparknmf.analysis.consensus import CONSENSUS_LIMIT
from sparknmf.analysis.runs import MODES, ConnectivityStop
from sparknmf.decomposition import NMF, NMFModel
from sparknmf.decomposition.params import _NMFParams
from sparknmf.engine import persistence, placement
from sparknmf.engine.local import LocalMatrix
from sparknmf.engine.matrix import BlockMatrix
from sparknmf.params import Interval, OneOf, check_params, with_accessors
from sparknmf.progress import progress

__all__ = ["MultiStartNMF", "MultiStartNMFModel"]


@with_accessors
class _MultiStartParams(_NMFParams):
    """Params of :class:`MultiStartNMF` beyond those of :class:`~sparknmf.NMF`."""

    nrun = Param(Params._dummy(), "nrun", "number of runs from derived seeds (>= 1)",
                 typeConverter=TypeConverters.toInt)
    runMode = Param(Params._dummy(), "runMode", f"where the runs execute: one of {list(MODES)}",
                    typeConverter=TypeConverters.toString)
    samples = Param(Params._dummy(), "samples", "which side of V holds the samples: 'columns' or 'rows'",
                    typeConverter=TypeConverters.toString)
    stopChecks = Param(Params._dummy(), "stopChecks",
                       "Brunet's rule: stop a run when its assignment has not changed for this many checks (0 = off)",
                       typeConverter=TypeConverters.toInt)
    checkInterval = Param(Params._dummy(), "checkInterval", "Brunet's rule: iterations between two checks",
                          typeConverter=TypeConverters.toInt)
    consensusLimit = Param(Params._dummy(), "consensusLimit", "most samples in the consensus matrix",
                           typeConverter=TypeConverters.toInt)
    consensusSample = Param(Params._dummy(), "consensusSample",
                            "over consensusLimit, use a seeded sample of samples instead of failing",
                            typeConverter=TypeConverters.toBoolean)

    _constraints = {
        **_NMFParams._constraints,
        "k": Interval(2, integer=True),
        "nrun": Interval(1, integer=True),
        "runMode": OneOf(MODES),
        "samples": OneOf(("columns", "rows")),
        "stopChecks": Interval(0, integer=True),
        "checkInterval": Interval(1, integer=True),
        "consensusLimit": Interval(2, integer=True),
        "consensusSample": OneOf((True, False)),
    }

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(nrun=30, runMode="auto", samples="columns", stopChecks=0, checkInterval=10,
                         consensusLimit=CONSENSUS_LIMIT, consensusSample=False)


class MultiStartNMF(NMF, _MultiStartParams):
    """NMF with ``nrun`` runs from derived seeds, kept for clustering (R's ``nmf(V, k, nrun)``).

    Every Param of :class:`~sparknmf.NMF` plus ``nrun``, ``runMode``
    (auto / local / tasks / distributed, see :func:`multistart`), ``samples``,
    ``stopChecks`` / ``checkInterval`` (Brunet's connectivity rule),
    ``consensusLimit`` and ``consensusSample``.  Fitting returns a
    :class:`MultiStartNMFModel`: the best run as an ``NMFModel`` plus every
    run's assignment, the consensus and :meth:`MultiStartNMFModel.summary`.

    Examples
    --------
    >>> from sparknmf import MultiStartNMF
    >>> from sparknmf.datasets import block_diagonal
    >>> V, labels = block_diagonal((8, 8), features=16, seed=2)
    >>> model = MultiStartNMF(k=2, nrun=4, runMode="local").fit(V)
    >>> model.assignments.shape, model.summary(labels)["purity"]
    ((4, 16), 1.0)
    """

    @keyword_only
    def __init__(self, *, nrun=30, runMode="auto", samples="columns", stopChecks=0, checkInterval=10,
                 consensusLimit=CONSENSUS_LIMIT, consensusSample=False, **nmfParams):
        kwargs = self._input_kwargs
        super().__init__()
        self._set(**kwargs)

    @keyword_only
    def setParams(self, *, nrun=30, runMode="auto", samples="columns", stopChecks=0, checkInterval=10,
                  consensusLimit=CONSENSUS_LIMIT, consensusSample=False, **nmfParams):
        """Set Params by keyword (any Param of NMF too)."""
        return self._set(**self._input_kwargs)

    def _fit(self, dataset):
        check_params(self)
        if self.getCheckpointDir():
            raise ValueError("MultiStartNMF: checkpointDir is not supported for multi-start runs; leave it ''")
        if self.getFactorPlacement() == "executors":
            raise ValueError("MultiStartNMF: factorPlacement='executors' is not supported: the runs' factors, "
                             "assignments and consensus are gathered on the driver; leave factorPlacement='auto', "
                             "or fit NMF to keep the factors in the executors")
        backend = self._backend(dataset)
        stop = ConnectivityStop(self.getStopChecks(), self.getCheckInterval()) if self.getStopChecks() else None
        try:
            if isinstance(backend, BlockMatrix):
                self._check_driver_holds(backend)
            with progress(self.getVerbose(), "MultiStartNMF"):
                runs = multistart(
                    backend.V if isinstance(backend, LocalMatrix) else backend, self.getK(), self.getNrun(),
                    algorithm=self.getAlgorithm(), init=self.getInit(), seed=self.getSeed(), max_iter=self.getMaxIter(),
                    tol=self.getTol(), time_limit=self.getTimeLimit() or None, eta=self.getEta(), beta=self.getBeta(),
                    dtype=self.getDtype(), samples=self.getSamples(), mode=self.getRunMode(), stop=stop,
                    grid=self._grid(), consensus_limit=self.getConsensusLimit(),
                    consensus_sample=self.getConsensusSample(),
                )
        finally:
            if isinstance(backend, BlockMatrix):
                backend.unpersist()
        model = MultiStartNMFModel(runs, getattr(backend, "row_ids", None), getattr(backend, "col_ids", None))
        self._copyValues(model)
        return model

    def _check_driver_holds(self, backend):
        """Multi-start runs keep W and H on the driver: a ValueError, before any run, when they exceed its budget."""
        size = placement.factor_bytes(sum(backend.shape), self.getK())
        budget, setting = placement.driver_budget(backend.spark)
        if size > budget:
            raise ValueError(
                f"MultiStartNMF: W and H take {size / 2**20:.1f} MiB, more than the driver's budget of "
                f"{budget / 2**20:.1f} MiB (set by {setting}), and multi-start runs keep them on the driver; raise "
                f"{setting}, or fit NMF (its factorPlacement='auto' moves them to the executors)")


_RUN_FIELDS = ("objectives", "n_iters", "seeds")
_SCALAR_FIELDS = ("k", "samples", "mode", "seed", "rss", "sumsq", "consensus_limit", "consensus_sample", "elapsed")


class MultiStartNMFModel(NMFModel):
    """The best of ``nrun`` runs (an :class:`~sparknmf.NMFModel`) plus every run's assignment.

    Attributes
    ----------
    runs : MultiFit
    assignments : ndarray of int32 of shape (nrun, s)
        Cluster of each sample in each run (s = m columns of V, or n rows).

    ``MultiStartNMFModel()`` with no arguments is an empty model, as needed
    by ``load``; saving writes the assignments as Parquet (``assignments/``)
    and the per-run figures in the metadata.
    """

    def __init__(self, runs: MultiFit | None = None, rowIds=None, colIds=None):
        super().__init__(runs.best if runs is not None else None, rowIds, colIds)
        self.runs = runs

    def _runs(self) -> MultiFit:
        self._require()
        return self.runs

    @property
    def assignments(self) -> np.ndarray:
        return self._runs().assignments

    @property
    def nrun(self) -> int:
        return self._runs().nrun

    @property
    def consensus(self) -> np.ndarray:
        """The consensus matrix (s×s, or the sampled samples', see ``runs.consensus().index``)."""
        return self._runs().consensus().matrix

    def summary(self, labels=None) -> dict:
        """Every clustering measure (:meth:`MultiFit.summary`)."""
        return self._runs().summary(labels)

    def predict(self):
        """``(clusters, probabilities)`` of the samples from the best run
        (:func:`sparknmf.analysis.metrics.predict`)."""
        return self._runs().predict()

    def _extra_metadata(self) -> dict:
        runs = self._runs()
        extra = {name: getattr(runs, name) for name in _SCALAR_FIELDS}
        extra.update({name: getattr(runs, name).tolist() for name in _RUN_FIELDS})
        return {"runs": {**extra, "stop_reasons": list(runs.stop_reasons)}}

    def _save_extra(self, spark, path, overwrite):
        A = self._runs().assignments
        persistence.write_rows(spark, f"{path}/assignments", A.T.astype(np.float64), overwrite=overwrite)

    def _load_extra(self, spark, path, metadata):
        try:
            fields = dict(metadata["runs"])
            nrun = len(fields["seeds"])
            size = self._result.H.shape[1] if fields["samples"] == "columns" else self._result.W.shape[0]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}/metadata lacks the runs of a MultiStartNMFModel") from None
        At, _ = persistence.read_rows(spark, f"{path}/assignments", size, nrun)
        arrays = {name: np.asarray(fields.pop(name)) for name in _RUN_FIELDS}
        self.runs = MultiFit(best=self._result, assignments=At.T.astype(np.int32), **arrays, **fields)
