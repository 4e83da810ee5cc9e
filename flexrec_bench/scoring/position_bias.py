"""The position-bias probe (``eval --shuffles N``): how much does a ranker's answer depend on the
order in which the candidates were presented?

A build presents each instance's candidates in one seeded random order (docs/data.md). The probe
re-presents every instance in ``N`` further seeded orders (order 0 is the build's), ranks each
presentation, maps every ranking back to item ids and reports (after LLMRank, Hou et al. 2024):

- the NDCG@5/@10 mean of each order, their mean and a t 95% CI over the orders;
- rank stability: the mean Kendall τ between the item rankings of the same instance under two
  different orders (1: the order does not matter; about 0: unrelated rankings);
- the first-position rate: how often the candidate shown first is ranked first, against 1/K for a
  ranker blind to position;
- NDCG@10 by the presented position of the best candidate, in quartiles of the list (a ranker blind
  to position scores alike in every quartile).

Rankers whose scores do not read the presented order (``Ranker.order_invariant``: STAR, popularity,
BERT4Rec, the oracle) are not re-run: each shuffled presentation gets the same item ranking, so τ
is 1 by construction. The published rankings and metrics stay those of the build's order.
"""

from __future__ import annotations

import zlib

import numpy as np

from flexrec_bench.foundation.metrics import per_instance_scores

MAX_SHUFFLES = 20           #: most further orders a run may ask for (ours: each one is a full re-ranking)
PROBE_METRICS = ("ndcg@5", "ndcg@10")


def presentation(iid: str, n: int, shuffle: int, seed: int) -> np.ndarray:
    """The seeded permutation of an instance's ``n`` candidates for shuffle ``shuffle`` (>= 1):
    new position p shows the candidate at build position perm[p]."""
    return np.random.default_rng([seed, 38, shuffle, zlib.crc32(iid.encode("utf-8"))]).permutation(n)


def shuffled(split, shuffle: int, seed: int):
    """The split with every instance's candidates in presentation ``shuffle``, and the permutations."""
    from flexrec_bench.building.splits import DatasetSplit
    from flexrec_bench.ranking.windows import LIST_COLUMNS

    frame = split.frame.copy()
    cols = [c for c in frame.columns if c in LIST_COLUMNS or c in split.ranker_columns]
    perms = [presentation(iid, len(c), shuffle, seed) for iid, c in zip(split.instance_ids, frame["candidates"])]
    for c in cols:
        frame[c] = [np.asarray(v)[perm] for v, perm in zip(frame[c], perms)]
    return DatasetSplit(split.dataset, split.need, split.split, split.root, split.manifest, frame), perms


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall τ-a between two rank vectors of the same items (no ties)."""
    k = len(a)
    if k < 2:
        return 1.0
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    return float((da * db).sum() / (k * (k - 1)))


def probe(ranker, split, base_order: np.ndarray, shuffles: int, seed: int = 0, progress: bool = False) -> dict:
    """Rank ``shuffles`` further presentations and measure the answer's dependence on the order."""
    from scipy import stats

    n, k = split.mask.shape
    nvalid = split.mask.sum(1)
    invariant = bool(getattr(ranker, "order_invariant", False))
    # item rankings as build positions, one (n, k) array per order; order 0 is the build's
    orders = [np.asarray(base_order)]
    presented = [[np.arange(int(v)) for v in nvalid]]  # per order, per instance: build position shown at each slot
    for s in range(1, shuffles + 1):
        sub, perms = shuffled(split, s, seed)
        presented.append(perms)
        if invariant:
            orders.append(orders[0])
            continue
        res = ranker.rank(sub)
        back = np.full((n, k), -1, np.int64)
        for i, perm in enumerate(perms):
            row = res.order[i][res.order[i] >= 0]
            back[i, : len(row)] = perm[row]  # shuffled slot -> build position
        orders.append(back)
    per = [per_instance_scores(o, split.relevance, split.relevant, PROBE_METRICS) for o in orders]
    out: dict = {"shuffles": shuffles, "orders": shuffles + 1, "rerun": not invariant, "metrics": {}}
    for m in PROBE_METRICS:
        means = np.array([float(np.nanmean(p[m])) for p in per])
        half = (float(stats.t.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means)))
                if len(means) > 1 else 0.0)
        out["metrics"][m] = {"per_order": means.tolist(), "mean": float(means.mean()),
                             "ci95": [float(means.mean() - half), float(means.mean() + half)]}
    taus = []
    for i in range(n):
        v = int(nvalid[i])
        ranks = []
        for o in orders:
            r = np.empty(v)
            r[o[i, :v]] = np.arange(v)
            ranks.append(r)
        taus += [_kendall(ranks[a], ranks[b]) for a in range(len(ranks)) for b in range(a + 1, len(ranks))]
    out["kendall_tau"] = float(np.mean(taus)) if taus else None
    first = [int(o[i, 0] == presented[j][i][0]) for j, o in enumerate(orders) for i in range(n)]
    out["first_position_rate"] = float(np.mean(first))
    out["first_position_chance"] = float(np.mean(1.0 / np.maximum(nvalid, 1)))
    # NDCG@10 by the presented position of the best candidate (ties: the first shown), in quartiles
    sums, counts = np.zeros(4), np.zeros(4, np.int64)
    for j, o in enumerate(orders):
        nd = per[j]["ndcg@10"]
        for i in range(n):
            v = int(nvalid[i])
            rel = split.relevance[i, :v]
            if not np.isfinite(nd[i]) or rel.max() <= 0:
                continue
            slot_of = np.empty(v, np.int64)
            slot_of[presented[j][i]] = np.arange(v)
            q = min(3, int(4 * slot_of[int(np.argmax(rel))] / v))
            sums[q] += nd[i]
            counts[q] += 1
    out["ndcg@10_by_best_position_quartile"] = [float(s / c) if c else None for s, c in zip(sums, counts)]
    out["instances_by_best_position_quartile"] = counts.tolist()
    return out


def format_probe(p: dict) -> str:
    m = p["metrics"]["ndcg@10"]
    quart = ", ".join("-" if x is None else f"{x:.3f}" for x in p["ndcg@10_by_best_position_quartile"])
    return (f"position bias over {p['orders']} presentations{'' if p['rerun'] else ' (order-invariant: not re-run)'}: "
            f"NDCG@10 {m['mean']:.4f} [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}], Kendall tau {p['kendall_tau']:.3f}, "
            f"first shown ranked first {p['first_position_rate']:.3f} (chance {p['first_position_chance']:.3f}), "
            f"NDCG@10 by the best candidate's shown quartile: {quart}")
