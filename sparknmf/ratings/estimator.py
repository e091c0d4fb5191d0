"""Ratings: masked ALS with biases, time terms, implicit feedback and top-N recommendations.

Model (Koren, Bell & Volinsky 2009; Koren 2008 and 2009)::

    r̂_ui(t) = μ + b_u + α_u·dev_u(t) + b_i + b_i,bin(t) + (w_u + |N(u)|^-½ Σ_{j∈N(u)} y_j)ᵀ h_i

fitted on the **observed ratings only** (matrix completion; a missing rating is
unknown, not zero), by alternating exact ridge solves of every user's and every
item's parameters (:mod:`sparknmf.kernels.als`).  The time terms (item
bias per time bin, user drift) and the implicit-feedback vectors ``y_j`` (SVD++,
N(u) = the items u rated) are options.

With ``implicitPrefs=True`` the rows are events (plays, clicks, purchases) and the model is Hu, Koren &
Volinsky's instead: x_uᵀy_i fitted to the preferences p_ui = [r_ui > 0] over **all** pairs, weighted by
the confidences 1 + α·f(|r_ui|) (:mod:`sparknmf.kernels.implicit`); biases, SVD++ and time terms are off.

This module holds the estimator (its Params and the fit entry points); the
loop and its block tasks are in :mod:`sparknmf.ratings.fit`, the rating
blocks in :mod:`sparknmf.ratings.store` (built by :mod:`sparknmf.ratings.ingest`),
the fitted model in :mod:`sparknmf.ratings.model`.

References
----------
Y. Koren, R. Bell and C. Volinsky (2009), "Matrix factorization techniques for recommender systems",
IEEE Computer 42(8), 30-37. https://doi.org/10.1109/MC.2009.263
Y. Koren (2008), "Factorization meets the neighborhood", KDD '08. https://doi.org/10.1145/1401890.1401944
Y. Hu, Y. Koren and C. Volinsky (2008), "Collaborative filtering for implicit feedback datasets", ICDM '08.
https://doi.org/10.1109/ICDM.2008.22
Y. Koren (2009), "Collaborative filtering with temporal dynamics", KDD '09. https://doi.org/10.1145/1557019.1557072
Y. Zhou, D. Wilkinson, R. Schreiber and R. Pan (2008), "Large-scale parallel collaborative filtering for
the Netflix prize" (ALS-WR), AAIM 2008. https://doi.org/10.1007/978-3-540-68880-8_32
"""

from __future__ import annotations

import warnings

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasCheckpointInterval, HasMaxIter, HasSeed, HasTol, HasWeightCol
from pyspark.ml.util import MLReadable, MLWritable

from sparknmf.engine import persistence
from sparknmf.engine.ingest import check_columns
from sparknmf.engine.placement import PLACEMENTS, choose_placement, driver_budget, factor_bytes, warn_resident_runs_jobs
from sparknmf.engine.resident import EXECUTION_MODES
from sparknmf.errors import InvalidInputError
from sparknmf.kernels.implicit import CONFIDENCES
from sparknmf.params import HasExecutionMode, HasVerbose, Interval, OneOf, RangePair, check_params, with_accessors
from sparknmf.progress import progress
from sparknmf.ratings.distributed import ExecutorFit
from sparknmf.ratings.distributed_implicit import PrefsExecutorFit
from sparknmf.ratings.fit import FitLoop, side_specs
from sparknmf.ratings.frame_checkpoint import FrameCheckpoint
from sparknmf.ratings.grid import GridFits
from sparknmf.ratings.ingest import DUPLICATE_POLICIES, ingest_ratings, same_id_type
from sparknmf.ratings.model import COLD_START_STRATEGIES, MaskedALSModel, MaskedALSModelParams
from sparknmf.ratings.store import SIDES
from sparknmf.ratings.warm_frames import WarmStart

__all__ = ["BACKENDS", "INGEST_PARAMS", "MLLIB_SCALE_RULE", "REGULARIZATIONS", "MaskedALS"]

REGULARIZATIONS = ("plain", "weighted")
BACKENDS = ("auto", "local", "spark")
# the Params ingest reads: the grid points of fitMultiple that agree on them share one set of rating blocks
INGEST_PARAMS = ("userCol", "itemCol", "ratingCol", "weightCol", "timestampCol", "ratingRange", "duplicates",
                 "numUserBlocks", "numItemBlocks", "timeBins", "userDrift", "driftExponent", "backend", "localLimit",
                 "factorPlacement")
# a plain regParam below the first number, on ratings averaging at least the second per user and item, warns
MLLIB_SCALE_RULE = (1.0, 10.0)


@with_accessors
class _MaskedALSParams(MaskedALSModelParams, HasMaxIter, HasTol, HasSeed, HasCheckpointInterval, HasWeightCol,
                       HasExecutionMode, HasVerbose):
    """Fit Params of :class:`MaskedALS` (defaults in ``_setDefault`` only)."""

    rank = Param(Params._dummy(), "rank", "rank k of the factors (>= 1)", typeConverter=TypeConverters.toInt)
    regParam = Param(Params._dummy(), "regParam",
                     "λ: ridge weight of the factors. NOT MLlib's scale: with regularization='plain' (the default) "
                     "λ is not multiplied by the row's rating count as MLlib's ALS-WR does, so MLlib's λ is about "
                     "λ_MLlib × (mean ratings per user and item) here (MLlib's 0.1 ≈ 6 on MovieLens 100K), or keep "
                     "MLlib's value with regularization='weighted'; a value < 1 on rows averaging >= 10 ratings "
                     "warns (docs/ratings.md, 'Coming from MLlib')", typeConverter=TypeConverters.toFloat)
    biasRegParam = Param(Params._dummy(), "biasRegParam", "λ_b: ridge weight of biases, bin biases and drifts",
                         typeConverter=TypeConverters.toFloat)
    regularization = Param(Params._dummy(), "regularization",
                           "'plain' (λ‖x‖²) or 'weighted' (λ·n_x‖x‖², n_x the row's rating count: ALS-WR)",
                           typeConverter=TypeConverters.toString)
    nonnegative = Param(Params._dummy(), "nonnegative", "non-negative factors (exact NNLS per row)",
                        typeConverter=TypeConverters.toBoolean)
    biases = Param(Params._dummy(), "biases", "fit user and item biases b_u, b_i",
                   typeConverter=TypeConverters.toBoolean)
    timeBins = Param(Params._dummy(), "timeBins", "number of time bins of the item biases b_i,bin(t) (0 = off)",
                     typeConverter=TypeConverters.toInt)
    userDrift = Param(Params._dummy(), "userDrift", "fit a user bias drift α_u·dev_u(t) (needs timestampCol)",
                      typeConverter=TypeConverters.toBoolean)
    driftExponent = Param(Params._dummy(), "driftExponent", "β of dev_u(t) = sign(t − t̄_u)|t − t̄_u|^β (days)",
                          typeConverter=TypeConverters.toFloat)
    implicitFeedback = Param(Params._dummy(), "implicitFeedback",
                             "SVD++ terms on explicit ratings (on by default): add |N(u)|^-½ Σ_{j∈N(u)} y_j to each "
                             "user's factor, N(u) = items u rated. NOT MLlib's implicitPrefs: for plays, clicks or "
                             "purchases set implicitPrefs=True", typeConverter=TypeConverters.toBoolean)
    implicitRegParam = Param(Params._dummy(), "implicitRegParam", "λ_y: ridge weight of the implicit vectors y_j",
                             typeConverter=TypeConverters.toFloat)
    implicitPrefs = Param(Params._dummy(), "implicitPrefs",
                          "implicit preference model (Hu, Koren & Volinsky 2008): ratings are events, every pair "
                          "counts with preference r > 0 and confidence 1 + alpha·f(|r|)",
                          typeConverter=TypeConverters.toBoolean)
    alpha = Param(Params._dummy(), "alpha", "α >= 0 of the implicit confidence 1 + α·f(|r|)",
                  typeConverter=TypeConverters.toFloat)
    confidence = Param(Params._dummy(), "confidence",
                       f"implicit confidence f: one of {list(CONFIDENCES)} (f(r) = r, or log(1 + r/epsilon))",
                       typeConverter=TypeConverters.toString)
    epsilon = Param(Params._dummy(), "epsilon", "ε > 0 of confidence='log'", typeConverter=TypeConverters.toFloat)
    cgSteps = Param(Params._dummy(), "cgSteps",
                    "implicitPrefs: conjugate-gradient steps per row and half-step, warm-started (as implicit's "
                    "ALS); 0 = exact batched Cholesky", typeConverter=TypeConverters.toInt)
    initStd = Param(Params._dummy(), "initStd", "standard deviation of the random initial factors",
                    typeConverter=TypeConverters.toFloat)
    numUserBlocks = Param(Params._dummy(), "numUserBlocks", "user blocks (0 = automatic)",
                          typeConverter=TypeConverters.toInt)
    numItemBlocks = Param(Params._dummy(), "numItemBlocks", "item blocks (0 = automatic)",
                          typeConverter=TypeConverters.toInt)
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
    factorPlacement = Param(Params._dummy(), "factorPlacement",
                            "where the user and item parameters live between half-steps: 'driver' (numpy arrays), "
                            "'executors' (cached DataFrames of row blocks, never collected) or 'auto' (executors when "
                            "they exceed the driver's budget: half of spark.driver.maxResultSize, a quarter of "
                            "spark.driver.memory)", typeConverter=TypeConverters.toString)
    checkpointDir = Param(Params._dummy(), "checkpointDir",
                          "directory for loop checkpoints every checkpointInterval iterations ('' = none): on the "
                          "driver, or with factorPlacement='executors' a path the executors write too (a local "
                          "master, a shared mount)",
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
        "alpha": Interval(0),
        "confidence": OneOf(CONFIDENCES),
        "epsilon": Interval(0, open_low=True),
        "cgSteps": Interval(0, integer=True),
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
        "ratingRange": RangePair(),
        "executionMode": OneOf(EXECUTION_MODES),
        "factorPlacement": OneOf(PLACEMENTS),
        "verbose": Interval(0, integer=True),
    }

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(rank=10, regParam=12.0, biasRegParam=10.0, regularization="plain", nonnegative=False,
                         biases=True, timeBins=0, userDrift=False, driftExponent=0.4, implicitFeedback=True,
                         implicitRegParam=50.0, implicitPrefs=False, alpha=1.0, confidence="linear", epsilon=1.0,
                         cgSteps=0, initStd=0.1, numUserBlocks=0, numItemBlocks=0, duplicates="error", backend="auto",
                         localLimit=1_000_000, maxIter=15, tol=1e-4, seed=0, checkpointInterval=10,
                         checkpointDir="", weightCol="", factorPlacement="auto")

    def _check_implicit_prefs(self, name):
        """implicitPrefs: the explicit-rating terms are off; setting one of them on is an error, not ignored."""
        refused = [f"{p}=True" for p in ("biases", "implicitFeedback", "userDrift")
                   if self.isSet(p) and self.getOrDefault(p)]
        refused += ["timeBins > 0"] if self.getTimeBins() > 0 else []
        refused += ["ratingRange"] if self.getRatingRange() else []
        if self.getNonnegative() and self.getCgSteps():
            raise ValueError(f"{name}: nonnegative=True cannot be combined with cgSteps={self.getCgSteps()}: the "
                             "non-negative rows are solved by exact NNLS (set cgSteps=0)")
        if refused:
            confusion = (" implicitFeedback is SVD++ on explicit ratings (Koren 2008), not a switch for implicit "
                         "data: MLlib's implicitPrefs is implicitPrefs here." if "implicitFeedback=True" in refused
                         else "")
            raise ValueError(
                f"{name}: implicitPrefs=True cannot be combined with {', '.join(refused)}: the implicit "
                "preference model x_uᵀy_i has no biases, SVD++ terms, time terms or rating scale (biases and "
                f"implicitFeedback are off by default under implicitPrefs; leave them unset or False).{confusion}")

    def _check_prefs_params_unused(self, name):
        """Without implicitPrefs, alpha/confidence/epsilon do nothing: a warning, or an error next to implicitFeedback.

        Setting one of them together with ``implicitFeedback=True`` is the mark of MLlib's
        ``implicitPrefs`` mistaken for our SVD++ switch: the fit would model events as explicit ratings.
        """
        unused = [f"{p}={self.getOrDefault(p)!r}" for p in ("alpha", "confidence", "epsilon") if self.isSet(p)]
        if not unused:
            return
        if self.isSet("implicitFeedback") and self.getImplicitFeedback():
            raise ValueError(
                f"{name}: implicitFeedback=True with {', '.join(unused)}: those set the confidence of implicitPrefs "
                "(MLlib's implicit preference model, for plays, clicks, purchases), while implicitFeedback adds "
                "SVD++ terms to a model of explicit ratings. For events set implicitPrefs=True (and leave "
                "implicitFeedback unset); for ratings leave alpha, confidence and epsilon unset")
        warnings.warn(f"{name}: {', '.join(unused)} ignored: they apply to implicitPrefs=True only (implicitFeedback, "
                      "on by default, is SVD++ on explicit ratings, not MLlib's implicitPrefs)", UserWarning,
                      stacklevel=3)

    def _check_rules(self):
        """Cross-parameter rules, after the constraints table."""
        check_params(self)
        name = type(self).__name__
        needs_time = [p for p, on in (("timeBins", self.getTimeBins() > 0), ("userDrift", self.getUserDrift()),
                                      ("duplicates='last'", self.getDuplicates() == "last")) if on]
        if needs_time and not self.getTimestampCol():
            raise ValueError(f"{name}: {', '.join(needs_time)} need(s) timestampCol")
        if self.getImplicitPrefs():
            self._check_implicit_prefs(name)
        elif self.getCgSteps() > 0:
            raise ValueError(f"{name}: cgSteps={self.getCgSteps()} applies to implicitPrefs=True only")
        elif self.getNonnegative() and self.getImplicitFeedback():
            raise ValueError(f"{name}: nonnegative=True and implicitFeedback=True cannot be combined "
                             "(the implicit vectors are unconstrained)")
        else:
            self._check_prefs_params_unused(name)
        if self.isSet("checkpointInterval") and not self.getCheckpointDir():
            warnings.warn(f"{name}: checkpointInterval is ignored without checkpointDir: the plan does not grow "
                          "across iterations, so Spark needs no checkpoint (checkpointDir saves the loop state "
                          "for resume=True)", UserWarning, stacklevel=3)


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

    Coming from MLlib: plain λ is not multiplied by the row's rating count, so
    MLlib's ``regParam`` is about λ_MLlib × (mean ratings per user and item)
    here, or the same value with ``regularization="weighted"``; a plain value
    that looks MLlib-scaled warns (:data:`MLLIB_SCALE_RULE`).  ``implicitFeedback``
    is SVD++ on explicit ratings, not MLlib's ``implicitPrefs`` (docs/ratings.md,
    "Coming from MLlib").  :meth:`fitMultiple` lets ``CrossValidator`` and
    ``TrainValidationSplit`` fit a grid on ratings ingested once.

    ``factorPlacement`` says where the user and item parameters live between
    half-steps: on the driver (``"driver"``), or in the executors as cached
    DataFrames of row blocks never collected (``"executors"``,
    :mod:`sparknmf.ratings.distributed`); ``"auto"`` picks the executors when
    the parameters exceed the driver's budget
    (:func:`~sparknmf.engine.placement.choose_placement`).  In the executors
    every half-step is a Spark job, also under ``executionMode="resident"``
    (with a warning: resident tasks would receive every parameter row through
    the driver's socket).  Warm starts (:meth:`fitFrom` with a model) work in
    either placement, and so do loop checkpoints (``checkpointDir``, ``resume``:
    with the executors placement the executors write the parameter blocks,
    :mod:`sparknmf.ratings.frame_checkpoint`).

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
                 implicitRegParam=50.0, implicitPrefs=False, alpha=1.0, confidence="linear", epsilon=1.0,
                 cgSteps=0, initStd=0.1, numUserBlocks=0, numItemBlocks=0, duplicates="error", backend="auto",
                 localLimit=1_000_000, maxIter=15, tol=1e-4, seed=0, checkpointInterval=10,
                 checkpointDir="", weightCol="", userCol="user", itemCol="item", ratingCol="rating", timestampCol="",
                 predictionCol="prediction", coldStartStrategy="nan", ratingRange=None,
                 executionMode="auto", factorPlacement="auto", verbose=0):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, rank=10, regParam=12.0, biasRegParam=10.0, regularization="plain", nonnegative=False,
                  biases=True, timeBins=0, userDrift=False, driftExponent=0.4, implicitFeedback=True,
                  implicitRegParam=50.0, implicitPrefs=False, alpha=1.0, confidence="linear", epsilon=1.0,
                  cgSteps=0, initStd=0.1, numUserBlocks=0, numItemBlocks=0, duplicates="error", backend="auto",
                 localLimit=1_000_000, maxIter=15, tol=1e-4, seed=0, checkpointInterval=10,
                  checkpointDir="", weightCol="", userCol="user", itemCol="item", ratingCol="rating", timestampCol="",
                  predictionCol="prediction", coldStartStrategy="nan", ratingRange=None,
                  executionMode="auto", factorPlacement="auto", verbose=0):
        """Set Params by keyword."""
        return self._set(**self._input_kwargs)

    # ---------------------------------------------------------------- fitting
    def ingest(self, dataset):
        """Validate and store ``dataset`` as rating blocks (reusable by :meth:`fitBlocks`)."""
        self._check_rules()
        return ingest_ratings(
            dataset, user_col=self.getUserCol(), item_col=self.getItemCol(), rating_col=self.getRatingCol(),
            weight_col=self.getWeightCol(), time_col=self.getTimestampCol(),
            rating_range=tuple(self.getRatingRange() or ()),
            duplicates=self.getDuplicates(), user_blocks=self.getNumUserBlocks(), item_blocks=self.getNumItemBlocks(),
            bins=self.getTimeBins(), drift_on=self.getUserDrift(), beta=self.getDriftExponent(),
            backend=self.getBackend(), local_limit=self.getLocalLimit(),
            placement=lambda n, m: self._placement(dataset.sparkSession, n, m),
        )

    def ingestKey(self) -> tuple:
        """The values of :data:`INGEST_PARAMS`: estimators with equal keys can fit the same ingested blocks."""
        values = (self.getOrDefault(name) for name in INGEST_PARAMS)
        return tuple(tuple(v) if isinstance(v, list) else v for v in values)

    def fitMultiple(self, dataset, paramMaps):
        """Fit one model per param map, ingesting ``dataset`` once per group of maps with the same :meth:`ingestKey`.

        What ``CrossValidator`` and ``TrainValidationSplit`` call: a grid over rank, regParam, biasRegParam,
        implicitRegParam, maxIter, ... stores the training ratings as blocks once and fits every point on
        them (:class:`~sparknmf.ratings.grid.GridFits`).  Every param map is checked first, before any Spark
        job.

        Parameters
        ----------
        dataset : DataFrame
            Training ratings.
        paramMaps : sequence of dict {Param: value}

        Returns
        -------
        GridFits
            A thread-safe iterator of ``(index, model)``, each model equal to
            ``self.fit(dataset, paramMaps[index])``.
        """
        return GridFits(self, dataset, paramMaps)

    def _check_scale(self, blocks):
        """UserWarning when a plain ``regParam`` looks MLlib-scaled (:data:`MLLIB_SCALE_RULE`, docs/ratings.md)."""
        lam, (limit, count) = self.getRegParam(), MLLIB_SCALE_RULE
        if self.getImplicitPrefs() or self.getRegularization() != "plain" or not 0 < lam < limit:
            return
        n, m = blocks.shape
        mean = 2.0 * blocks.nnz / (n + m)  # ratings per user and item, averaged over all n + m rows
        if mean >= count:
            warnings.warn(
                f"MaskedALS: regParam={lam:g} looks MLlib-scaled. MLlib's ALS multiplies λ by each row's rating "
                f"count (ALS-WR); regularization='plain' (the default) does not. These ratings average {mean:.1f} "
                f"per user and item, so MLlib's regParam={lam:g} is about regParam={lam * mean:.3g} on our scale; "
                f"or keep {lam:g} with regularization='weighted' (MLlib's scaling). Rule: a plain regParam < "
                f"{limit:g} on ratings averaging >= {count:g} per user and item (docs/ratings.md, 'Coming from "
                "MLlib')", UserWarning, stacklevel=3)

    # ---------------------------------------------------------------- factor placement
    def _placement(self, spark, n, m, *, local=False):
        """``"driver"`` or ``"executors"`` for ``n`` users and ``m`` items (``factorPlacement``).

        ``auto`` picks ``executors`` when the parameters, (n + m) rows of
        rank + biases + time terms (+ rank for the implicit sums), exceed the
        driver's budget (:func:`~sparknmf.engine.placement.choose_placement`);
        a forced ``driver`` beyond it is a ValueError, and so is an
        ``executors`` placement with what it does not support.
        """
        specs = side_specs(self)
        svdpp = self.getImplicitFeedback() and not self.getImplicitPrefs()
        width = max(spec.width for spec in specs.values()) + (self.getRank() if svdpp else 0)
        placement = choose_placement(spark, self.getFactorPlacement(), n + m, width)
        if placement == "executors":
            why = ""
            if self.getFactorPlacement() == "auto":
                budget, setting = driver_budget(spark)
                why = (f" (chosen by factorPlacement='auto': the parameters take "
                       f"{factor_bytes(n + m, width) / 2**20:.1f} MiB, more than the driver's budget of "
                       f"{budget / 2**20:.1f} MiB set by {setting})")
            self._check_executors(why, local=local)
        return placement

    def _check_executors(self, why="", *, local=False):
        """ValueError naming what the executors placement does not support (before any fitting)."""
        if self.getBackend() == "local" or local:
            raise ValueError(f"MaskedALS: factorPlacement='executors'{why} does not support ratings held on the "
                             "driver (backend='local'; use backend='spark'); or use factorPlacement='driver'")

    def _check_initial(self, initial, id_types):
        """ValueError (InvalidInputError for the ids) when ``initial`` cannot warm-start this estimator.

        The initial model must have this rank and parameter rows as wide (the same biases and time
        terms), and ids of the types ``id_types`` (side -> Spark type of the ratings' ids; the integer
        types are interchangeable, :func:`~sparknmf.ratings.ingest.same_id_type`).
        """
        check_params(self)  # the Params that shape the rows are valid
        if initial.rank != self.getRank():
            raise ValueError(f"MaskedALS.fitFrom: the initial model has rank {initial.rank}, "
                             f"this estimator rank={self.getRank()}")
        trained = initial._require()
        for side, spec in side_specs(self).items():
            width = trained["specs"][side].width
            if width != spec.width:
                raise ValueError(f"MaskedALS.fitFrom: the initial model's {side} parameters have {width} columns, "
                                 f"this estimator needs {spec.width} (same rank, biases and time terms)")
            if not same_id_type(id_types[side], trained["idTypes"][side]):
                raise InvalidInputError(f"MaskedALS.fitFrom: the {side} ids are of type {id_types[side]}, the "
                                        f"initial model's of type {trained['idTypes'][side]}; ids are matched "
                                        "exactly, so give them the model's type")

    def _fit(self, dataset):
        return self.fitFrom(dataset)

    def fitFrom(self, dataset, initialModel=None, *, callback=None, resume=False):
        """Fit, warm-started from ``initialModel``'s parameters (known ids keep theirs; new ones start fresh).

        ``callback(iteration, elapsed, objective)`` is called after each iteration.  ``resume=True``
        continues from the checkpoint in ``checkpointDir`` (if there is one; it takes precedence over
        ``initialModel``); the result equals the uninterrupted fit.

        Every column of a known id's row is kept (factors, biases, time terms; with SVD++ also the
        implicit vectors of a model that holds them), ids absent from ``dataset`` are dropped.  With
        ``factorPlacement="executors"`` the initial model's rows are joined to the new ids by the
        executors (:mod:`sparknmf.ratings.warm_frames`), whichever placement the initial model has,
        and never collected; the fit equals the driver placement's warm start.  ``initialModel`` must
        have this estimator's rank, biases and time terms and ids of the same types (ValueError,
        before any Spark job).
        """
        if resume and not self.getCheckpointDir():
            raise ValueError("MaskedALS.fitFrom(resume=True) needs checkpointDir")
        if self.getFactorPlacement() == "executors":
            self._check_executors()
        if initialModel is not None:
            check_columns(dataset, [self.getUserCol(), self.getItemCol()], "MaskedALS.fitFrom")
            self._check_initial(initialModel, {side: dataset.schema[column].dataType.simpleString() for side, column
                                               in zip(SIDES, (self.getUserCol(), self.getItemCol()))})
        blocks = self.ingest(dataset)
        try:
            return self.fitBlocks(blocks, initialModel, callback=callback, resume=resume)
        finally:
            blocks.unpersist()

    def fitBlocks(self, blocks, initialModel=None, *, callback=None, resume=False):
        """Fit on already ingested :class:`~sparknmf.ratings.store.RatingBlocks` (e.g. in a parameter grid)."""
        self._check_rules()
        self._check_scale(blocks)
        if initialModel is not None:
            self._check_initial(initialModel, blocks.id_types)
        placement = self._placement(blocks.spark, *blocks.shape, local=blocks.local is not None)
        with progress(self.getVerbose(), type(self).__name__):
            if placement == "executors":
                warn_resident_runs_jobs(self.getExecutionMode(), self.getFactorPlacement(), stacklevel=4)
                loop = PrefsExecutorFit if self.getImplicitPrefs() else ExecutorFit
                svdpp = self.getImplicitFeedback() and not self.getImplicitPrefs()
                warm = None if initialModel is None else WarmStart(initialModel, blocks, svdpp)
                checkpoint = FrameCheckpoint(self, blocks, svdpp) if self.getCheckpointDir() else None
                state = loop(self, blocks, side_specs(self), callback, warm, checkpoint).run(resume)
            else:
                blocks.execution = self.getExecutionMode()
                # the start first: an initial model in the executors is read by Spark jobs, which would wait
                # forever for the task slots that resident block tasks hold
                loop = FitLoop(self, blocks, initialModel, callback)
                with blocks.serving(f"sparknmf: MaskedALS rank={self.getRank()}, resident block tasks",
                                    rank=self.getRank()):
                    state = loop.run(resume)
        model = MaskedALSModel(state)
        self._copyValues(model)
        return model

    # ---------------------------------------------------------------- persistence
    def write(self):
        return persistence.ParamsWriter(self)

    @classmethod
    def read(cls):
        return persistence.ParamsReader(cls)
