"""The one evaluator: NDCG@k, Recall@k, Precision@k and MRR@k over (instances x candidates)
arrays, per-instance scores, and percentile-bootstrap 95% confidence intervals.

Conventions (docs/metrics.md): linear gain (the need's graded relevance), discount
1 / log2(rank + 1) with ranks from 1, ideal DCG from the instance's own labels; Recall,
Precision and MRR use the need's relevant set. An instance whose ideal DCG is 0 scores NDCG 0; one
with no relevant item scores Recall, Precision and MRR 0; both stay in the mean
(``n_no_relevant`` counts the latter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

DEFAULT_METRICS = ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "precision@5", "mrr@5")
_METRIC = re.compile(r"^(ndcg|recall|precision|mrr)@(\d+)$")


def parse_metric(name: str) -> tuple[str, int]:
    m = _METRIC.match(name.lower())
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"unknown metric {name!r}: expected ndcg@k, recall@k, precision@k or mrr@k with k >= 1")
    return m.group(1), int(m.group(2))


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


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
    first_hit = None
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        kind, k = parse_metric(name)
        kk = min(k, kmax)
        if kind == "ndcg":
            idcg = ideal[:, :kk] @ disc[:kk]
            out[name] = np.divide(gains[:, :kk] @ disc[:kk], idcg, out=np.zeros(n), where=idcg > 0)
        elif kind == "recall":
            out[name] = np.divide(np.count_nonzero(hits[:, :kk], axis=1), n_rel, out=np.zeros(n), where=n_rel > 0)
        elif kind == "precision":
            out[name] = np.count_nonzero(hits[:, :kk], axis=1) / float(k)
        else:
            if first_hit is None:
                first_hit = np.where(hits.any(1), hits.argmax(1) + 1, kmax + 1)
            out[name] = np.where(first_hit <= k, 1.0 / first_hit, 0.0)
    return out


@dataclass
class MetricSummary:
    mean: float
    ci95: tuple[float, float]
    n: int


@dataclass
class Report:
    """What :func:`evaluate` returns: per-metric means with bootstrap CIs, and per-instance scores."""

    metrics: dict[str, MetricSummary]
    per_instance: dict[str, np.ndarray] = field(repr=False)
    n_no_relevant: int = 0
    bootstrap_samples: int = 1000
    bootstrap_seed: int = 0

    def table(self) -> str:
        width = max(len(m) for m in self.metrics)
        lines = [f"{'metric':<{width}}  {'mean':>7}  {'95% CI':>17}  {'n':>7}"]
        for name, s in self.metrics.items():
            lines.append(f"{name:<{width}}  {s.mean:7.4f}  [{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]  {s.n:7d}")
        return "\n".join(lines)


def bootstrap_ci(scores: np.ndarray, samples: int, seed: int, max_cells: int = 20_000_000) -> np.ndarray:
    """Percentile bootstrap over instances for every row of ``scores`` (m metrics x n instances).
    Returns (m, 2) lower/upper bounds of the 95% interval; all metrics share the resamples."""
    m, n = scores.shape
    if samples <= 0 or n == 0:
        mean = scores.mean(1) if n else np.zeros(m)
        return np.stack([mean, mean], 1)
    rng = np.random.default_rng(seed)
    means = np.empty((m, samples))
    chunk = max(1, max_cells // max(n, 1))
    for s in range(0, samples, chunk):
        b = min(chunk, samples - s)
        idx = rng.integers(0, n, size=(b, n))
        means[:, s: s + b] = scores[:, idx].mean(-1)
    return np.percentile(means, [2.5, 97.5], axis=1).T


def summarize(per_instance: dict[str, np.ndarray], relevant: np.ndarray, samples: int = 1000, seed: int = 0) -> Report:
    names = list(per_instance)
    mat = np.stack([per_instance[k] for k in names]) if names else np.zeros((0, 0))
    cis = bootstrap_ci(mat, samples, seed)
    metrics = {name: MetricSummary(float(mat[i].mean()), (float(cis[i, 0]), float(cis[i, 1])), int(mat.shape[1]))
               for i, name in enumerate(names)}
    return Report(metrics, per_instance, int((relevant.sum(1) == 0).sum()), samples, seed)
