"""Sequential tasks (MovieLens, KuaiRec): an instance is a user's history before a cut point; its
candidates are STAR's top K by the history profile, excluding everything the user saw before."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..splits import SPLITS
from ..signals import POSITIVE_SIGNAL
from ..errors import DataError
from ..retrieval import exact_scores, profile_vectors, retrieve
from .base import Instances, InstanceKind, rng

if TYPE_CHECKING:
    from ..build_config import BuildConfig
    from ..datasets import DatasetSpec, RawData


class SequentialTask(InstanceKind):
    name = "sequential"

    def clean_interactions(self, inter, items, raw, spec):
        src = raw.sources[0] if raw.sources else spec.name
        if inter.empty:
            raise DataError(src, "no interactions read")
        known = inter["item_id"].isin(items["item_id"])
        raw.count_skip("interactions with an item missing from the item file", int((~known).sum()))
        if not known.any():
            raise DataError(src, f"none of the {len(inter)} interactions names an item of the item file "
                                 f"({len(items)} items, e.g. {items['item_id'].iloc[0]!r}); are the files from one release?")
        return drop_duplicates(inter[known], raw)

    def instances(self, raw, inter, cfg, spec, item_index, embedder, progress):
        return sequential_instances(raw, inter, cfg, spec, item_index, progress)

    def candidates(self, split, inst, emb, cfg, spec, raw, item_index):
        allowed = None
        if raw.eval_labels is not None and split != "train":
            allowed = np.unique(raw.eval_labels["item_id"].map(item_index).dropna().astype(np.int64))
        inst.profiles = profile_vectors(inst.history, inst.history_signals, emb, cfg.lam, spec.signal_scale)
        inst.candidates, inst.scores = retrieve(inst.profiles, emb, cfg.candidates, inst.exclude, allowed)
        return ensure_positive(inst, emb, spec) if cfg.ensure_positive else 0

    def window_counts(self, inter, item_index):
        return WindowCounter(inter, item_index)


def drop_duplicates(inter: pd.DataFrame, raw: RawData) -> pd.DataFrame:
    """Duplicates (ours): exact repeats are dropped; for one (user, item, time) with different
    signals the last row in file order wins; both are counted. Rows are first screened with one
    int64 key per (user, item, time), so only the rare candidates go through a full comparison."""
    u, _ = pd.factorize(inter["user_id"])
    i, items = pd.factorize(inter["item_id"])
    t = inter["timestamp"].to_numpy(np.int64)
    if len(t) and (int(u.max()) + 1) * (len(items) + 1) * (int(t.max()) - int(t.min()) + 1) < 2 ** 62:
        key = (u.astype(np.int64) * len(items) + i) * (int(t.max()) - int(t.min()) + 1) + (t - t.min())
        order = np.argsort(key, kind="stable")  # equal keys side by side: one sort, no hash table
        same = key[order][1:] == key[order][:-1]
        maybe = np.zeros(len(key), bool)
        maybe[order[1:][same]] = True
        maybe[order[:-1][same]] = True
    else:
        maybe = np.ones(len(inter), bool)
    sub = inter[maybe]
    exact = sub.duplicated(["user_id", "item_id", "timestamp", "signal"])
    rest = sub[~exact.to_numpy()]
    clash = rest.duplicated(["user_id", "item_id", "timestamp"], keep="last")
    raw.count_skip("duplicate interaction rows (exact repeats)", int(exact.sum()))
    raw.count_skip("interactions repeated with another signal at the same time (the last kept)", int(clash.sum()))
    drop = np.zeros(len(inter), bool)
    idx = np.flatnonzero(maybe)
    drop[idx[exact.to_numpy()]] = True
    drop[idx[~exact.to_numpy()][clash.to_numpy()]] = True
    return inter[~drop] if drop.any() else inter


def _sort_rows(user: np.ndarray, time: np.ndarray, item: np.ndarray) -> np.ndarray:
    """The stable order of rows by (user, time, item): one sort of one composed int64 key where the
    three fit in it, else np.lexsort (the same order either way)."""
    if len(user) == 0:
        return np.zeros(0, np.int64)
    t0, span = int(time.min()), int(time.max()) - int(time.min()) + 1
    n_items = int(item.max()) + 1
    if (int(user.max()) + 1) * span * n_items < 2 ** 62:
        key = (user.astype(np.int64) * span + (time - t0)) * n_items + item
        return np.argsort(key, kind="stable")
    return np.lexsort((item, time, user))


def sequential_instances(raw: RawData, inter: pd.DataFrame, cfg: BuildConfig, spec: DatasetSpec,
                          item_index: dict[str, int], progress: bool) -> tuple[dict[str, Instances], pd.DataFrame]:
    """Cut-point instances of every split, columnar: users are integer codes in lexicographic
    order of their ids, and cut points are counted per user and sampled by position, never
    listed one by one (KuaiRec's big matrix has 2.5M of them)."""
    inter = inter.assign(item_idx=inter["item_id"].map(item_index).astype(np.int64))
    ucodes, users = pd.factorize(inter["user_id"], sort=True)
    users = np.asarray(users).astype(str)
    order = _sort_rows(ucodes, inter["timestamp"].to_numpy(np.int64), inter["item_idx"].to_numpy(np.int64))
    inter = inter.iloc[order].reset_index(drop=True)
    ucodes = ucodes[order]
    # observed subsample (KuaiRec: 10% of each user's interactions), seeded
    if cfg.observed_fraction < 1.0:
        r = rng(cfg.seed, 3).random(len(inter))
        # rows sorted by (user, r): r's order, then a stable counting sort by user (the order
        # np.lexsort((r, ucodes)) gives, in one float sort and one linear pass)
        by_r = np.argsort(r, kind="stable")
        by_r = by_r[np.argsort(ucodes[by_r].astype(np.int32 if len(users) >= 2 ** 15 else np.int16), kind="stable")]
        size_u = np.bincount(ucodes, minlength=len(users))
        start_u = np.r_[0, np.cumsum(size_u)[:-1]]
        rank = np.empty(len(inter), np.float64)
        rank[by_r] = np.arange(len(inter)) - start_u[ucodes[by_r]] + 1
        size = size_u[ucodes]
        inter["observed"] = rank <= np.maximum(1, np.round(size * cfg.observed_fraction))
    perm = rng(cfg.seed, 1).permutation(len(users))
    f_train, f_val, _ = cfg.split_fractions
    n_train, n_val = int(round(f_train * len(users))), int(round(f_val * len(users)))
    split_code = np.empty(len(users), np.int8)  # 0 train, 1 val, 2 test
    split_code[perm] = np.where(np.arange(len(users)) < n_train, 0, np.where(np.arange(len(users)) < n_train + n_val, 1, 2))
    inter["split"] = pd.Categorical.from_codes(split_code[ucodes], categories=list(SPLITS))
    eval_sets: dict[str, dict[int, float]] = {}
    if raw.eval_labels is not None:
        el = raw.eval_labels
        held_out = {u for u, c in zip(users, split_code) if c != 0}
        el = el[el["item_id"].isin(item_index) & el["user_id"].isin(held_out)]
        el_items = el["item_id"].map(item_index).astype(np.int64).to_numpy()
        el_codes, el_users = pd.factorize(el["user_id"])
        el_sig = el["signal"].to_numpy(np.float64)
        grp = np.argsort(el_codes, kind="stable")
        cuts = np.flatnonzero(np.r_[True, np.diff(el_codes[grp]) != 0, True])
        for g in range(len(cuts) - 1):
            rows = grp[cuts[g]: cuts[g + 1]]
            eval_sets[str(el_users[el_codes[rows[0]]])] = dict(zip(el_items[rows].tolist(), el_sig[rows].tolist()))
    bounds = np.flatnonzero(np.r_[True, ucodes[1:] != ucodes[:-1], True])
    block_user = ucodes[bounds[:-1]]
    n_u = np.diff(bounds)
    items_arr = inter["item_idx"].to_numpy()
    sig_arr = inter["signal"].to_numpy(np.float64)
    ts_arr = inter["timestamp"].to_numpy(np.int64)
    obs_arr = inter["observed"].to_numpy(bool)
    block_split = split_code[block_user]
    if raw.eval_labels is not None:  # held-out users need a row in the fully observed matrix
        has_eval = np.array([users[u] in eval_sets for u in block_user])
        eligible = (block_split == 0) | has_eval
    else:
        eligible = np.ones(len(block_user), bool)
    short = eligible & (n_u <= cfg.min_history)
    raw.count_skip(f"users with at most min_history={cfg.min_history} interactions", int(short.sum()))
    n_cuts = np.where(eligible & ~short, (n_u - cfg.min_history + cfg.stride - 1) // cfg.stride, 0)
    sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}
    out: dict[str, Instances] = {}
    for s_i, split in enumerate(SPLITS):
        blocks = np.flatnonzero((block_split == s_i) & (n_cuts > 0))
        cum = np.cumsum(n_cuts[blocks])
        total = int(cum[-1]) if len(cum) else 0
        if total == 0:
            extra = " and a row in the fully observed matrix" if raw.eval_labels is not None and split != "train" else ""
            raise DataError(raw.sources[0], f"empty {split} split: no user in it has more than "
                                            f"min_history={cfg.min_history} interactions{extra}")
        pos = np.arange(total)
        if total > sizes[split]:
            pos = np.sort(rng(cfg.seed, 10 + s_i).choice(total, sizes[split], replace=False))
        which = np.searchsorted(cum, pos, side="right")
        cand = list(zip(blocks[which].tolist(), (cfg.min_history + (pos - (cum[which] - n_cuts[blocks[which]]))
                                                 * cfg.stride).tolist()))
        inst = Instances([], [], [], [], [], [], np.zeros(len(cand), np.int64), [], [])
        for n, (b, c) in enumerate(tqdm(cand, desc=f"instances {split}", disable=not progress, leave=False)):
            lo, hi = bounds[b], bounds[b + 1]
            u = str(users[block_user[b]])
            h0 = max(lo, lo + c - cfg.history)
            inst.instance_id.append(f"{u}@{c}")
            inst.user_id.append(u)
            inst.query.append("")
            inst.history.append(items_arr[h0: lo + c].copy())
            inst.history_signals.append(sig_arr[h0: lo + c].copy())
            inst.history_times.append(ts_arr[h0: lo + c].copy())
            inst.query_time[n] = ts_arr[lo + c]
            inst.exclude.append(np.unique(items_arr[lo: lo + c]))
            if raw.eval_labels is not None and split != "train":
                past = set(inst.exclude[-1].tolist())
                inst.known.append({k: v for k, v in eval_sets[u].items() if k not in past})
            else:
                fut = slice(lo + c, hi)
                keep = obs_arr[fut]
                inst.known.append(dict(zip(items_arr[fut][keep].tolist(), sig_arr[fut][keep].tolist())))
        out[split] = inst
    return out, inter


def ensure_positive(inst: Instances, emb: np.ndarray, spec: DatasetSpec) -> int:
    """(Ours, off by default.) Where no retrieved candidate is a known positive, the best-scored
    positive replaces the weakest candidate and takes over its retrieval score, so neither its
    score nor (after the presentation shuffle) its slot marks it. Returns the number replaced."""
    injected = 0
    for i in range(len(inst)):
        pos = [k for k, v in inst.known[i].items() if v >= POSITIVE_SIGNAL[spec.signal_kind]]
        if not pos:
            continue
        row = inst.candidates[i]
        valid = row >= 0
        if np.isin(row[valid], pos).any():
            continue
        last = int(valid.sum()) - 1
        if last < 0:
            continue
        pos_arr = np.array(sorted(pos), np.int64)
        sc = exact_scores(emb[pos_arr], inst.profiles[i])
        row[last] = pos_arr[int(np.lexsort((pos_arr, -sc))[0])]  # the score in inst.scores[i, last] stays
        injected += 1
    return injected


class WindowCounter:
    """Counts, per (item, time), the interactions with the item in [t - w, t): binary search
    in one sorted array of (item, time) keys."""

    def __init__(self, inter: pd.DataFrame, item_index: dict[str, int]):
        idx = (inter["item_idx"] if "item_idx" in inter else inter["item_id"].map(item_index)).to_numpy(np.int64)
        ts = inter["timestamp"].to_numpy(np.int64)
        self.t0 = int(ts.min()) if len(ts) else 0
        self.span = (int(ts.max()) - self.t0 + 1) if len(ts) else 1
        self.keys = np.sort(idx * self.span + (ts - self.t0))

    def counts(self, candidates: np.ndarray, query_time: np.ndarray, window: int) -> np.ndarray:
        t = np.clip(query_time[:, None] - self.t0, 0, self.span)
        lo = np.clip(t - window, 0, self.span)
        base = np.where(candidates >= 0, candidates, 0) * self.span
        hi_pos = np.searchsorted(self.keys, base + t, side="left")
        lo_pos = np.searchsorted(self.keys, base + lo, side="left")
        return np.where(candidates >= 0, hi_pos - lo_pos, 0)
