"""Evaluation of rating models: error and ranking metrics, cross-validation and parameter grids.

Every metric is computed by Spark aggregations over DataFrames (one job each,
a single row collected), so they work in classic and Connect sessions and on
data of any size.

* :func:`rmse`, :func:`mae` -- on the output of ``MaskedALSModel.transform``
  (or any DataFrame with a label and a prediction column).
* :func:`ranking_metrics` -- precision@N, recall@N, MAP@N, NDCG@N (binary
  relevance) and AUC of a ``recommendFor...`` output against relevant pairs;
  :func:`split_by_user` holds out each user's last (or seeded random) events.
* :func:`catalog_coverage` -- share of the catalogue that appears in any list.
* :func:`grid_search` / :func:`cross_validate` -- fit a grid of (rank,
  regParam) on stored rating blocks that are ingested **once** per training
  set and reused by every grid point.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["rmse", "mae", "ranking_metrics", "split_by_user", "catalog_coverage", "grid_search", "cross_validate"]


def _error(predictions, label_col, prediction_col, how):
    from pyspark.sql import functions as F

    p = F.col(prediction_col).cast("double")
    bad = p.isNull() | F.isnan(p) | (F.abs(p) == float("inf"))
    diff = p - F.col(label_col).cast("double")
    row = predictions.agg(F.sum(bad.cast("long")).alias("bad"), F.count(F.lit(1)).alias("rows"),
                          F.avg(F.when(~bad, diff * diff if how == "rmse" else F.abs(diff))).alias("value")).first()
    if not row["rows"]:
        raise ValueError(f"{how}: no predictions to evaluate (empty DataFrame)")
    if row["bad"]:
        raise ValueError(f"{how}: {row['bad']} of {row['rows']} predictions are null or NaN (unknown users or items); "
                         "use coldStartStrategy='drop' or 'biases'")
    return math.sqrt(row["value"]) if how == "rmse" else float(row["value"])


def rmse(predictions, labelCol="rating", predictionCol="prediction") -> float:
    """Root mean squared error ``sqrt(mean (r − r̂)²)`` over the rows of ``predictions``.

    A null or NaN prediction is an error (set ``coldStartStrategy`` to ``drop`` or ``biases``).
    """
    return _error(predictions, labelCol, predictionCol, "rmse")


def mae(predictions, labelCol="rating", predictionCol="prediction") -> float:
    """Mean absolute error ``mean |r − r̂|`` over the rows of ``predictions``."""
    return _error(predictions, labelCol, predictionCol, "mae")


def ranking_metrics(recommendations, relevant, n, *, queryCol="user", targetCol="item",
                    recommendationsCol="recommendations", catalogSize=None) -> dict:
    """Precision@n, recall@n, MAP@n, NDCG@n (binary relevance) and AUC@n, averaged over queries with a relevant target.

    Parameters
    ----------
    recommendations : DataFrame ``(queryCol, recommendationsCol array<struct<targetCol, rating>>)``
        Best first, as returned by ``recommendForAllUsers`` (only the first n are read).
    relevant : DataFrame with ``(queryCol, targetCol)``
        The relevant pairs, e.g. held-out ratings ≥ 4, or held-out events (:func:`split_by_user`).
    n : int
    catalogSize : int, optional
        N, the number of targets that could be recommended: needed for AUC (left out without it).

    Returns
    -------
    dict with ``precision``, ``recall``, ``map``, ``ndcg``, ``auc`` (with ``catalogSize``) and ``queries``
    (how many were averaged).  A query with relevant targets but no recommendation row counts as 0 (AUC ½).

    Notes
    -----
    With R a query's relevant targets, L ≤ n its listed targets and hits at positions p (0-based)::

        precision = hits/n                  recall = hits/|R|
        MAP       = Σ_(hit j at p) (j+1)/(p+1) / min(n, |R|)        (MLlib's meanAveragePrecisionAt)
        NDCG      = Σ_(hit at p) 1/log2(p+2) / Σ_(p < min(n, |R|)) 1/log2(p+2)
        AUC       = P(a relevant target ranks above an irrelevant one), the N − |R| irrelevant targets
                    and the unlisted relevant ones all tied after the list (implicit's AUC@K; the
                    exact AUC when n ≥ N)
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if catalogSize is not None and (isinstance(catalogSize, bool) or not isinstance(catalogSize, int)
                                    or catalogSize < 1):
        raise ValueError(f"catalogSize must be an integer >= 1, got {catalogSize!r}")
    recs = (recommendations.select(queryCol, F.posexplode(recommendationsCol).alias("_pos", "_rec"))
            .filter(F.col("_pos") < n).select(queryCol, "_pos", F.col(f"_rec.{targetCol}").alias(targetCol)))
    listed = recommendations.select(queryCol, F.least(F.size(recommendationsCol), F.lit(n)).alias("_len"))
    rel = relevant.select(queryCol, targetCol).distinct()
    rank = Window.partitionBy(queryCol).orderBy("_pos")
    hits = (recs.join(rel, [queryCol, targetCol])
            .withColumn("_j", F.row_number().over(rank))
            .groupBy(queryCol).agg(F.count(F.lit(1)).alias("_hits"),
                                   F.sum(1.0 / F.log2(F.col("_pos") + 2.0)).alias("_dcg"),
                                   F.sum(F.col("_j") / (F.col("_pos") + 1.0)).alias("_ap"),
                                   F.sum("_pos").alias("_possum")))
    ideal = F.array(*[F.lit(float(v)) for v in np.cumsum(1.0 / np.log2(np.arange(n) + 2.0))])
    per_query = (rel.groupBy(queryCol).agg(F.count(F.lit(1)).alias("_rel"))
                 .join(hits, queryCol, "left").join(listed, queryCol, "left")
                 .fillna(0, ["_hits", "_dcg", "_ap", "_possum", "_len"])
                 .withColumn("_idcg", F.element_at(ideal, F.least(F.col("_rel"), F.lit(n)).cast("int"))))
    aggs = [F.avg(F.col("_hits") / n).alias("precision"), F.avg(F.col("_hits") / F.col("_rel")).alias("recall"),
            F.avg(F.col("_ap") / F.least(F.col("_rel"), F.lit(n))).alias("map"),
            F.avg(F.col("_dcg") / F.col("_idcg")).alias("ndcg"), F.count(F.lit(1)).alias("queries")]
    if catalogSize is not None:
        h, length, r = F.col("_hits"), F.col("_len"), F.col("_rel")
        negatives = F.lit(float(catalogSize)) - r
        # pairs (relevant above irrelevant) inside the list: Σ over hits of the misses listed after them
        inside = h * length - F.col("_possum") - h * (h + 1) / 2.0
        outside = (h + r) / 2.0 * (negatives - (length - h))
        aggs.append(F.avg(F.when(negatives > 0, (inside + outside) / (r * negatives))).alias("auc"))
    row = per_query.agg(*aggs).first()
    out = {name: float(row[name] or 0.0) for name in ("precision", "recall", "map", "ndcg")}
    if catalogSize is not None:
        out["auc"] = float(row["auc"]) if row["auc"] is not None else float("nan")
    out["queries"] = int(row["queries"])
    return out


def split_by_user(events, fraction=0.2, *, seed=0, userCol="user", itemCol="item", timestampCol=None):
    """Hold out part of every user's events: ``(train, test)`` DataFrames with the columns of ``events``.

    Each user with c events gives ``round(fraction·c)`` (half up) of them to ``test``, and always keeps at least one
    in ``train`` (a user with one event is all train): its **last** events by ``timestampCol`` when given
    (ties broken by a seeded hash), else a seeded random choice (a hash of (user, item, seed)), so the split
    is the same for the same seed whatever the partitioning.  Two DataFrame passes (window functions), no
    collect.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from sparknmf.ratings.ingest import column_ref

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}")
    missing = [c for c in (userCol, itemCol, timestampCol) if c and c not in events.columns]
    if missing:
        raise ValueError(f"split_by_user: no column(s) {missing} in {events.columns}")
    noise = F.xxhash64(column_ref(userCol), column_ref(itemCol), F.lit(seed))
    order = [column_ref(timestampCol).desc(), noise] if timestampCol else [noise]
    user = Window.partitionBy(column_ref(userCol))
    ranked = (events.withColumn("_n", F.row_number().over(user.orderBy(*order)))
              .withColumn("_c", F.count(F.lit(1)).over(user))
              .withColumn("_test", F.col("_n") <= F.least(F.round(F.col("_c") * fraction), F.col("_c") - 1)))
    return (ranked.filter(~F.col("_test")).drop("_n", "_c", "_test"),
            ranked.filter(F.col("_test")).drop("_n", "_c", "_test"))


def catalog_coverage(recommendations, catalog_size, *, targetCol="item", recommendationsCol="recommendations") -> float:
    """Share of the catalogue (``catalog_size`` targets) recommended to at least one query."""
    from pyspark.sql import functions as F

    if catalog_size < 1:
        raise ValueError(f"catalog_size must be >= 1, got {catalog_size!r}")
    seen = (recommendations.select(F.explode(recommendationsCol).alias("_rec"))
            .select(F.col(f"_rec.{targetCol}")).distinct().count())
    return seen / catalog_size


def grid_search(estimator, train, test, grid, *, metrics=("rmse", "mae")) -> list:
    """Fit every point of ``grid`` (e.g. ``{"rank": [5, 10], "regParam": [5.0, 12.0]}``) on ``train``.

    ``train`` is validated and stored as rating blocks once (per group of
    points sharing the Params that shape the blocks); every grid point fits on
    those cached blocks (:meth:`~sparknmf.ratings.estimator.MaskedALS.fitMultiple`,
    the machinery pyspark's ``CrossValidator`` uses too) and is scored on
    ``test`` (with ``coldStartStrategy="drop"`` unless the estimator predicts
    biases for unknown ids).

    Returns
    -------
    list of dict: the grid point's settings plus one value per metric, in grid order (itertools product).
    """
    scorers = {"rmse": rmse, "mae": mae}
    unknown = [m for m in metrics if m not in scorers]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(scorers)}")
    names = list(grid)
    points = [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]
    results = [None] * len(points)
    param_maps = [{estimator.getParam(name): value for name, value in point.items()} for point in points]
    for index, model in estimator.fitMultiple(train, param_maps):
        if model.getColdStartStrategy() == "nan":
            model = model.copy({model.coldStartStrategy: "drop"})
        predictions = model.transform(test).cache()
        scores = {m: scorers[m](predictions, model.getRatingCol(), model.getPredictionCol()) for m in metrics}
        predictions.unpersist()
        results[index] = {**points[index], **scores}
    return results


def cross_validate(estimator, dataset, *, folds=5, seed=0, grid=None, metrics=("rmse", "mae")) -> list:
    """k-fold cross-validation of ``estimator`` (and of each point of ``grid``) on ``dataset``.

    Ratings are assigned to folds by a seeded hash of (user, item), so the
    folds are the same for the same seed whatever the partitioning.  Each
    fold's training part is ingested once and shared by the grid
    (:func:`grid_search`).

    Returns
    -------
    list of dict, one per grid point: its settings, the mean of each metric
    over the folds, and ``folds`` (the per-fold values).
    """
    from pyspark.sql import functions as F

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    grid = grid or {}
    fold = F.pmod(F.xxhash64(F.col(estimator.getUserCol()), F.col(estimator.getItemCol()), F.lit(seed)), F.lit(folds))
    assigned = dataset.withColumn("_fold", fold).cache()
    try:
        per_fold = []
        for f in range(folds):
            train = assigned.filter(F.col("_fold") != f).drop("_fold")
            test = assigned.filter(F.col("_fold") == f).drop("_fold")
            per_fold.append(grid_search(estimator, train, test, grid, metrics=metrics))
    finally:
        assigned.unpersist()
    summary = []
    for g, point in enumerate(per_fold[0]):
        settings = {k: v for k, v in point.items() if k not in metrics}
        values = {m: [fold_results[g][m] for fold_results in per_fold] for m in metrics}
        summary.append({**settings, **{m: float(np.mean(v)) for m, v in values.items()}, "folds": values})
    return summary
