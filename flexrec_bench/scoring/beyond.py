"""Beyond-accuracy metrics of a set of ranked lists at K (docs/metrics.md defines each):

- ``coverage@k``: the share of the build's catalogue (items.parquet) that appears in some top-k list;
- ``novelty@k``: the mean self-information -log2 p(i) of the top-k items, p(i) the item's smoothed
  share of the training interactions, (train_count + 1) / (sum of train_count + |catalogue|);
- ``ild@k``: intra-list diversity, 1 - the mean pairwise cosine of the top-k items' embeddings
  (the build's own item embeddings), averaged over lists;
- ``gini@k``: the Gini coefficient of the exposure counts (top-k appearances) over the catalogue;
  0 = every item shown equally often, towards 1 = a few items take all exposure;
- ``niche_share@k`` (niche need): the share of top-k items that are niche under the build's niche
  rule (default: some of their topics are not in the shown history; untagged items never are);
- ``trend_share@k`` (trend need): the share of top-k items that are trending: interacted with at
  least once in the need's window before the query time and in the top quarter of their candidate
  list by that count (the quarter is ours).

Per-list values (novelty, ILD, the shares) are kept per instance for paired comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexrec_bench.building.splits import DatasetSplit

BEYOND_KS = (5, 10)
#: metric kinds computed per list (kept per instance); coverage and Gini describe the whole set of lists
PER_LIST = ("novelty", "ild", "niche_share", "trend_share")
KINDS = ("coverage", *PER_LIST[:2], "gini", *PER_LIST[2:])  #: the order results files list them in
#: share of a candidate list (by window count, ours) that counts as trending
TREND_QUANTILE = 0.75


@dataclass
class BeyondReport:
    values: dict[str, float]                 #: metric name -> value over the split
    per_instance: dict[str, np.ndarray]      #: per-list metrics, (n,) with NaN where undefined


def _topk_items(order: np.ndarray, split: DatasetSplit, k: int) -> list[list[str]]:
    cands = split.frame["candidates"].tolist()
    return [[cands[i][j] for j in row[:k] if j >= 0] for i, row in enumerate(order)]


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 when all equal or all zero)."""
    x = np.sort(np.asarray(counts, np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def beyond_accuracy(order: np.ndarray, split: DatasetSplit, ks: tuple[int, ...] = BEYOND_KS) -> BeyondReport:
    """``order``: (n, K) candidate positions, best first (the evaluator's repaired permutations)."""
    items = split.items
    index = {iid: i for i, iid in enumerate(items["item_id"])}
    train = items["train_count"].to_numpy(np.float64) if "train_count" in items else np.zeros(len(items))
    info = -np.log2((train + 1.0) / (train.sum() + len(items)))
    emb = split.embeddings.astype(np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)
    flags = _need_flags(split, index)
    values: dict[str, float] = {}
    per: dict[str, np.ndarray] = {}
    n = len(order)
    for k in ks:
        tops = _topk_items(order, split, k)
        idx = [np.array([index[c] for c in top], np.int64) for top in tops]
        exposure = np.bincount(np.concatenate(idx) if n else np.zeros(0, np.int64), minlength=len(items))
        values[f"coverage@{k}"] = float((exposure > 0).mean()) if len(items) else 0.0
        values[f"gini@{k}"] = gini(exposure)
        nov = np.array([info[ix].mean() if len(ix) else np.nan for ix in idx])
        ild = np.full(n, np.nan)
        for i, ix in enumerate(idx):
            if len(ix) >= 2:
                e = emb[ix]
                sim = e @ e.T
                m = len(ix)
                ild[i] = 1.0 - (sim.sum() - np.trace(sim)) / (m * (m - 1))
        per[f"novelty@{k}"], per[f"ild@{k}"] = nov, ild
        if flags is not None:
            name, flag = flags
            share = np.array([flag[i, row[:k][row[:k] >= 0]].mean() if (row[:k] >= 0).any() else np.nan
                              for i, row in enumerate(order)])
            per[f"{name}@{k}"] = share
    for name, v in per.items():
        values[name] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    ordered = sorted(values, key=lambda m: (KINDS.index(m.split("@")[0]), int(m.split("@")[1])))
    return BeyondReport({m: values[m] for m in ordered if np.isfinite(values[m])}, per)


def _need_flags(split: DatasetSplit, index: dict[str, int]) -> tuple[str, np.ndarray] | None:
    """(metric name, (n, K) bool) of niche or trending candidates, for the niche and trend needs."""
    cands = split.frame["candidates"].tolist()
    k = split.k
    if split.need == "niche" and "topics" in split.items:
        # the build's rule (manifests before the some_unseen default name none; theirs was none_seen)
        rule = (split.manifest.get("needs", {}).get("niche", {}).get("config", {}) or {}).get("rule", "none_seen")
        topics = [frozenset(t) if t is not None else frozenset() for t in split.items["topics"]]
        flag = np.zeros((len(split), k), bool)
        for i, (hist, row) in enumerate(zip(split.frame["history"], cands)):
            seen = frozenset().union(*(topics[index[h]] for h in hist if h in index))
            for j, c in enumerate(row):
                t = topics[index[c]]
                flag[i, j] = bool(t) and (t.isdisjoint(seen) if rule == "none_seen" else not t <= seen)
        return "niche_share", flag
    if split.need == "trend" and "recent_count" in split.frame:  # the counts the prompt showed
        counts = np.where(split.mask, split.candidate_column("recent_count"), np.nan)
        cut = np.nanquantile(counts, TREND_QUANTILE, axis=1, keepdims=True)
        return "trend_share", (counts >= cut) & (counts > 0) & split.mask
    if split.need == "trend":
        from flexrec_bench.building.instance_kinds.sequential import WindowCounter

        window = int(split.manifest.get("needs", {}).get("trend", {}).get("config", {}).get("window_seconds", 86_400))
        inter = split.interactions
        counter = WindowCounter(inter, index)
        pos = np.full((len(split), k), -1, np.int64)
        for i, row in enumerate(cands):
            pos[i, : len(row)] = [index[c] for c in row]
        counts = counter.counts(pos, split.frame["query_time"].to_numpy(np.int64), window).astype(np.float64)
        counts = np.where(split.mask, counts, np.nan)
        cut = np.nanquantile(counts, TREND_QUANTILE, axis=1, keepdims=True)
        return "trend_share", (counts >= cut) & (counts > 0) & split.mask
    return None
