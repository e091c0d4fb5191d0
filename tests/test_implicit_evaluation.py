"""Ranking metrics for implicit data (issue 17): precision, recall, MAP, NDCG and AUC against plain-Python
references, and the per-user hold-out split."""

import numpy as np
import pytest

from sparknmf.ratings.evaluation import ranking_metrics, split_by_user

pytestmark = pytest.mark.spark


def _reference(lists, relevant, n, catalog):
    """Per-query metrics written out from their definitions, averaged over queries with relevant targets."""
    out = {"precision": [], "recall": [], "map": [], "ndcg": [], "auc": []}
    for q, rel in relevant.items():
        ranked = lists.get(q, [])[:n]
        hits = [p for p, t in enumerate(ranked) if t in rel]
        out["precision"].append(len(hits) / n)
        out["recall"].append(len(hits) / len(rel))
        out["map"].append(sum((j + 1) / (p + 1) for j, p in enumerate(hits)) / min(n, len(rel)))
        ideal = sum(1 / np.log2(p + 2) for p in range(min(n, len(rel))))
        out["ndcg"].append(sum(1 / np.log2(p + 2) for p in hits) / ideal)
        # AUC: every (relevant, irrelevant) pair of the catalogue; unlisted targets tie after the list
        position = {t: p for p, t in enumerate(ranked)}
        score = [position.get(t, len(ranked)) for t in range(catalog)]
        wins = sum(1.0 if score[a] < score[b] else 0.5 if score[a] == score[b] else 0.0
                   for a in rel for b in range(catalog) if b not in rel)
        out["auc"].append(wins / (len(rel) * (catalog - len(rel))))
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize("n", [1, 3, 12])
def test_ranking_metrics_equal_their_definitions(spark, n):
    rng = np.random.default_rng(n)
    catalog = 12
    lists = {q: [int(t) for t in rng.permutation(catalog)[: rng.integers(0, 8)]] for q in range(9)}
    relevant = {q: set(int(t) for t in rng.choice(catalog, rng.integers(1, 5), replace=False)) for q in range(11)}
    recs = spark.createDataFrame([(q, [(t, 1.0 / (p + 1)) for p, t in enumerate(ts)]) for q, ts in lists.items()],
                                 "user int, recommendations array<struct<item:int,rating:float>>")
    rel = spark.createDataFrame([(q, t) for q, ts in relevant.items() for t in ts], "user int, item int")
    got = ranking_metrics(recs, rel, n, catalogSize=catalog)
    expected = _reference(lists, relevant, n, catalog)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
    assert got["queries"] == 11
    assert "auc" not in ranking_metrics(recs, rel, n)


def _half_up(x):
    return int(np.floor(x + 0.5))


def test_split_by_user_holds_out_each_users_last_events(spark):
    rows = [(u, i, float(i), 1000 * u + 10 * i) for u in range(6) for i in range(u + 1)]
    frame = spark.createDataFrame(rows, "user int, item int, rating double, ts long")
    train, test = split_by_user(frame, 0.4, timestampCol="ts")
    got = sorted((r.user, r.item) for r in test.collect())
    expected = sorted((u, i) for u in range(6) for i in range(u + 1)
                      if i >= u + 1 - min(_half_up(0.4 * (u + 1)), u))
    assert got == expected
    assert train.count() + test.count() == len(rows) and train.columns == frame.columns
    assert {r.user for r in train.collect()} == set(range(6))  # every user keeps an event
    a, b = (sorted(map(tuple, split_by_user(frame, 0.5, seed=s)[1].collect())) for s in (3, 3))
    assert a == b
    by_user = {}
    for r in split_by_user(frame, 0.5, seed=4)[1].collect():
        by_user[r.user] = by_user.get(r.user, 0) + 1
    assert by_user == {u: min(_half_up(0.5 * (u + 1)), u) for u in range(6) if min(_half_up(0.5 * (u + 1)), u)}
    with pytest.raises(ValueError, match="fraction must be a number in"):
        split_by_user(frame, 1.0)
