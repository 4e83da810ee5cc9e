"""``flexrec-bench compare``: paired comparison of runs on the instances they share.

Per-instance scores are recomputed from each run's rankings.parquet and the local build (never
read from results.json). For each pair of runs and each metric (the runs' accuracy metrics and the
per-list beyond-accuracy metrics): the mean of each run and their difference over the instances
where both are defined, a paired-bootstrap 95% CI of the difference (one set of resamples for both
runs), and the two-sided p-value of a paired test, Holm-corrected across the pair's metrics
(docs/metrics.md). The default test is the paired t-test: it tests the mean difference that the
table reports. Wilcoxon's signed-rank test (``--test wilcoxon``) keeps the instances whose
difference is exactly 0 (``zero_method="zsplit"``: their ranks split between the signs): rankers
that tie on most instances otherwise get a tiny p-value from the few that differ, a zero mean
difference starred as significant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from flexrec_bench.scoring.beyond import PER_LIST
from flexrec_bench.building.splits import load_split
from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.foundation.metrics import per_instance_scores

TESTS = ("t", "wilcoxon")
DEFAULT_TEST = "t"


@dataclass
class MetricComparison:
    metric: str
    n: int                      #: shared instances where the metric is defined for both runs
    mean_a: float | None
    mean_b: float | None
    diff: float | None          #: mean of (b - a)
    ci95: tuple[float, float] | None
    p: float | None
    p_holm: float | None


@dataclass
class PairComparison:
    a: str
    b: str
    shared: int
    test: str
    metrics: list[MetricComparison]

    def to_dict(self) -> dict:
        return asdict(self)


def holm(p: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (None stays None)."""
    idx = [i for i, v in enumerate(p) if v is not None]
    order = sorted(idx, key=lambda i: p[i])
    m = len(order)
    out: list[float | None] = [None] * len(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def paired_test(a: np.ndarray, b: np.ndarray, test: str) -> float:
    from scipy import stats

    d = b - a
    if len(d) < 2 or np.allclose(d, 0):
        return 1.0
    if test == "t":
        return float(stats.ttest_rel(b, a).pvalue)
    return float(stats.wilcoxon(b, a, zero_method="zsplit").pvalue)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int, seed: int) -> tuple[float, float] | None:
    """95% interval of mean(b - a) by the evaluator's Poisson bootstrap (the same weights for both runs)."""
    from flexrec_bench.scoring.summary import bootstrap_ci

    if samples <= 0 or len(a) == 0:
        return None
    lo, hi = bootstrap_ci(np.asarray(b - a, np.float64)[None, :], samples, seed)[0]
    return float(lo), float(hi)


def _per_instance(path: Path, data_dir: str | Path, split_cache: dict) -> tuple[object, dict[str, list[str]]]:
    from flexrec_bench.scoring.evaluator import read_rankings
    from flexrec_bench.foundation.io import sha256_file
    from flexrec_bench.scoring.results import ResultsFile

    try:
        res = ResultsFile.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except Exception as exc:
        raise FlexRecError(f"{path}: not a results file ({str(exc).splitlines()[0]})") from None
    rk = Path(path).parent / res.rankings.file
    if not rk.is_file() or sha256_file(rk) != res.rankings.sha256:
        raise FlexRecError(f"{rk}: missing or not the rankings its results file names (sha256)")
    key = (res.dataset.name, res.dataset.need, res.dataset.split)
    if key not in split_cache:
        split_cache[key] = load_split(data_dir, *key)
    split = split_cache[key]
    if split.fingerprint != res.dataset.fingerprint:
        raise FlexRecError(f"{path}: scored on build {res.dataset.fingerprint}, the local build is {split.fingerprint}")
    return res, read_rankings(rk)


def _scored(paths: list[str | Path], data_dir: str | Path, metrics: tuple[str, ...] | None, test: str):
    """Each run scored once on the instances it ranked: (split, [(path, results, {instance: row},
    {metric: per-instance scores})])."""
    from flexrec_bench.scoring.beyond import beyond_accuracy
    from flexrec_bench.scoring.evaluator import order_from_item_ids

    if test not in TESTS:
        raise FlexRecError(f"unknown --test {test!r}: t or wilcoxon")
    cache: dict = {}
    runs = [(str(p), *_per_instance(Path(p), data_dir, cache)) for p in paths]
    keys = {(r.dataset.name, r.dataset.fingerprint, r.dataset.need, r.dataset.split) for _, r, _ in runs}
    if len(keys) > 1:
        raise FlexRecError(f"the runs are not on one build/need/split: {sorted(keys)}")
    split = next(iter(cache.values()))
    scored = []
    for path, res, ranks in runs:
        ids = [i for i in split.instance_ids if i in ranks]
        sub = split.select(ids)
        order = order_from_item_ids({i: ranks[i] for i in ids}, sub)
        accuracy = tuple(m for m in (metrics or res.metrics) if m.split("@")[0] not in PER_LIST)
        per = per_instance_scores(order, sub.relevance, sub.relevant, accuracy)
        per.update({k: v for k, v in beyond_accuracy(order, sub).per_instance.items() if metrics is None or k in metrics})
        scored.append((path, res, {iid: n for n, iid in enumerate(ids)}, per))
    return split, scored


def _pair(name_a: str, name_b: str, shared: list[str], a_run: tuple[dict, dict], b_run: tuple[dict, dict], test: str,
          bootstrap: int, seed: int) -> PairComparison:
    """Two runs' per-instance scores ({instance: row}, {metric: scores}) compared on ``shared``."""
    (pos_a, per_a), (pos_b, per_b) = a_run, b_run
    ia, ib = np.array([pos_a[i] for i in shared]), np.array([pos_b[i] for i in shared])
    rows = []
    for m in (m for m in per_a if m in per_b):
        a, b = per_a[m][ia], per_b[m][ib]
        ok = np.isfinite(a) & np.isfinite(b)
        if not ok.any():
            rows.append(MetricComparison(m, 0, None, None, None, None, None, None))
            continue
        a, b = a[ok], b[ok]
        rows.append(MetricComparison(m, int(ok.sum()), float(a.mean()), float(b.mean()), float((b - a).mean()),
                                     paired_bootstrap(a, b, bootstrap, seed), paired_test(a, b, test), None))
    for row, adj in zip(rows, holm([r.p for r in rows])):
        row.p_holm = adj
    return PairComparison(name_a, name_b, len(shared), test, rows)


def compare_runs(paths: list[str | Path], data_dir: str | Path = "data", metrics: tuple[str, ...] | None = None,
                 test: str = DEFAULT_TEST, bootstrap: int = 1000, seed: int = 0) -> list[PairComparison]:
    if len(paths) < 2:
        raise FlexRecError("compare needs at least two results files")
    split, scored = _scored(paths, data_dir, metrics, test)
    out = []
    for (pa_, ra, pos_a, per_a), (pb, rb, pos_b, per_b) in combinations(scored, 2):
        shared = [i for i in split.instance_ids if i in pos_a and i in pos_b]
        if not shared:
            raise FlexRecError(f"{pa_} and {pb} share no instances")
        out.append(_pair(ra.model.name, rb.model.name, shared, (pos_a, per_a), (pos_b, per_b), test, bootstrap, seed))
    return out


def compare_seed_means(groups: dict[str, list[str | Path]], data_dir: str | Path = "data",
                       metrics: tuple[str, ...] | None = None, test: str = DEFAULT_TEST, bootstrap: int = 1000,
                       seed: int = 0) -> list[PairComparison]:
    """Rows trained with several seeds, compared pairwise on each instance's score averaged over the
    row's runs (a row with one run: its scores): the seeds' noise is averaged before the paired test
    over instances, on the instances every run of both rows ranked. Pairs in the order of ``groups``."""
    if len(groups) < 2 or any(not p for p in groups.values()):
        raise FlexRecError("compare_seed_means needs at least two rows, each with a results file")
    split, scored = _scored([p for ps in groups.values() for p in ps], data_dir, metrics, test)
    means, at = {}, 0
    for label, ps in groups.items():
        runs = scored[at:at + len(ps)]
        at += len(ps)
        ids = [i for i in split.instance_ids if all(i in pos for _, _, pos, _ in runs)]
        common = set.intersection(*(set(per) for _, _, _, per in runs))
        per = {m: np.mean([per[m][[pos[i] for i in ids]] for _, _, pos, per in runs], axis=0)
               for m in runs[0][3] if m in common}
        means[label] = ({iid: n for n, iid in enumerate(ids)}, per)
    out = []
    for la, lb in combinations(groups, 2):
        shared = [i for i in split.instance_ids if i in means[la][0] and i in means[lb][0]]
        if not shared:
            raise FlexRecError(f"rows {la!r} and {lb!r} share no instances")
        out.append(_pair(la, lb, shared, means[la], means[lb], test, bootstrap, seed))
    return out


def format_table(pairs: list[PairComparison]) -> str:
    lines = []
    for pair in pairs:
        lines.append(f"A {pair.a}  vs  B {pair.b}  ({pair.shared} shared instances, paired {pair.test}, Holm-corrected)")
        lines.append(f"  {'metric':<16} {'n':>5} {'A':>8} {'B':>8} {'B - A':>8} {'95% CI of B - A':>20} {'p':>9} {'p (Holm)':>9}")
        for r in pair.metrics:
            if r.mean_a is None:
                lines.append(f"  {r.metric:<16} {r.n:>5} {'(undefined)':>8}")
                continue
            ci = f"[{r.ci95[0]:+.4f}, {r.ci95[1]:+.4f}]" if r.ci95 else "(no bootstrap)"
            star = " *" if r.p_holm is not None and r.p_holm < 0.05 else ""
            lines.append(f"  {r.metric:<16} {r.n:>5} {r.mean_a:8.4f} {r.mean_b:8.4f} {r.diff:+8.4f} {ci:>20} "
                         f"{r.p:9.2e} {r.p_holm:9.2e}{star}")
        lines.append("")
    lines.append("* p (Holm) < 0.05")
    return "\n".join(lines)
