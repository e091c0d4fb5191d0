"""Ratings: masked ALS with biases, time terms, implicit feedback and top-N recommendations.

Model (Koren, Bell & Volinsky 2009; Koren 2008 and 2009)::

    r̂_ui(t) = μ + b_u + α_u·dev_u(t) + b_i + b_i,bin(t) + (w_u + |N(u)|^-½ Σ_{j∈N(u)} y_j)ᵀ h_i

fitted on the **observed ratings only** (matrix completion; a missing rating is
unknown, not zero), by alternating exact ridge solves of every user's and every
item's parameters (:mod:`sparknmf.kernels.als`).  The time terms (item
bias per time bin, user drift) and the implicit-feedback vectors ``y_j`` (SVD++,
N(u) = the items u rated) are options.

Block layout (see :mod:`sparknmf.ratings.store` for a worked example): the ratings are
stored twice, by user block and by item block, each block a CSR matrix in a
cached DataFrame row.  Ids of any type are mapped once to dense indices in
sorted order; user ``u`` lives in user block ``index(u) // user_step`` at row
``index(u) % user_step``.  Each half-step is one Spark job over one copy: the
other side's parameters travel with the task function, every task solves the
rows of its block and the new rows come back with ``toArrow``; the parameters
stay on the driver between half-steps, so the plan never grows and no
checkpoint directory is needed.

Ratings with at most ``localLimit`` entries are fitted on the driver by the
same block functions (``backend="auto"``), which skips Spark's per-job cost;
so are larger ratings on a local master while they fit the driver's limits
(:func:`~sparknmf.ratings.ingest.use_driver`).  The driver runs its blocks on one
thread per core.

References
----------
Y. Koren, R. Bell and C. Volinsky (2009), "Matrix factorization techniques for recommender systems",
IEEE Computer 42(8), 30-37. https://doi.org/10.1109/MC.2009.263
Y. Koren (2008), "Factorization meets the neighborhood", KDD '08. https://doi.org/10.1145/1401890.1401944
Y. Koren (2009), "Collaborative filtering with temporal dynamics", KDD '09. https://doi.org/10.1145/1557019.1557072
Y. Zhou, D. Wilkinson, R. Schreiber and R. Pan (2008), "Large-scale parallel collaborative filtering for
the Netflix prize" (ALS-WR), AAIM 2008. https://doi.org/10.1007/978-3-540-68880-8_32
"""

from __future__ import annotations

import logging
import secrets
import time
import warnings

import numpy as np
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasCheckpointInterval, HasMaxIter, HasPredictionCol, HasSeed, HasTol, HasWeightCol
from pyspark.ml.util import MLReadable, MLWritable

from sparknmf.engine import codec, persistence
from sparknmf.engine.calls import Call, block_function, block_type
from sparknmf.engine.checkpoint import LoopCheckpoint
from sparknmf.engine.ingest import check_columns, index_frame
from sparknmf.engine.resident import EXECUTION_MODES
from sparknmf.errors import ConvergenceWarning, check_factors, check_objective
from sparknmf.kernels.als import (
    Entries,
    SideSpec,
    half_step,
    implicit_apply,
    implicit_offset,
    implicit_sums,
    implicit_system,
    predict,
)
from sparknmf.kernels.seeding import chunked_draw
from sparknmf.kernels.topn import top_n
from sparknmf.params import HasExecutionMode, Interval, OneOf, check_params, with_accessors
from sparknmf.ratings.ingest import DUPLICATE_POLICIES, ingest_ratings

__all__ = ["MaskedALS", "MaskedALSModel", "COLD_START_STRATEGIES", "REGULARIZATIONS"]

logger = logging.getLogger("sparknmf")

COLD_START_STRATEGIES = ("nan", "drop", "biases")
REGULARIZATIONS = ("plain", "weighted")
BACKENDS = ("auto", "local", "spark")
_REMEDY = ("Try a stronger regularization (regParam, biasRegParam, implicitRegParam), a lower rank, "
           "or check the ratings' scale.")
_CG_STEPS = 3  # conjugate-gradient steps per iteration for the implicit-feedback vectors
block_type(SideSpec)  # the block tasks' calls carry the sides' layouts (sparknmf.engine.calls)
_USER_STREAM, _ITEM_STREAM = 10, 11
SIDES = ("user", "item")


def _other(side):
    return "item" if side == "user" else "user"


@with_accessors
class _MaskedALSModelParams(HasPredictionCol):
    """Column Params shared by :class:`MaskedALS` and :class:`MaskedALSModel`."""

    userCol = Param(Params._dummy(), "userCol", "column of user ids (any type)", typeConverter=TypeConverters.toString)
    itemCol = Param(Params._dummy(), "itemCol", "column of item ids (any type)", typeConverter=TypeConverters.toString)
    ratingCol = Param(Params._dummy(), "ratingCol", "column of ratings", typeConverter=TypeConverters.toString)
    timestampCol = Param(Params._dummy(), "timestampCol",
                         "column of rating times: seconds since the epoch, or a timestamp ('' = none)",
                         typeConverter=TypeConverters.toString)
    coldStartStrategy = Param(Params._dummy(), "coldStartStrategy",
                              f"prediction for unknown users or items: one of {list(COLD_START_STRATEGIES)}",
                              typeConverter=TypeConverters.toString)
    ratingRange = Param(Params._dummy(), "ratingRange",
                        "[low, high]: ratings outside are an error and predictions are clipped to it ([] = none)",
                        typeConverter=TypeConverters.toListFloat)

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(userCol="user", itemCol="item", ratingCol="rating", timestampCol="",
                         predictionCol="prediction", coldStartStrategy="nan", ratingRange=[])


@with_accessors
class _MaskedALSParams(_MaskedALSModelParams, HasMaxIter, HasTol, HasSeed, HasCheckpointInterval, HasWeightCol,
                       HasExecutionMode):
    """Fit Params of :class:`MaskedALS` (defaults in ``_setDefault`` only)."""

    rank = Param(Params._dummy(), "rank", "rank k of the factors (>= 1)", typeConverter=TypeConverters.toInt)
    regParam = Param(Params._dummy(), "regParam", "λ: ridge weight of the factors", typeConverter=TypeConverters.toFloat)
    biasRegParam = Param(Params._dummy(), "biasRegParam", "λ_b: ridge weight of biases, bin biases and drifts",
                         typeConverter=TypeConverters.toFloat)
    regularization = Param(Params._dummy(), "regularization",
                           "'plain' (λ‖x‖²) or 'weighted' (λ·n_x‖x‖², n_x the row's rating count: ALS-WR)",
                           typeConverter=TypeConverters.toString)
    nonnegative = Param(Params._dummy(), "nonnegative", "non-negative factors (exact NNLS per row)",
                        typeConverter=TypeConverters.toBoolean)
    biases = Param(Params._dummy(), "biases", "fit user and item biases b_u, b_i", typeConverter=TypeConverters.toBoolean)
    timeBins = Param(Params._dummy(), "timeBins", "number of time bins of the item biases b_i,bin(t) (0 = off)",
                     typeConverter=TypeConverters.toInt)
    userDrift = Param(Params._dummy(), "userDrift", "fit a user bias drift α_u·dev_u(t) (needs timestampCol)",
                      typeConverter=TypeConverters.toBoolean)
    driftExponent = Param(Params._dummy(), "driftExponent", "β of dev_u(t) = sign(t − t̄_u)|t − t̄_u|^β (days)",
                          typeConverter=TypeConverters.toFloat)
    implicitFeedback = Param(Params._dummy(), "implicitFeedback",
                             "SVD++: add |N(u)|^-½ Σ_{j∈N(u)} y_j to each user's factor, N(u) = items u rated",
                             typeConverter=TypeConverters.toBoolean)
    implicitRegParam = Param(Params._dummy(), "implicitRegParam", "λ_y: ridge weight of the implicit vectors y_j",
                             typeConverter=TypeConverters.toFloat)
    initStd = Param(Params._dummy(), "initStd", "standard deviation of the random initial factors",
                    typeConverter=TypeConverters.toFloat)
    numUserBlocks = Param(Params._dummy(), "numUserBlocks", "user blocks (0 = automatic)", typeConverter=TypeConverters.toInt)
    numItemBlocks = Param(Params._dummy(), "numItemBlocks", "item blocks (0 = automatic)", typeConverter=TypeConverters.toInt)
    duplicates = Param(Params._dummy(), "duplicates",
                       f"repeated (user, item) pairs: one of {list(DUPLICATE_POLICIES)} ('last' needs timestampCol)",
                       typeConverter=TypeConverters.toString)
    backend = Param(Params._dummy(), "backend",
                    "'spark', 'local' (blocks collected, loop on the driver's threads) or 'auto' "
                    "(local up to localLimit ratings, and on a local master while they fit the driver)",
                    typeConverter=TypeConverters.toString)
    localLimit = Param(Params._dummy(), "localLimit",
                       "backend='auto': most ratings fitted on the driver (any that fit it on a local master)",
                       typeConverter=TypeConverters.toInt)
    checkpointDir = Param(Params._dummy(), "checkpointDir",
                          "driver-local directory for loop checkpoints every checkpointInterval iterations ('' = none)",
                          typeConverter=TypeConverters.toString)

    _constraints = {
        "rank": Interval(1, integer=True),
        "regParam": Interval(0),
        "biasRegParam": Interval(0),
        "regularization": OneOf(REGULARIZATIONS),
        "timeBins": Interval(0, integer=True),
        "driftExponent": Interval(0),
        "implicitRegParam": Interval(0, open_low=True),
        "initStd": Interval(0, open_low=True),
        "numUserBlocks": Interval(0, integer=True),
        "numItemBlocks": Interval(0, integer=True),
        "duplicates": OneOf(DUPLICATE_POLICIES),
        "backend": OneOf(BACKENDS),
        "localLimit": Interval(0, integer=True),
        "maxIter": Interval(0, integer=True),
        "tol": Interval(0),
        "seed": Interval(0, integer=True),
        "checkpointInterval": Interval(1, integer=True),
        "coldStartStrategy": OneOf(COLD_START_STRATEGIES),
        "executionMode": OneOf(EXECUTION_MODES),
    }

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(rank=10, regParam=12.0, biasRegParam=10.0, regularization="plain", nonnegative=False,
                         biases=True, timeBins=0, userDrift=False, driftExponent=0.4, implicitFeedback=True,
                         implicitRegParam=50.0, initStd=0.1, numUserBlocks=0, numItemBlocks=0, duplicates="error",
                         backend="auto", localLimit=1_000_000, maxIter=15, tol=1e-4, seed=0, checkpointInterval=10,
                         checkpointDir="", weightCol="")

    def _check_rules(self):
        """Cross-parameter rules, after the constraints table."""
        check_params(self)
        name = type(self).__name__
        low_high = self.getRatingRange()
        if low_high and (len(low_high) != 2 or not low_high[0] <= low_high[1]):
            raise ValueError(f"{name}: invalid ratingRange={low_high!r}; it must be [] or [low, high] with low <= high")
        needs_time = [p for p, on in (("timeBins", self.getTimeBins() > 0), ("userDrift", self.getUserDrift()),
                                      ("duplicates='last'", self.getDuplicates() == "last")) if on]
        if needs_time and not self.getTimestampCol():
            raise ValueError(f"{name}: {', '.join(needs_time)} need(s) timestampCol")
        if self.getNonnegative() and self.getImplicitFeedback():
            raise ValueError(f"{name}: nonnegative=True and implicitFeedback=True cannot be combined "
                             "(the implicit vectors are unconstrained)")
        if self.isSet("checkpointInterval") and not self.getCheckpointDir():
            warnings.warn(f"{name}: checkpointInterval is ignored without checkpointDir: the plan does not grow "
                          "across iterations, so Spark needs no checkpoint (checkpointDir saves the loop state "
                          "for resume=True)", UserWarning, stacklevel=3)

    def _specs(self):
        k, biases = self.getRank(), self.getBiases()
        timed = bool(self.getTimestampCol())
        user = SideSpec(k, biases, "drift" if timed and self.getUserDrift() else "none")
        bins = self.getTimeBins() if timed else 0
        item = SideSpec(k, biases, "bins" if bins else "none", bins)
        return {"user": user, "item": item}


class MaskedALS(Estimator, _MaskedALSParams, MLWritable, MLReadable):
    """Matrix completion of ratings by masked alternating least squares, on Spark.

    Minimises, over the observed ratings (u, i, t) with weights c_ui (``weightCol``, default 1)::

        Σ c_ui (r_ui − r̂_ui(t))² + Σ_u s_u(λ‖w_u‖² + λ_b‖β_u‖²) + Σ_i s_i(λ‖h_i‖² + λ_b‖β_i‖²) + λ_y‖Y‖²

    with r̂ the model of the module docstring, β a row's biases, bin biases and
    drift, and s = 1 (``regularization="plain"``, the default) or the row's
    number of ratings (``"weighted"``, ALS-WR as in MLlib).  Each half-step
    solves every user's (item's) parameters exactly, by batched Cholesky, or
    by exact NNLS when ``nonnegative`` (factors ≥ 0; biases stay free).

    Defaults (rank 10, plain λ = 12, λ_b = 10, implicit feedback with
    λ_y = 50, 15 iterations) are the best of a grid on the MovieLens 100K
    splits u1–u5 (mean RMSE 0.903); plain ridge beat ALS-WR there at every
    rank tried (README, "Ratings and recommendations").

    Bad input raises :class:`~sparknmf.errors.InvalidInputError` before any
    fitting: unknown columns, empty input, null ids, NaN/inf ratings, ratings
    outside ``ratingRange``, bad weights or timestamps, duplicate pairs
    (unless ``duplicates`` is ``"mean"`` or ``"last"``).

    Examples
    --------
    >>> from sparknmf import MaskedALS
    >>> ratings = spark.createDataFrame(
    ...     [("ann", "m1", 4.0), ("ann", "m2", 2.0), ("bob", "m1", 5.0), ("bob", "m3", 1.0), ("cy", "m2", 3.0)],
    ...     "user string, item string, rating double")
    >>> model = MaskedALS(rank=2, regParam=0.1, biasRegParam=0.1, implicitFeedback=False).fit(ratings)
    >>> sorted(r.user for r in model.recommendForAllUsers(1).collect())
    ['ann', 'bob', 'cy']
    """

    @keyword_only
    def __init__(self, *, rank=10, regParam=12.0, biasRegParam=10.0, regularization="plain", nonnegative=False,
                 biases=True, timeBins=0, userDrift=False, driftExponent=0.4, implicitFeedback=True,
                 implicitRegParam=50.0, initStd=0.1, numUserBlocks=0, numItemBlocks=0, duplicates="error",
                 backend="auto", localLimit=1_000_000, maxIter=15, tol=1e-4, seed=0, checkpointInterval=10,
                 checkpointDir="", weightCol="", userCol="user", itemCol="item", ratingCol="rating", timestampCol="",
                 predictionCol="prediction", coldStartStrategy="nan", ratingRange=None,
                 executionMode="auto"):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, rank=10, regParam=12.0, biasRegParam=10.0, regularization="plain", nonnegative=False,
                  biases=True, timeBins=0, userDrift=False, driftExponent=0.4, implicitFeedback=True,
                  implicitRegParam=50.0, initStd=0.1, numUserBlocks=0, numItemBlocks=0, duplicates="error",
                  backend="auto", localLimit=1_000_000, maxIter=15, tol=1e-4, seed=0, checkpointInterval=10,
                  checkpointDir="", weightCol="", userCol="user", itemCol="item", ratingCol="rating", timestampCol="",
                  predictionCol="prediction", coldStartStrategy="nan", ratingRange=None,
                  executionMode="auto"):
        """Set Params by keyword."""
        return self._set(**self._input_kwargs)

    # ---------------------------------------------------------------- fitting
    def ingest(self, dataset):
        """Validate and store ``dataset`` as rating blocks (reusable by :meth:`fitBlocks`)."""
        self._check_rules()
        return ingest_ratings(
            dataset, user_col=self.getUserCol(), item_col=self.getItemCol(), rating_col=self.getRatingCol(),
            weight_col=self.getWeightCol(), time_col=self.getTimestampCol(), rating_range=tuple(self.getRatingRange()),
            duplicates=self.getDuplicates(), user_blocks=self.getNumUserBlocks(), item_blocks=self.getNumItemBlocks(),
            bins=self.getTimeBins(), drift_on=self.getUserDrift(), beta=self.getDriftExponent(),
            backend=self.getBackend(), local_limit=self.getLocalLimit(),
        )

    def _fit(self, dataset):
        return self.fitFrom(dataset)

    def fitFrom(self, dataset, initialModel=None, *, callback=None, resume=False):
        """Fit, warm-started from ``initialModel``'s parameters (known ids keep theirs; new ones start fresh).

        ``callback(iteration, elapsed, objective)`` is called after each iteration.  ``resume=True``
        continues from the checkpoint in ``checkpointDir`` (if there is one; it takes precedence over
        ``initialModel``); the result equals the uninterrupted fit.
        """
        if resume and not self.getCheckpointDir():
            raise ValueError("MaskedALS.fitFrom(resume=True) needs checkpointDir")
        blocks = self.ingest(dataset)
        try:
            return self.fitBlocks(blocks, initialModel, callback=callback, resume=resume)
        finally:
            blocks.unpersist()

    def fitBlocks(self, blocks, initialModel=None, *, callback=None, resume=False):
        """Fit on already ingested :class:`~sparknmf.ratings.store.RatingBlocks` (e.g. in a parameter grid)."""
        self._check_rules()
        if initialModel is not None and initialModel.rank != self.getRank():
            raise ValueError(f"MaskedALS.fitFrom: the initial model has rank {initialModel.rank}, "
                             f"this estimator rank={self.getRank()}")
        blocks.execution = self.getExecutionMode()
        with blocks.serving(f"sparknmf: MaskedALS rank={self.getRank()}, resident block tasks"):
            state = _Fit(self, blocks, initialModel, callback).run(resume)
        model = MaskedALSModel(state)
        self._copyValues(model)
        return model

    # ---------------------------------------------------------------- persistence
    def write(self):
        return _ParamsWriter(self)

    @classmethod
    def read(cls):
        return _Reader(cls)


class _Fit:
    """The alternating loop of one fit: user half-step, item half-step, implicit vectors."""

    def __init__(self, est, blocks, initial, callback):
        self.est, self.blocks, self.callback = est, blocks, callback
        self.specs = est._specs()
        self.k = est.getRank()
        self.implicit = est.getImplicitFeedback()
        self.options = dict(mu=blocks.mu, reg=est.getRegParam(), bias_reg=est.getBiasRegParam(),
                            scaled=est.getRegularization() == "weighted", nonnegative=est.getNonnegative())
        n, m = blocks.shape
        self.P = {side: self._initial(side, rows, stream, initial)
                  for side, rows, stream in (("user", n, _USER_STREAM), ("item", m, _ITEM_STREAM))}
        self.Z = np.zeros((n, self.k))
        self.Y = np.zeros((m, self.k))
        if initial is not None and self.implicit and initial.implicitVectors is not None:
            self.Y = _carry(initial.implicitVectors, initial.itemIds, blocks.item_ids, self.Y)
            self.Z = _carry(initial._state["Z"], initial.userIds, blocks.user_ids, self.Z)
            self.P["user"][:, : self.k] -= self.Z  # the stored user factors include z_u
        self.penalty = {"user": 0.0, "item": 0.0}

    def _initial(self, side, rows, stream, initial):
        spec = self.specs[side]
        P = np.zeros((rows, spec.width))
        draw = chunked_draw(rows, self.k, self.est.getSeed(), stream) * self.est.getInitStd()
        P[:, : self.k] = np.abs(draw) if self.est.getNonnegative() else draw
        if initial is not None:
            old = initial._state["P"][side]
            if old.shape[1] != spec.width:
                raise ValueError(f"MaskedALS.fitFrom: the initial model's {side} parameters have {old.shape[1]} "
                                 f"columns, this estimator needs {spec.width} (same rank, biases and time terms)")
            P = _carry(old, initial.ids(side), self.blocks.ids(side), P)
        return P

    def _effective_user(self):
        if not self.implicit:
            return self.P["user"]
        P = self.P["user"].copy()
        P[:, : self.k] += self.Z
        return P

    def half_step(self, side):
        blocks, specs, options, k = self.blocks, self.specs, self.options, self.k
        other = _other(side)
        P_other = self.P["item"] if side == "user" else self._effective_user()
        own = [self.P[side]] if options["nonnegative"] else []  # warm start of the NNLS solver
        implicit = self.implicit and side == "user"
        task = Call(_half_step_task, dict(spec=specs[side], other_spec=specs[other], options=options, k=k,
                                          implicit=implicit))
        table = blocks.map_blocks(side, task, "key int, x binary, z binary, loss double, penalty double", own=own,
                                  other=[P_other, self.Y] if implicit else [P_other])
        self.P[side] = np.vstack([codec.decode(x) for x in table.column("x").to_pylist()])
        if implicit:
            self.Z = np.vstack([codec.decode(z) for z in table.column("z").to_pylist()])
        self.penalty[side] = float(np.sum(table.column("penalty").to_numpy()))
        return float(np.sum(table.column("loss").to_numpy()))

    def implicit_products(self, vector, token):
        """Σ over user blocks of the Y problem's pieces: ``(rhs, A v)`` (m×k each); one pass.

        Each block's Grams do not change during one implicit step (``token``):
        they are computed on its first pass and kept in the block's scratch
        (where resident tasks and the local backend keep it between passes).
        """
        task = Call(_implicit_products_task, dict(specs=self.specs, mu=self.blocks.mu, k=self.k, token=token))
        table = self.blocks.map_blocks("user", task, "key int, rhs binary, product binary", own=[self.P["user"]],
                                       other=[self.P["item"], vector])
        rhs = sum(codec.decode(r) for r in table.column("rhs").to_pylist())
        return rhs, sum(codec.decode(p) for p in table.column("product").to_pylist())

    def implicit_step(self):
        """A few conjugate-gradient steps on the ridge problem of Y (kernels.ratings), warm-started."""
        lam = self.est.getImplicitRegParam()
        token = secrets.token_hex(8)  # unique across fits too: local blocks keep their scratch between fits
        rhs, AY = self.implicit_products(self.Y, token)
        r = rhs - (AY + lam * self.Y)
        p, rr = r.copy(), float(np.vdot(r, r))
        for _ in range(_CG_STEPS):
            if rr <= 1e-30:
                break
            _, Ap = self.implicit_products(p, token)
            Ap = Ap + lam * p
            alpha = rr / float(np.vdot(p, Ap))
            self.Y += alpha * p
            r -= alpha * Ap
            rr_new = float(np.vdot(r, r))
            p = r + (rr_new / rr) * p
            rr = rr_new

    def checkpoint(self):
        """The loop's :class:`~sparknmf.engine.checkpoint.LoopCheckpoint`, or None without ``checkpointDir``."""
        est = self.est
        if not est.getCheckpointDir():
            return None
        fingerprint = {"shape": list(self.blocks.shape), "nnz": self.blocks.nnz, "mu": self.blocks.mu,
                       **{name: est.getOrDefault(name) for name in _TRAJECTORY_PARAMS}}
        return LoopCheckpoint(est.getCheckpointDir(), est.getCheckpointInterval(), fingerprint)

    def run(self, resume=False):
        est, blocks = self.est, self.blocks
        max_iter, tol = est.getMaxIter(), est.getTol()
        history, start, iteration, stop_reason = [], time.perf_counter(), 0, "max_iter"
        checkpoint = self.checkpoint()
        state = checkpoint.load() if checkpoint is not None and resume else None
        if state is not None:
            iteration, history, arrays = state
            self.P = {"user": arrays["user"], "item": arrays["item"]}
            self.Z, self.Y = arrays["Z"], arrays["Y"]
            logger.info("resuming from %s at iteration %d", checkpoint.path, iteration)
        while iteration < max_iter:
            iteration += 1
            for side in SIDES:
                with blocks.describe(f"sparknmf: ALS iter {iteration}, update {side}s"):
                    loss = self.half_step(side)
                check_factors("MaskedALS", iteration, _REMEDY, {f"the {side} parameters": self.P[side]})
            objective = loss + self.penalty["user"] + self.penalty["item"]
            if self.implicit:
                objective += est.getImplicitRegParam() * float(np.vdot(self.Y, self.Y))
                with blocks.describe(f"sparknmf: ALS iter {iteration}, implicit vectors"):
                    self.implicit_step()
                check_factors("MaskedALS", iteration, _REMEDY, {"the implicit vectors": self.Y})
            check_objective("MaskedALS", iteration, objective, history, _REMEDY)
            history.append(objective)
            elapsed = time.perf_counter() - start
            logger.info("ALS iteration %d objective %.10g elapsed %.3fs", iteration, objective, elapsed)
            if checkpoint is not None and checkpoint.due(iteration):
                checkpoint.save(iteration, history, user=self.P["user"], item=self.P["item"], Z=self.Z, Y=self.Y)
            if self.callback is not None:
                self.callback(iteration, elapsed, objective)
            if len(history) >= 2 and abs(history[-2] - objective) <= tol * max(abs(history[-2]), 1e-300):
                stop_reason = "tol"
                break
        if self.implicit:  # the user factors of the final Y
            self.Z = self._implicit_sums()
        if stop_reason == "max_iter" and tol > 0 and max_iter > 0:
            warnings.warn(f"MaskedALS stopped at maxIter={max_iter} before the relative decrease reached tol={tol}",
                          ConvergenceWarning, stacklevel=4)
        return {
            "P": {"user": self._effective_user(), "item": self.P["item"]}, "Z": self.Z,
            "Y": self.Y if self.implicit else None, "specs": self.specs, "mu": blocks.mu,
            "ids": {"user": blocks.user_ids, "item": blocks.item_ids}, "idTypes": dict(blocks.id_types),
            "context": blocks.context, "history": history, "nIter": iteration, "stopReason": stop_reason,
            "elapsed": time.perf_counter() - start,
        }

    def _implicit_sums(self):
        table = self.blocks.map_blocks("user", Call(_implicit_sums_task, {}), "key int, z binary", other=[self.Y])
        return np.vstack([codec.decode(z) for z in table.column("z").to_pylist()])


# The block tasks of the loop (RatingBlocks.map_blocks): ``task(key, entries, scratch, own, others, **arguments)``
# -> one output row.  Registered, so that resident tasks receive them by name (sparknmf.engine.calls).
@block_function
def _half_step_task(key, entries, scratch, own, others, *, spec, other_spec, options, k, implicit):
    """A block's new rows of one side (given the other side's ``others[0]``), their data loss and penalty.

    With ``implicit`` (user side), ``others[1]`` are the implicit vectors Y:
    the block's users' sums z_u are added to the item factors' products.
    """
    P_o = others[0]
    offset = Z = None
    if implicit:
        Z = implicit_sums(entries, others[1])
        offset = implicit_offset(entries, Z, P_o[:, :k])
    X, loss, penalty = half_step(spec, other_spec, entries, P_o, init=own[0] if own else None, offset=offset,
                                 **options)
    return {"key": key, "x": codec.encode(X), "z": codec.encode(Z) if Z is not None else b"", "loss": loss,
            "penalty": penalty}


@block_function
def _implicit_products_task(key, entries, scratch, own, others, *, specs, mu, k, token):
    """A user block's pieces of the Y problem: ``(rhs, A v)`` for ``others = (item parameters, v)``.

    The block's Grams are kept in its scratch for the passes of one implicit step (``token``).
    """
    P_item, v = others
    kept = scratch.get("implicit")
    if kept is None or kept[0] != token:
        residual = entries.ratings - predict(specs["user"], specs["item"], own[0], P_item, entries.rows, entries.cols,
                                             entries, mu)
        kept = scratch["implicit"] = (token, *implicit_system(entries, P_item[:, :k], residual))
    _, grams, rhs = kept
    return {"key": key, "rhs": codec.encode(rhs), "product": codec.encode(implicit_apply(entries, grams, v))}


@block_function
def _implicit_sums_task(key, entries, scratch, own, others):
    """A user block's implicit sums z_u of the vectors ``others[0]``."""
    return {"key": key, "z": codec.encode(implicit_sums(entries, others[0]))}


# the Params that shape the iterates: a checkpoint resumes only with the same values
_TRAJECTORY_PARAMS = ("rank", "regParam", "biasRegParam", "regularization", "nonnegative", "biases", "timeBins",
                      "userDrift", "driftExponent", "implicitFeedback", "implicitRegParam", "initStd", "seed",
                      "weightCol", "timestampCol", "duplicates")


def _carry(old, old_ids, new_ids, fresh):
    """Rows of ``fresh`` (new index order) with the rows of ``old`` copied for ids present in both."""
    import pyarrow.compute as pc

    position = pc.index_in(new_ids, value_set=old_ids)
    known = position.is_valid().to_numpy(zero_copy_only=False)
    position = pc.fill_null(position, -1).to_numpy(zero_copy_only=False)
    out = fresh.copy()
    out[known] = old[position[known]]
    return out


class MaskedALSModel(Model, _MaskedALSModelParams, MLWritable, MLReadable):
    """A fitted :class:`MaskedALS`: parameters of every known user and item, ids, and the global mean.

    Attributes
    ----------
    rank : int
    globalMean : float
        μ, the weighted mean training rating.
    userIds, itemIds : pyarrow Array
        Ids in index order (sorted); row r of every user array is user ``userIds[r]``.
    userParams, itemParams : ndarray of shape (n, width_u), (m, width_i)
        ``[factor (k) | bias | extras]`` per row; the user factor includes the
        implicit-feedback sum z_u.
    implicitVectors : ndarray of shape (m, k) or None
        The SVD++ vectors y_j (for warm starts).
    history : list of float
        Objective after each iteration.
    nIter : int

    ``MaskedALSModel()`` with no arguments is an empty model, as ``load`` needs.
    """

    def __init__(self, state=None):
        super().__init__()
        self._state = state

    def _require(self):
        if self._state is None:
            raise ValueError("this MaskedALSModel is empty: fit a MaskedALS or load a saved model")
        return self._state

    # ---------------------------------------------------------------- attributes
    @property
    def rank(self) -> int:
        return self._require()["specs"]["user"].rank

    @property
    def globalMean(self) -> float:
        return float(self._require()["mu"])

    def ids(self, side):
        return self._require()["ids"][side]

    @property
    def userIds(self):
        return self.ids("user")

    @property
    def itemIds(self):
        return self.ids("item")

    @property
    def userParams(self) -> np.ndarray:
        return self._require()["P"]["user"]

    @property
    def itemParams(self) -> np.ndarray:
        return self._require()["P"]["item"]

    @property
    def implicitVectors(self):
        return self._require()["Y"]

    @property
    def history(self) -> list:
        return list(self._require()["history"])

    @property
    def nIter(self) -> int:
        return int(self._require()["nIter"])

    def _frame(self, side, values, column, dtype):
        from sparknmf.engine.session import get_session

        values = np.asarray(values, dtype=np.float64)
        data = pa.array(list(values), pa.list_(pa.float64())) if values.ndim == 2 else pa.array(values)
        return get_session().createDataFrame(pa.table({"id": self.ids(side), column: data}))

    @property
    def userFactors(self):
        """DataFrame ``(id, features array<double>)``: each user's factor w_u (+ z_u), k values."""
        return self._frame("user", self.userParams[:, : self.rank], "features", None)

    @property
    def itemFactors(self):
        """DataFrame ``(id, features array<double>)``: each item's factor h_i, k values."""
        return self._frame("item", self.itemParams[:, : self.rank], "features", None)

    def _biases(self, side):
        spec = self._require()["specs"][side]
        if not spec.bias:
            raise ValueError("this model was fitted with biases=False")
        return self._require()["P"][side][:, spec.rank]

    @property
    def userBiases(self):
        """DataFrame ``(id, bias double)``: b_u (a ValueError when fitted with biases=False)."""
        return self._frame("user", self._biases("user"), "bias", None)

    @property
    def itemBiases(self):
        """DataFrame ``(id, bias double)``: b_i (a ValueError when fitted with biases=False)."""
        return self._frame("item", self._biases("item"), "bias", None)

    @property
    def itemTimeBiases(self):
        """DataFrame ``(id, bins array<double>)``: b_i,bin for each time bin (timeBins > 0)."""
        spec = self._require()["specs"]["item"]
        if spec.kind != "bins":
            raise ValueError("this model has no time-binned item biases (timeBins=0)")
        start = spec.rank + int(spec.bias)
        return self._frame("item", self.itemParams[:, start : start + spec.bins], "bins", None)

    @property
    def userDrifts(self):
        """DataFrame ``(id, drift double)``: α_u of the user bias drift (userDrift=True)."""
        spec = self._require()["specs"]["user"]
        if spec.kind != "drift":
            raise ValueError("this model has no user drift (userDrift=False)")
        return self._frame("user", self.userParams[:, spec.rank + int(spec.bias)], "drift", None)

    # ---------------------------------------------------------------- predictions
    def _predictor(self):
        state = self._require()
        return _Predictor(state["specs"], state["P"]["user"], state["P"]["item"], state["mu"], state["context"],
                          self.getColdStartStrategy() == "biases", tuple(self.getRatingRange()))

    def predictIndices(self, users, items, days=None) -> np.ndarray:
        """r̂ for index pairs (users[n], items[n]); see :meth:`_Predictor.predict`."""
        return self._predictor().predict(users, items, days)

    def _indexed(self, dataset, columns):
        """``dataset`` with ``_u``/``_i`` index columns (null for unknown ids) for the given id columns."""
        from pyspark.sql import functions as F

        spark = dataset.sparkSession
        out = dataset
        for side, column, index in columns:
            out = out.join(F.broadcast(index_frame(spark, self.ids(side), column, index)), column, "left")
        return out

    def _transform(self, dataset):
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, StructField, StructType

        self._require()
        user_col, item_col, pred_col = self.getUserCol(), self.getItemCol(), self.getPredictionCol()
        time_col = self.getTimestampCol()
        timed = self._require()["context"].timed and time_col in dataset.columns
        check_columns(dataset, [user_col, item_col], "MaskedALSModel.transform")
        original = dataset.columns
        frame = self._indexed(dataset, [("user", user_col, "_u"), ("item", item_col, "_i")])
        if timed:
            from sparknmf.ratings.ingest import day_column

            frame = frame.withColumn("_day", day_column(dataset, time_col))
        if self.getColdStartStrategy() == "drop":
            frame = frame.filter(F.col("_u").isNotNull() & F.col("_i").isNotNull())
        frame = frame.select(*original, "_u", "_i", *(["_day"] if timed else []))
        predictor = self._predictor()

        def run(batches):
            for batch in batches:
                users = pa.compute.fill_null(batch.column("_u"), -1).to_numpy(zero_copy_only=False)
                items = pa.compute.fill_null(batch.column("_i"), -1).to_numpy(zero_copy_only=False)
                days = batch.column("_day").to_numpy(zero_copy_only=False) if timed else None
                pred = predictor.predict(users, items, days)
                keep = batch.select(original)
                yield keep.append_column(pred_col, pa.array(pred, pa.float64()))

        schema = StructType([*dataset.schema.fields, StructField(pred_col, DoubleType())])
        return frame.mapInArrow(run, schema)

    # ---------------------------------------------------------------- recommendations
    def recommendForAllUsers(self, numItems, *, exclude=None, candidates=None):
        """Top ``numItems`` items for every user.

        Returns a DataFrame ``(userCol, recommendations array<struct<itemCol, rating float>>)``,
        best first.  ``exclude``: a DataFrame of (userCol, itemCol) pairs never
        to recommend (e.g. the training ratings, to leave out already-rated
        items); ``candidates``: a list or DataFrame (itemCol) of the only items
        to recommend.  Scores are the static predictions μ + b_u + b_i + w_uᵀh_i
        (no time terms), computed by blocks (see :func:`~sparknmf.kernels.topn.top_n`).
        """
        return self._recommend("user", numItems, None, exclude, candidates)

    def recommendForUserSubset(self, dataset, numItems, *, exclude=None, candidates=None):
        """As :meth:`recommendForAllUsers` for the users in ``dataset[userCol]`` (unknown ids are skipped)."""
        return self._recommend("user", numItems, dataset, exclude, candidates)

    def recommendForAllItems(self, numUsers, *, exclude=None, candidates=None):
        """Top ``numUsers`` users for every item: ``(itemCol, recommendations array<struct<userCol, rating float>>)``.

        ``exclude`` as for :meth:`recommendForAllUsers`; ``candidates`` restricts the users.
        """
        return self._recommend("item", numUsers, None, exclude, candidates)

    def recommendForItemSubset(self, dataset, numUsers, *, exclude=None, candidates=None):
        """As :meth:`recommendForAllItems` for the items in ``dataset[itemCol]``."""
        return self._recommend("item", numUsers, dataset, exclude, candidates)

    def _column(self, side):
        return self.getUserCol() if side == "user" else self.getItemCol()

    def _recommend(self, side, num, subset, exclude, candidates):
        from pyspark.sql import functions as F

        from sparknmf.engine.session import get_session

        state = self._require()
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"the number of recommendations must be an integer >= 1, got {num!r}")
        target = _other(side)
        qcol, tcol = self._column(side), self._column(target)
        spark = subset.sparkSession if subset is not None else get_session()
        n = len(self.ids(side))
        step = min(_QUERY_BLOCK, n)
        if subset is None:
            queries = spark.range(n).select(F.col("id").alias("_q"))
        else:
            check_columns(subset, [qcol], f"MaskedALSModel.recommendFor{side.title()}Subset")
            queries = (self._indexed(subset.select(qcol), [(side, qcol, "_q")])
                       .filter(F.col("_q").isNotNull()).select("_q").distinct())
        rows = queries.withColumn("_t", F.lit(-1).cast("long"))
        if exclude is not None:
            check_columns(exclude, [qcol, tcol], "MaskedALSModel recommendations (exclude)")
            pairs = self._indexed(exclude.select(qcol, tcol), [(side, qcol, "_q"), (target, tcol, "_t")])
            pairs = pairs.filter(F.col("_q").isNotNull() & F.col("_t").isNotNull()).select("_q", "_t")
            if subset is not None:
                pairs = pairs.join(queries, "_q", "left_semi")
            rows = rows.unionByName(pairs)
        allowed = self._candidates(target, tcol, candidates)
        rows = rows.withColumn("_key", (F.col("_q") / step).cast("long"))
        spec = state["specs"]
        Q, T = state["P"][side], state["P"][target]
        mu = state["mu"]
        q_bias = Q[:, spec[side].rank] if spec[side].bias else np.zeros(Q.shape[0])
        t_bias = T[:, spec[target].rank] if spec[target].bias else np.zeros(T.shape[0])
        k = self.rank
        q_ids, t_ids = self.ids(side), self.ids(target)
        out_schema = pa.schema([
            (qcol, q_ids.type),
            ("recommendations", pa.list_(pa.struct([(tcol, t_ids.type), ("rating", pa.float32())]))),
        ])

        def run(table):
            q = table.column("_q").to_numpy()
            t = table.column("_t").to_numpy()
            users, inverse = np.unique(q, return_inverse=True)
            excluded = t >= 0
            top_t, top_s = top_n(Q[users, :k], T[:, :k], num, bias=t_bias, candidates=allowed,
                                 exclude=(inverse[excluded], t[excluded]))
            scores = top_s + mu + q_bias[users][:, None]
            valid = np.isfinite(top_s)
            counts = valid.sum(axis=1)
            offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
            flat_t = top_t[valid]
            recs = pa.StructArray.from_arrays(
                [t_ids.take(pa.array(flat_t, pa.int64())), pa.array(scores[valid].astype(np.float32))],
                fields=list(out_schema.field("recommendations").type.value_type))
            return pa.table({qcol: q_ids.take(pa.array(users, pa.int64())),
                             "recommendations": pa.ListArray.from_arrays(offsets, recs)}, schema=out_schema)

        types = state["idTypes"]
        ddl = (f"`{qcol}` {types[side]}, recommendations array<struct<`{tcol}`:{types[target]},rating:float>>")
        return rows.groupBy("_key").applyInArrow(run, ddl)

    def _candidates(self, side, column, candidates):
        """Sorted indices of the candidate ``side`` ids (None = all); unknown ids are ignored."""
        if candidates is None:
            return None
        if hasattr(candidates, "sparkSession"):
            check_columns(candidates, [column], "MaskedALSModel recommendations (candidates)")
            values = candidates.select(column).toArrow().column(0).combine_chunks()
        else:
            values = pa.array(list(candidates), type=self.ids(side).type)
        import pyarrow.compute as pc

        index = pc.index_in(values, value_set=self.ids(side)).drop_null().to_numpy(zero_copy_only=False)
        return np.unique(index.astype(np.int64))

    # ---------------------------------------------------------------- persistence
    def write(self):
        return _ModelWriter(self)

    @classmethod
    def read(cls):
        return _Reader(cls)

    def _load_arrays(self, path, spark, metadata):
        """Restore the parameters, ids and fit record (called by the reader after the Params)."""
        from sparknmf.ratings.store import StepContext

        try:
            specs = {side: SideSpec(**metadata["specs"][side]) for side in SIDES}
            (n, m), c, implicit = metadata["shape"], metadata["context"], bool(metadata["implicit"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}/metadata lacks the model's layout (specs, shape, context)") from None
        k = specs["user"].rank
        width_u = specs["user"].width + (k if implicit else 0) + int(c["drift"])
        width_i = specs["item"].width + (k if implicit else 0)
        users, user_ids = persistence.read_rows(spark, f"{path}/users", n, width_u)
        items, item_ids = persistence.read_rows(spark, f"{path}/items", m, width_i)
        wu, wi = specs["user"].width, specs["item"].width
        context = StepContext(weighted=c["weighted"], timed=c["timed"], bins=c["bins"], day_range=tuple(c["dayRange"]),
                              mean_days=users[:, -1].copy() if c["drift"] else None, beta=c["beta"])
        self._state = {
            "P": {"user": users[:, :wu].copy(), "item": items[:, :wi].copy()},
            "Z": users[:, wu : wu + k].copy() if implicit else np.zeros((n, k)),
            "Y": items[:, wi : wi + k].copy() if implicit else None, "specs": specs, "mu": float(metadata["mu"]),
            "ids": {"user": user_ids, "item": item_ids}, "idTypes": metadata["idTypes"], "context": context,
            "history": metadata["history"], "nIter": metadata["nIter"], "stopReason": metadata["stopReason"],
            "elapsed": metadata["elapsed"],
        }


_QUERY_BLOCK = 4096  # queries scored together in one task group
class _Predictor:
    """The prediction rule of a model, small enough to ship with a task."""

    def __init__(self, specs, P_user, P_item, mu, context, biases_for_unknown, rating_range):
        self.specs, self.P_user, self.P_item, self.mu, self.context = specs, P_user, P_item, mu, context
        self.biases_for_unknown, self.rating_range = biases_for_unknown, rating_range

    def predict(self, users, items, days=None) -> np.ndarray:
        """r̂ for index pairs (users[n], items[n]); ``days`` (n,) the rating times in days (None: the last day).

        Index −1 means unknown: NaN, or with ``coldStartStrategy="biases"``
        μ plus the known side's bias terms.  Times outside the training range
        fall in the first or last bin.  Clipped to ``ratingRange`` when set.
        """
        specs, ctx = self.specs, self.context
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        known_u, known_i = users >= 0, items >= 0
        u, i = np.maximum(users, 0), np.maximum(items, 0)
        nnz = users.shape[0]
        entries = Entries(np.array([0, nnz]), i, np.zeros(nnz))
        if ctx.timed:
            days = np.full(nnz, ctx.day_range[1]) if days is None else np.asarray(days, np.float64)
            entries.bins, dev = ctx.time_terms(days, u)
            entries.dev = None if dev is None else np.where(known_u, dev, 0.0)
        k = specs["user"].rank
        pred = (self.mu + np.where(known_u, specs["user"].contribution(self.P_user, u, entries), 0.0)
                + np.where(known_i, specs["item"].contribution(self.P_item, i, entries), 0.0)
                + np.where(known_u & known_i, np.einsum("nk,nk->n", self.P_user[u, :k], self.P_item[i, :k]), 0.0))
        if not self.biases_for_unknown:
            pred = np.where(known_u & known_i, pred, np.nan)
        if self.rating_range:
            pred = np.clip(pred, *self.rating_range)
        return pred


# -------------------------------------------------------------------------------- persistence
_ParamsWriter = persistence.ParamsWriter


def _spec_dict(spec: SideSpec) -> dict:
    return {"rank": spec.rank, "bias": spec.bias, "kind": spec.kind, "bins": spec.bins}


class _ModelWriter(_ParamsWriter):
    """Writes a MaskedALSModel: metadata + ``users/`` and ``items/`` Parquet rows with their ids.

    User rows are ``[params | z (implicit) | mean day (drift)]``, item rows ``[params | y (implicit)]``.
    """

    def saveImpl(self, path):
        model, spark = self.instance, self.sparkSession
        state = model._require()
        ctx = state["context"]
        implicit = state["Y"] is not None
        users = [state["P"]["user"]] + ([state["Z"]] if implicit else [])
        users += [ctx.mean_days[:, None]] if ctx.mean_days is not None else []
        items = [state["P"]["item"]] + ([state["Y"]] if implicit else [])
        extra = {
            "specs": {side: _spec_dict(state["specs"][side]) for side in SIDES}, "mu": state["mu"],
            "implicit": implicit, "idTypes": state["idTypes"], "history": state["history"], "nIter": state["nIter"],
            "stopReason": state["stopReason"], "elapsed": state["elapsed"],
            "context": {"weighted": ctx.weighted, "timed": ctx.timed, "bins": ctx.bins,
                        "dayRange": list(ctx.day_range), "drift": ctx.mean_days is not None, "beta": ctx.beta},
            "shape": [len(state["ids"]["user"]), len(state["ids"]["item"])],
        }
        persistence.write_metadata(model, path, spark, extra, overwrite=self.shouldOverwrite)
        for name, parts, side in (("users", users, "user"), ("items", items, "item")):
            persistence.write_rows(spark, f"{path}/{name}", np.hstack(parts), state["ids"][side], overwrite=self.shouldOverwrite)


_Reader = persistence.ParamsReader
