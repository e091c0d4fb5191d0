"""The fitted ratings model: :class:`MaskedALSModel` and its predictions; its files: :mod:`.model_files`.

A model holds every known user's and item's parameters (rows in sorted id
order, laid out as :class:`~sparknmf.kernels.als.SideSpec` says), the ids and
the global mean μ; it predicts r̂_ui(t) of :mod:`sparknmf.ratings.estimator`
with the implicit-feedback sum z_u folded into the user factor.  Its
``recommendFor...`` methods run :func:`~sparknmf.ratings.recommend.recommend`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute below
from pyspark.ml import Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasPredictionCol
from pyspark.ml.util import MLReadable, MLWritable

from sparknmf.engine import persistence
from sparknmf.engine.ingest import check_columns
from sparknmf.errors import InvalidInputError
from sparknmf.kernels.als import Entries
from sparknmf.params import OneOf, RangePair, check_param, check_params, with_accessors
from sparknmf.ratings.distributed import collect_blocks
from sparknmf.ratings.factor_frames import (
    FrameSide,
    id_frame,
    param_rows,
    recommend_blocks,
    shuffled,
)
from sparknmf.ratings.ingest import (
    check_distinct_columns,
    check_id_type,
    check_time_column,
    column_ref,
    day_column,
    with_indices,
)
from sparknmf.ratings.model_files import ModelWriter, load_state
from sparknmf.ratings.recommend import Side, check_count, recommend
from sparknmf.ratings.store import other_side

__all__ = ["COLD_START_STRATEGIES", "MaskedALSModel", "MaskedALSModelParams"]

COLD_START_STRATEGIES = ("nan", "drop", "biases")


@with_accessors
class MaskedALSModelParams(HasPredictionCol):
    """Column Params shared by :class:`~sparknmf.ratings.estimator.MaskedALS` and :class:`MaskedALSModel`."""

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


class MaskedALSModel(Model, MaskedALSModelParams, MLWritable, MLReadable):
    """A fitted :class:`~sparknmf.ratings.estimator.MaskedALS`: parameters of every known user and item, ids, μ.

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
    implicitSums : ndarray of shape (n, k)
        Each user's z_u = |N(u)|^-½ Σ_{j∈N(u)} y_j, part of its factor in
        ``userParams`` (zeros without implicit feedback; for warm starts).
    history : list of float
        Objective after each iteration.
    nIter : int

    ``MaskedALSModel()`` with no arguments is an empty model, as ``load`` needs.

    ``coldStartStrategy`` and ``ratingRange`` are checked when set (setters, ``setParams``, ``load``) and
    again before predicting (``copy`` and ``set`` bypass the setters): a ``ratingRange`` is ``[]`` or two
    finite numbers ``[low, high]`` with ``low < high``.

    Ids given to :meth:`transform` and the ``recommendFor...Subset`` methods (and in ``exclude`` /
    ``candidates``) must have the type of the training ids (:func:`~sparknmf.ratings.ingest.check_id_type`;
    the integer types are interchangeable): Spark would otherwise cast them, and the strings ``"1"`` and
    ``"01"`` would both match the integer 1.
    """

    _constraints = {"coldStartStrategy": OneOf(COLD_START_STRATEGIES), "ratingRange": RangePair()}

    def __init__(self, state=None):
        super().__init__()
        self._state = state

    def _set(self, **kwargs):
        """Set Params, refusing a value outside the :attr:`_constraints` table (ValueError) before setting any."""
        for name, value in kwargs.items():
            if name in self._constraints and value is not None:
                check_param(self, name, self.getParam(name).typeConverter(value), self._constraints[name])
        return super()._set(**kwargs)

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
        """The ``side``'s ids in index order (a pyarrow Array; collected from Spark for a loaded executors model)."""
        state = self._require()
        if state["ids"][side] is None:
            table = state["idFrames"][side].toArrow().sort_by("index")
            state["ids"][side] = table.column("id").combine_chunks()
        return state["ids"][side]

    def count(self, side) -> int:
        """The number of users (``side="user"``) or items the model knows, without collecting their ids."""
        state = self._require()
        counts = state.get("counts")
        return int(counts[side]) if counts else len(state["ids"][side])

    def _id_frame(self, side):
        """DataFrame ``(index long, id)`` of the ``side``'s ids (executors placement)."""
        from sparknmf.engine.session import get_session

        state = self._require()
        frames = state.setdefault("idFrames", {})
        if frames.get(side) is None:
            frames[side] = id_frame(get_session(), state["ids"][side])
        return frames[side]

    def _frame_side(self, side) -> FrameSide:
        state = self._require()
        spec = state["specs"][side]
        return FrameSide(side, self.getUserCol() if side == "user" else self.getItemCol(), self._id_frame(side),
                         state["idTypes"][side], state["frames"][side], state["steps"][side], state["counts"][side],
                         spec.rank, spec.bias)

    @property
    def userIds(self):
        return self.ids("user")

    @property
    def itemIds(self):
        return self.ids("item")

    @property
    def placement(self) -> str:
        """``"driver"`` (parameters as arrays) or ``"executors"`` (parameter blocks as DataFrames, never collected
        unless asked: :attr:`userParams`, :attr:`itemParams`)."""
        return "executors" if self._require().get("frames") else "driver"

    def parameters(self, side) -> np.ndarray:
        """The ``side``'s parameters as an array; collected from the executors with ``factorPlacement='executors'``."""
        state = self._require()
        if state.get("frames"):
            return collect_blocks(state["frames"][side], state["specs"][side].width)
        return state["P"][side]

    @property
    def userParams(self) -> np.ndarray:
        return self.parameters("user")

    @property
    def itemParams(self) -> np.ndarray:
        return self.parameters("item")

    @property
    def implicitVectors(self):
        return self._require()["Y"]

    @property
    def implicitSums(self) -> np.ndarray:
        state = self._require()
        return state["Z"] if state["Z"] is not None else np.zeros((len(self.userIds), self.rank))

    @property
    def implicitPrefs(self) -> bool:
        """Whether the model was fitted with ``implicitPrefs=True`` (scores x_uᵀy_i are preferences)."""
        return bool(self._require().get("implicitPrefs", False))

    @property
    def seenPairs(self):
        """The training events of an implicit model (None otherwise): an n×m ``scipy.sparse`` CSR of ones, or with
        the executors placement a DataFrame ``(user int, item int)`` of indices, never collected."""
        return self._require().get("seen")

    @property
    def history(self) -> list:
        return list(self._require()["history"])

    @property
    def nIter(self) -> int:
        return int(self._require()["nIter"])

    def _frame(self, side, start, stop, column, scalar=False):
        """DataFrame ``(id, column)``: columns ``start:stop`` of the ``side``'s parameters (one double if ``scalar``).

        With the executors placement it is made from the parameter blocks by the executors.
        """
        from pyspark.sql import functions as F

        from sparknmf.engine.session import get_session

        state = self._require()
        if state.get("frames"):
            rows = param_rows(state["frames"][side], state["steps"][side], start, stop)
            value = F.col("values")[0] if scalar else F.col("values")
            return rows.join(shuffled(self._id_frame(side)), "index").select("id", value.alias(column))
        values = np.asarray(state["P"][side][:, start:stop], dtype=np.float64)
        data = pa.array(values[:, 0]) if scalar else pa.array(list(values), pa.list_(pa.float64()))
        return get_session().createDataFrame(pa.table({"id": self.ids(side), column: data}))

    @property
    def userFactors(self):
        """DataFrame ``(id, features array<double>)``: each user's factor w_u (+ z_u), k values."""
        return self._frame("user", 0, self.rank, "features")

    @property
    def itemFactors(self):
        """DataFrame ``(id, features array<double>)``: each item's factor h_i, k values."""
        return self._frame("item", 0, self.rank, "features")

    def _biases(self, side, column):
        spec = self._require()["specs"][side]
        if not spec.bias:
            raise ValueError("this model was fitted with biases=False")
        return self._frame(side, spec.rank, spec.rank + 1, column, scalar=True)

    @property
    def userBiases(self):
        """DataFrame ``(id, bias double)``: b_u (a ValueError when fitted with biases=False)."""
        return self._biases("user", "bias")

    @property
    def itemBiases(self):
        """DataFrame ``(id, bias double)``: b_i (a ValueError when fitted with biases=False)."""
        return self._biases("item", "bias")

    @property
    def itemTimeBiases(self):
        """DataFrame ``(id, bins array<double>)``: b_i,bin for each time bin (timeBins > 0)."""
        spec = self._require()["specs"]["item"]
        if spec.kind != "bins":
            raise ValueError("this model has no time-binned item biases (timeBins=0)")
        start = spec.rank + int(spec.bias)
        return self._frame("item", start, start + spec.bins, "bins")

    @property
    def userDrifts(self):
        """DataFrame ``(id, drift double)``: α_u of the user bias drift (userDrift=True)."""
        spec = self._require()["specs"]["user"]
        if spec.kind != "drift":
            raise ValueError("this model has no user drift (userDrift=False)")
        start = spec.rank + int(spec.bias)
        return self._frame("user", start, start + 1, "drift", scalar=True)

    # ---------------------------------------------------------------- predictions
    def _predictor(self):
        state = self._require()
        check_params(self)
        return _Predictor(state["specs"], self.parameters("user"), self.parameters("item"), state["mu"],
                          state["context"],
                          self.getColdStartStrategy() == "biases", tuple(self.getRatingRange() or ()))

    def predictIndices(self, users, items, days=None) -> np.ndarray:
        """r̂ for index pairs (users[n], items[n]); see :meth:`_Predictor.predict`."""
        return self._predictor().predict(users, items, days)

    def _transform(self, dataset):
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, StructField, StructType

        state, whom = self._require(), "MaskedALSModel.transform"
        check_params(self)
        user_col, item_col, pred_col = self.getUserCol(), self.getItemCol(), self.getPredictionCol()
        time_col = self.getTimestampCol()
        timed = state["context"].timed and time_col in dataset.columns
        check_distinct_columns({"userCol": user_col, "itemCol": item_col, "timestampCol": time_col if timed else "",
                                "predictionCol": pred_col}, whom)
        check_columns(dataset, [user_col, item_col], whom)
        for side, column in (("user", user_col), ("item", item_col)):
            check_id_type(dataset, column, state["idTypes"][side], whom)
        if timed:
            check_time_column(dataset, time_col, whom)
        original = dataset.columns
        if state.get("frames"):
            return self._transform_frames(dataset, timed)
        frame = with_indices(dataset, [(self.userIds, user_col, "_u"), (self.itemIds, item_col, "_i")])
        if timed:
            frame = frame.withColumn("_day", day_column(dataset, time_col))
        if self.getColdStartStrategy() == "drop":
            frame = frame.filter(F.col("_u").isNotNull() & F.col("_i").isNotNull())
        # positional names for the Arrow function (pyspark's mapInArrow parses the names it is given, and a
        # backtick or a dot in one would fail); the output takes the original names back
        kept = [f"_c{n}" for n in range(len(original))]
        frame = (frame.select(*map(column_ref, original), "_u", "_i", *(["_day"] if timed else []))
                 .toDF(*kept, "_u", "_i", *(["_day"] if timed else [])))

        predictor = self._predictor()

        def run(batches):
            for batch in batches:
                users = pa.compute.fill_null(batch.column("_u"), -1).to_numpy(zero_copy_only=False)
                items = pa.compute.fill_null(batch.column("_i"), -1).to_numpy(zero_copy_only=False)
                days = batch.column("_day").to_numpy(zero_copy_only=False) if timed else None
                pred = predictor.predict(users, items, days)
                columns = [batch.column(name) for name in kept] + [pa.array(pred, pa.float64())]
                yield pa.RecordBatch.from_arrays(columns, names=[*original, pred_col])

        schema = StructType([*dataset.schema.fields, StructField(pred_col, DoubleType())])
        return frame.mapInArrow(run, schema)

    def _transform_frames(self, dataset, timed):
        """:meth:`transform` with the parameters in the executors: the ids and parameter rows are joined in."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, StructField, StructType

        state = self._require()
        original, pred_col = dataset.columns, self.getPredictionCol()
        kept = [f"_c{n}" for n in range(len(original))]
        extra = [day_column(dataset, self.getTimestampCol()).alias("_day")] if timed else []
        frame = dataset.select(*[column_ref(c).alias(name) for c, name in zip(original, kept)], *extra)
        for side, column, index in (("user", self.getUserCol(), "_u"), ("item", self.getItemCol(), "_i")):
            ids = self._id_frame(side).select(F.col("id").alias("_id"), F.col("index").alias(index))
            ids = shuffled(ids)
            frame = frame.join(ids, frame[kept[original.index(column)]] == ids["_id"], "left").drop("_id")
        if self.getColdStartStrategy() == "drop":
            frame = frame.filter(F.col("_u").isNotNull() & F.col("_i").isNotNull())
        for side, index, values in (("user", "_u", "_pu"), ("item", "_i", "_pi")):
            rows = param_rows(state["frames"][side], state["steps"][side])
            rows = shuffled(rows.select(F.col("index").alias(index), F.col("values").alias(values)))
            frame = frame.join(rows, index, "left")
        specs, ctx, mu = state["specs"], state["context"], state["mu"]
        options = (self.getColdStartStrategy() == "biases", tuple(self.getRatingRange() or ()))

        def run(batches):
            for batch in batches:
                users = pa.compute.fill_null(batch.column("_u"), -1).to_numpy(zero_copy_only=False)
                P_user, local_u = _gathered(batch.column("_pu"), specs["user"].width)
                P_item, local_i = _gathered(batch.column("_pi"), specs["item"].width)
                local_ctx = ctx
                if ctx.mean_days is not None:  # the drift's mean days, by the batch's rows
                    local_ctx = dataclasses.replace(ctx, mean_days=ctx.mean_days[np.maximum(users, 0)])
                predictor = _Predictor(specs, P_user, P_item, mu, local_ctx, *options)
                days = batch.column("_day").to_numpy(zero_copy_only=False) if timed else None
                pred = predictor.predict(local_u, local_i, days)
                columns = [batch.column(name) for name in kept] + [pa.array(pred, pa.float64())]
                yield pa.RecordBatch.from_arrays(columns, names=[*original, pred_col])

        schema = StructType([*dataset.schema.fields, StructField(pred_col, DoubleType())])
        return frame.select(*kept, "_u", "_pu", "_pi", *(["_day"] if timed else [])).mapInArrow(run, schema)

    # ---------------------------------------------------------------- recommendations
    def recommendForAllUsers(self, numItems, *, exclude=None, candidates=None, filterRated=None):
        """Top ``numItems`` items for every user.

        Returns a DataFrame ``(userCol, recommendations array<struct<itemCol, rating float>>)``,
        best first.  ``exclude``: a DataFrame of (userCol, itemCol) pairs never
        to recommend (e.g. the training ratings, to leave out already-rated
        items); ``candidates``: a list or DataFrame (itemCol) of the only items
        to recommend.  Scores are the static predictions μ + b_u + b_i + w_uᵀh_i
        (no time terms), computed by blocks (:mod:`sparknmf.ratings.recommend`);
        for an implicit model (``implicitPrefs``) the preferences x_uᵀy_i.

        ``filterRated``: leave out the pairs of the training events kept by an implicit model
        (:attr:`seenPairs`); None (the default) means True for an implicit model, False otherwise;
        True on an explicit model is a ValueError (pass ``exclude=`` the training ratings).
        """
        return self._recommend("user", numItems, None, exclude, candidates, filterRated)

    def recommendForUserSubset(self, dataset, numItems, *, exclude=None, candidates=None, filterRated=None):
        """As :meth:`recommendForAllUsers` for the users in ``dataset[userCol]`` (unknown ids are skipped)."""
        return self._recommend("user", numItems, dataset, exclude, candidates, filterRated)

    def recommendForAllItems(self, numUsers, *, exclude=None, candidates=None, filterRated=None):
        """Top ``numUsers`` users for every item: ``(itemCol, recommendations array<struct<userCol, rating float>>)``.

        ``exclude`` and ``filterRated`` as for :meth:`recommendForAllUsers`; ``candidates`` restricts the users.
        """
        return self._recommend("item", numUsers, None, exclude, candidates, filterRated)

    def recommendForItemSubset(self, dataset, numUsers, *, exclude=None, candidates=None, filterRated=None):
        """As :meth:`recommendForAllItems` for the items in ``dataset[itemCol]``."""
        return self._recommend("item", numUsers, dataset, exclude, candidates, filterRated)

    def _side(self, side):
        """The ``side`` of the model as :func:`~sparknmf.ratings.recommend.recommend` reads it."""
        state = self._require()
        spec, P = state["specs"][side], state["P"][side]
        return Side(side, self.getUserCol() if side == "user" else self.getItemCol(), self.ids(side),
                    state["idTypes"][side], P[:, : spec.rank], P[:, spec.rank] if spec.bias else np.zeros(P.shape[0]))

    def _recommend(self, side, num, subset, exclude, candidates, filter_rated):
        whom = f"MaskedALSModel.recommendFor{side.title()}s"
        check_distinct_columns({"userCol": self.getUserCol(), "itemCol": self.getItemCol()}, whom)
        seen = self.seenPairs
        if filter_rated is None:
            filter_rated = seen is not None
        if filter_rated and seen is None:
            raise ValueError(f"{whom}: filterRated=True needs an implicit model (implicitPrefs=True keeps its "
                             "training events); for this model pass exclude= the training ratings")
        if self._require().get("frames"):
            return self._recommend_frames(side, num, subset, exclude, candidates, seen if filter_rated else None)
        if filter_rated:
            seen = seen if side == "user" else seen.T.tocsr()
        return recommend(self._side(side), self._side(other_side(side)), num, self.globalMean, subset=subset,
                         exclude=exclude, candidates=candidates, seen=seen if filter_rated else None)

    def _recommend_frames(self, side, num, subset, exclude, candidates, seen):
        """Recommendations by pairs of parameter blocks in the executors (:func:`recommend_blocks`).

        ``seen``: the training events ``(user, item)`` (indices, a DataFrame) left out as excluded pairs.
        """
        from pyspark.sql import functions as F

        check_count(num)
        query, target = self._frame_side(side), self._frame_side(other_side(side))
        qcol, tcol = query.column, target.column
        if subset is not None:
            whom = f"MaskedALSModel.recommendFor{side.title()}Subset"
            check_columns(subset, [qcol], whom)
            check_id_type(subset, qcol, query.id_type, whom)
            subset = _indexed(subset.select(column_ref(qcol).alias("_qid")), "_qid", query.ids, "_q").distinct()
        if exclude is not None:
            whom = "MaskedALSModel recommendations (exclude)"
            check_columns(exclude, [qcol, tcol], whom)
            for one in (query, target):
                check_id_type(exclude, one.column, one.id_type, whom)
            pairs = exclude.select(column_ref(qcol).alias("_qid"), column_ref(tcol).alias("_tid"))
            exclude = _indexed(_indexed(pairs, "_qid", query.ids, "_q"), "_tid", target.ids, "_t").select("_q", "_t")
        if seen is not None:
            rated = seen.select(F.col(side).cast("long").alias("_q"), F.col(other_side(side)).cast("long").alias("_t"))
            exclude = rated if exclude is None else exclude.unionByName(rated)
        if candidates is not None:
            whom = "MaskedALSModel recommendations (candidates)"
            if not hasattr(candidates, "sparkSession"):
                try:
                    values = pa.array(list(candidates))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
                    raise InvalidInputError(f"{whom}: the candidates must be ids of the model's type "
                                            f"{target.id_type}: {err}") from None
                candidates = query.blocks.sparkSession.createDataFrame(pa.table({tcol: values}))
            check_columns(candidates, [tcol], whom)
            check_id_type(candidates, tcol, target.id_type, whom)
            found = _indexed(candidates.select(column_ref(tcol).alias("_tid")), "_tid", target.ids, "_t")
            candidates = np.unique(found.select(F.col("_t")).toArrow().column(0).to_numpy().astype(np.int64))
        return recommend_blocks(query, target, num, self.globalMean, subset=subset, exclude=exclude,
                                candidates=candidates)

    # ---------------------------------------------------------------- persistence
    def write(self):
        return ModelWriter(self)

    @classmethod
    def read(cls):
        return persistence.ParamsReader(cls)

    def _load_arrays(self, path, spark, metadata):
        """Restore the parameters, ids and fit record (called by the reader after the Params)."""
        self._state = load_state(path, spark, metadata)


class _Predictor:
    """The prediction rule of a model, small enough to ship with a task."""

    def __init__(self, specs, P_user, P_item, mu, context, biases_for_unknown, rating_range):
        self.specs, self.P_user, self.P_item, self.mu, self.context = specs, P_user, P_item, mu, context
        self.biases_for_unknown, self.rating_range = biases_for_unknown, rating_range

    def predict(self, users, items, days=None) -> np.ndarray:
        """r̂ for index pairs (users[n], items[n]); ``days`` (n,) the rating times in days (None: the last day).

        Index −1 means unknown: NaN, or with ``coldStartStrategy="biases"``
        μ plus the known side's bias terms.  Times outside the training range
        fall in the first or last bin; a missing (null, NaN or infinite) time
        is the last training day, as when no times are given.  Clipped to
        ``ratingRange`` when set.
        """
        specs, ctx = self.specs, self.context
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        known_u, known_i = users >= 0, items >= 0
        u, i = np.maximum(users, 0), np.maximum(items, 0)
        nnz = users.shape[0]
        entries = Entries(np.array([0, nnz]), i, np.zeros(nnz))
        if ctx.timed:
            days = np.full(nnz, ctx.day_range[1]) if days is None else np.asarray(days, np.float64)
            days = np.where(np.isfinite(days), days, ctx.day_range[1])
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


def _gathered(column, width):
    """``(P, local)``: the rows of a list column stacked (zeros for nulls) and each row's position (−1 for null)."""
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    P = np.zeros((len(column), width))
    values = pa.compute.list_flatten(column).to_numpy(zero_copy_only=False)
    P[valid] = values.reshape(-1, width)
    return P, np.where(valid, np.arange(len(column)), -1)


def _indexed(frame, column, ids, index):
    """``frame`` with the index of its id ``column`` in ``ids`` (``(index, id)``) as ``index``; unknown ids dropped."""
    from pyspark.sql import functions as F

    named = shuffled(ids.select(F.col("id").alias("_known"), F.col("index").alias(index)))
    return frame.join(named, frame[column] == named["_known"]).drop("_known")
