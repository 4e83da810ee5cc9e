"""A run's metrics summarized: means over the instances where each metric is defined, the
paper-comparable means over all instances, and percentile-bootstrap 95% confidence intervals
(docs/metrics.md). The per-instance formulas are flexrec_bench.foundation.metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from flexrec_bench.foundation.metrics import no_gain


class MetricValue(BaseModel):
    """One metric of a run; the results file stores this model as it is."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mean: float | None = Field(description="mean over the instances where the metric is defined (docs/metrics.md); "
                                           "null when it is defined on none")
    ci95: tuple[float, float] | None = Field(description="95% percentile-bootstrap interval of the mean")
    n: int = Field(ge=0, description="instances where the metric is defined (NDCG: ideal DCG > 0; Recall, "
                                     "Precision, MRR: a non-empty relevant set)")


@dataclass
class Report:
    """What :func:`evaluate` returns: per-metric means with bootstrap CIs, and per-instance scores."""

    metrics: dict[str, MetricValue]
    per_instance: dict[str, np.ndarray] = field(repr=False)
    n_no_relevant: int = 0      #: instances with an empty relevant set (Recall/Precision/MRR undefined)
    n_no_gain: int = 0          #: instances whose labels are all 0 (NDCG undefined)
    bootstrap_samples: int = 1000
    bootstrap_seed: int = 0
    beyond: dict[str, float] = field(default_factory=dict)  #: beyond-accuracy metrics (flexrec_bench.scoring.beyond)
    beyond_per_instance: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: the same metrics with undefined instances scored 0, averaged over all instances (paper-comparable)
    metrics_over_all: dict[str, MetricValue] = field(default_factory=dict)

    def table(self) -> str:
        width = max(len(m) for m in self.metrics)
        lines = [f"{'metric':<{width}}  {'mean':>7}  {'95% CI':>17}  {'n':>7}"]
        for name, s in self.metrics.items():
            if s.mean is None:
                lines.append(f"{name:<{width}}  {'-':>7}  {'(undefined)':>17}  {s.n:7d}")
            elif s.ci95 is None:
                lines.append(f"{name:<{width}}  {s.mean:7.4f}  {'(no bootstrap)':>17}  {s.n:7d}")
            else:
                lines.append(f"{name:<{width}}  {s.mean:7.4f}  [{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]  {s.n:7d}")
        if self.metrics_over_all:
            lines.append("over all instances, undefined = 0 (paper-comparable): " + ", ".join(
                f"{k} {v.mean:.4f}" for k, v in self.metrics_over_all.items() if v.mean is not None))
        if self.beyond:
            lines.append("beyond accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in self.beyond.items()))
        return "\n".join(lines)


#: Poisson(1) quantiles at 256 evenly spaced levels: a uniform byte through this table is a
#: Poisson(1) weight to 1/256 in probability (its mean and variance are 1.004)
_POISSON1 = np.searchsorted(np.cumsum(np.exp(-1.0) / np.cumprod(np.r_[1.0, np.arange(1, 24)])),
                            (np.arange(256) + 0.5) / 256).astype(np.float64)
#: resamples drawn per matrix product (memory: chunk x n float64)
BOOTSTRAP_CHUNK = 64


def poisson_weights(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """(b, n) float64 Poisson(1) instance weights: the Poisson bootstrap's resamples."""
    return _POISSON1[rng.integers(0, 256, (b, n), dtype=np.uint8)]


def _distinct(rows: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(for each row, the index of its distinct copy; the first row of each distinct copy)."""
    first: dict[bytes, int] = {}
    keep: list[int] = []
    idx = np.empty(len(rows), np.int64)
    for i, row in enumerate(rows):
        key = np.packbits(row).tobytes() if row.dtype == bool else row.tobytes()
        if key not in first:
            first[key] = len(keep)
            keep.append(i)
        idx[i] = first[key]
    return idx, keep


def bootstrap_ci(scores: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Percentile bootstrap over instances for every row of ``scores`` (m metrics x n instances;
    NaN = undefined there, left out of each resample's mean). Returns (m, 2) lower/upper bounds of
    the 95% interval (NaN where a metric is defined nowhere); all metrics share the resamples.

    A Poisson bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012): each resample weighs every
    instance by an independent Poisson(1) count instead of drawing n instances with replacement,
    which for n in the hundreds and more gives the same intervals within resampling error, and
    turns every resample's means into one matrix product: 1,000 resamples of 100,000 instances
    cost a few scorings (benchmarks/bench_evaluator.py). The same seed gives the same intervals."""
    m, n = scores.shape
    defined = ~np.isnan(scores)
    vals = np.where(defined, scores, 0.0)
    cnt = defined.sum(1)
    mean = np.divide(vals.sum(1), cnt, out=np.full(m, np.nan), where=cnt > 0)
    if samples <= 0 or n == 0:
        return np.stack([mean, mean], 1)
    rng = np.random.default_rng(seed)
    # float64 throughout: another machine's BLAS sums in another order, which moves float64 results
    # by about 1e-15, far inside the 1e-9 at which `leaderboard verify` compares stored intervals
    # each distinct column is summed once: metrics defined on the same instances share one count
    # column (NDCG@5/10/30 do, and so do Recall, Precision and MRR), and a metric's two averaging
    # conventions share their values (undefined instances add 0 to both)
    v_idx, v_rows = _distinct(vals)
    d_idx, d_rows = _distinct(defined)
    sums = np.ascontiguousarray(np.concatenate([vals[v_rows], defined[d_rows]], 0).T, dtype=np.float64)
    nv = len(v_rows)
    means = np.empty((m, samples))
    for s in range(0, samples, BOOTSTRAP_CHUNK):
        b = min(BOOTSTRAP_CHUNK, samples - s)
        prod = poisson_weights(rng, b, n) @ sums
        num, den = prod[:, v_idx], prod[:, nv + d_idx]
        means[:, s: s + b] = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0).T
    with np.errstate(invalid="ignore"):
        out = np.nanpercentile(means, [2.5, 97.5], axis=1).T if means.size else np.zeros((m, 2))
    return np.where(cnt[:, None] > 0, out, np.nan)


def summarize(per_instance: dict[str, np.ndarray], relevant: np.ndarray, samples: int = 1000, seed: int = 0,
              relevance: np.ndarray | None = None) -> Report:
    """Means over the defined instances, CIs, the counts of instances where metrics are undefined,
    and the paper-comparable means over all instances (undefined = 0); both share the resamples."""
    names = list(per_instance)
    mat = np.stack([per_instance[k] for k in names]) if names else np.zeros((0, len(relevant)))
    zero = np.where(np.isnan(mat), 0.0, mat)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples of a rarely defined metric
        cis = bootstrap_ci(np.concatenate([mat, zero]), samples, seed)
    metrics, over_all = {}, {}
    for i, name in enumerate(names):
        ok = ~np.isnan(mat[i])
        if ok.any():
            ci = (float(cis[i, 0]), float(cis[i, 1])) if samples > 0 else None
            metrics[name] = MetricValue(mean=float(mat[i][ok].mean()), ci95=ci, n=int(ok.sum()))
        else:
            metrics[name] = MetricValue(mean=None, ci95=None, n=0)
        if mat.shape[1]:
            j = len(names) + i
            ci = (float(cis[j, 0]), float(cis[j, 1])) if samples > 0 else None
            over_all[name] = MetricValue(mean=float(zero[i].mean()), ci95=ci, n=int(mat.shape[1]))
    n_no_gain = int(no_gain(relevance).sum()) if relevance is not None else 0
    return Report(metrics, per_instance, int((relevant.sum(1) == 0).sum()), n_no_gain, samples, seed,
                  metrics_over_all=over_all)
