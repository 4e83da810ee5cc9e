"""The metric formulas, defined once: NDCG@k, Recall@k, Precision@k and MRR@k over (instances x
candidates) arrays, per instance, and their names. The build's audits, the trainers' rewards and the
one evaluator (flexrec_bench.scoring.evaluator) all score through these; the means and bootstrap CIs
of a run are flexrec_bench.scoring.summary.

Conventions (docs/metrics.md): linear gain (the need's graded relevance), discount
1 / log2(rank + 1) with ranks from 1, ideal DCG from the instance's own labels; Recall,
Precision and MRR use the need's relevant set. A metric is *undefined* on an instance where it has
nothing to find: NDCG where the ideal DCG is 0, Recall/Precision/MRR where the relevant set is
empty. Undefined instances score NaN per instance and are left out of that metric's mean and
bootstrap (its ``n`` counts the defined ones), as trec_eval leaves out queries without relevant
documents; ``n_no_relevant`` and ``n_no_gain`` count them. Beside that convention (ours) every
report carries the paper-comparable one, ``metrics_over_all``: an undefined instance scores 0 and
every metric averages over all instances (what the FlexRec paper's tables appear to use).
"""

from __future__ import annotations

import re

import numpy as np

from flexrec_bench.foundation.errors import ConfigError

#: the metrics a run reports unless --metrics names others (the paper's: N@5/10/30, R@5, P@5, MRR@5)
DEFAULT_METRICS = ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "precision@5", "mrr@5")
_METRIC = re.compile(r"^(ndcg|recall|precision|mrr)@(\d+)$")


def parse_metric(name: str) -> tuple[str, int]:
    m = _METRIC.match(name.lower())
    if not m or int(m.group(2)) < 1:
        raise ConfigError(f"unknown metric {name!r}: expected ndcg@k, recall@k, precision@k or mrr@k with k >= 1")
    return m.group(1), int(m.group(2))


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def expected_random_ndcg(relevance: np.ndarray, nvalid: np.ndarray, k: int) -> np.ndarray:
    """Per instance, the exact expectation of NDCG@k under a uniformly random ranking of its
    ``nvalid`` candidates: mean(rel) * sum_{r<=min(k, nvalid)} 1/log2(r+1) / IDCG@k (NaN where the
    ideal DCG is 0)."""
    disc = discounts(relevance.shape[1])
    cut = np.minimum(k, nvalid)
    disc_sum = np.cumsum(disc)[np.maximum(cut - 1, 0)]
    ideal = np.sort(relevance, axis=1)[:, ::-1][:, :k] @ disc[:min(k, relevance.shape[1])]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, relevance.sum(1) / np.maximum(nvalid, 1) * disc_sum / np.where(ideal > 0, ideal, 1.0),
                        np.nan)


def per_instance_scores(order: np.ndarray, relevance: np.ndarray, relevant: np.ndarray,
                        metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, np.ndarray]:
    """Score rankings. ``order``: (n, K) candidate positions, best first, -1 for padding slots.
    ``relevance``: (n, K) graded labels by candidate position (0 on padding). ``relevant``: (n, K) bool.

    DCG@k is a matrix-vector product of the gains with the discounts; the ideal ranking is the
    instance's own labels sorted in descending order."""
    order = np.asarray(order)
    n, kmax = relevance.shape
    padded = bool((order < 0).any())
    safe = np.where(order >= 0, order, 0) if padded else order
    gains = np.take_along_axis(relevance, safe, axis=1)
    hits = np.take_along_axis(relevant, safe, axis=1)
    if padded:
        gains = np.where(order >= 0, gains, 0.0)
        hits &= order >= 0
    ideal = np.sort(relevance, axis=1)[:, ::-1]
    disc = discounts(kmax)
    n_rel = np.count_nonzero(relevant, axis=1)
    has_rel = n_rel > 0
    first_hit = None
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        kind, k = parse_metric(name)
        kk = min(k, kmax)
        if kind == "ndcg":
            idcg = ideal[:, :kk] @ disc[:kk]
            out[name] = np.divide(gains[:, :kk] @ disc[:kk], idcg, out=np.full(n, np.nan), where=idcg > 0)
        elif kind == "recall":
            out[name] = np.divide(np.count_nonzero(hits[:, :kk], axis=1), n_rel, out=np.full(n, np.nan), where=has_rel)
        elif kind == "precision":
            out[name] = np.where(has_rel, np.count_nonzero(hits[:, :kk], axis=1) / float(k), np.nan)
        else:
            if first_hit is None:  # rank of the first hit; 0 where nothing is hit
                first_hit = np.where(hits.any(1), hits.argmax(1) + 1, 0)
            rr = np.divide(1.0, first_hit, out=np.zeros(n), where=(first_hit > 0) & (first_hit <= k))
            out[name] = np.where(has_rel, rr, np.nan)
    return out


def no_gain(relevance: np.ndarray) -> np.ndarray:
    """(n,) bool: instances whose ideal DCG is 0 at every cut (NDCG undefined)."""
    return ~(relevance > 0).any(axis=1)


