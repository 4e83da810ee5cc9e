"""Sequential tasks (MovieLens, KuaiRec): an instance is a user's history before a cut point; its
candidates are STAR's top K by the history profile, excluding everything the user saw before."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from flexrec_bench.building.splits import SPLITS
from flexrec_bench.datasets.signals import POSITIVE_SIGNAL
from flexrec_bench.foundation.errors import DataError
from flexrec_bench.building.retrieval import exact_scores, profile_vectors, retrieve
from flexrec_bench.building.instance_kinds.base import Instances, InstanceKind, Known, rng

if TYPE_CHECKING:
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.datasets import DatasetSpec, RawData


class SequentialTask(InstanceKind):
    name = "sequential"

    def clean_interactions(self, inter, items, raw, spec):
        src = raw.sources[0] if raw.sources else spec.name
        if inter.empty:
            raise DataError(src, "no interactions read")
        idx = item_positions(inter["item_id"], {iid: i for i, iid in enumerate(items["item_id"])})
        known = idx >= 0
        raw.count_skip("interactions with an item missing from the item file", int((~known).sum()))
        if not known.any():
            raise DataError(src, f"none of the {len(inter)} interactions names an item of the item file "
                                 f"({len(items)} items, e.g. {items['item_id'].iloc[0]!r}); are the files from one release?")
        return sort_and_dedupe(inter, idx, known, raw)

    def instances(self, raw, inter, cfg, spec, item_index, embedder, progress):
        return sequential_instances(raw, inter, cfg, spec, item_index, progress)

    def candidates(self, split, inst, emb, cfg, spec, raw, item_index):
        allowed = None
        if raw.eval_labels is not None and split != "train":
            pos = item_positions(raw.eval_labels["item_id"], item_index)
            allowed = np.flatnonzero(np.bincount(pos[pos >= 0], minlength=len(item_index)))  # = np.unique
        inst.profiles = profile_vectors(inst.history, inst.history_signals, emb, cfg.lam, spec.signal_scale)
        inst.candidates, inst.scores = retrieve(inst.profiles, emb, cfg.candidates, inst.exclude, allowed)
        return ensure_positive(inst, emb, spec) if cfg.ensure_positive else 0

    def window_counts(self, inter, item_index):
        return WindowCounter(inter, item_index)


def item_positions(ids: pd.Series, item_index: dict[str, int]) -> np.ndarray:
    """Each row's position in the item table (-1 where the item is not in it); a Categorical
    column is looked up once per category, not once per row."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        per_cat = np.array([item_index.get(c, -1) for c in ids.cat.categories], np.int64)
        codes = ids.cat.codes.to_numpy()
        return np.where(codes >= 0, np.append(per_cat, -1)[codes], -1)
    return ids.map(item_index).fillna(-1).to_numpy(np.int64)


def _in_set(ids: pd.Series, allowed: set) -> np.ndarray:
    """``ids.isin(allowed)``, once per category for a Categorical column."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        per_cat = np.array([c in allowed for c in ids.cat.categories] + [False], bool)
        return per_cat[ids.cat.codes.to_numpy()]
    return ids.isin(allowed).to_numpy()


def _take(frame: pd.DataFrame, rows: np.ndarray | None, **extra: np.ndarray) -> pd.DataFrame:
    """The rows ``rows`` of ``frame`` (all of them, in order, for None) column by column, with the
    ``extra`` columns added; categoricals are taken by their codes."""
    cols = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy()
            cols[name] = pd.Categorical.from_codes(codes if rows is None else codes[rows], dtype=col.dtype)
        else:
            vals = col.to_numpy()
            cols[name] = vals if rows is None else vals[rows]
    cols.update(extra)
    return pd.DataFrame(cols, copy=False)


def sort_and_dedupe(inter: pd.DataFrame, idx: np.ndarray, keep: np.ndarray, raw: RawData) -> pd.DataFrame:
    """The rows whose item is known (``keep``), sorted by (user, time, item) in one stable sort, with
    duplicates dropped, and each row's item position as ``item_idx``.

    Duplicates (ours): exact repeats are dropped; for one (user, item, time) with different signals
    the last row in file order wins; both are counted. In the sorted rows a (user, item, time) group
    lies side by side in file order, so only rows equal to a neighbour go through the full comparison."""
    everything = bool(keep.all())
    rows = np.arange(len(keep)) if everything else np.flatnonzero(keep)
    ucodes, t, item = user_order(inter["user_id"]), inter["timestamp"].to_numpy(np.int64), idx
    if not everything:
        ucodes, t, item = ucodes[rows], t[rows], item[rows]
    order = _sort_rows(ucodes, t, item)
    if order is not None:
        rows, ucodes, t, item = rows[order], ucodes[order], t[order], item[order]
    same = (ucodes[1:] == ucodes[:-1]) & (t[1:] == t[:-1]) & (item[1:] == item[:-1])
    drop = np.zeros(len(rows), bool)
    if same.any():
        maybe = np.zeros(len(rows), bool)
        maybe[1:] |= same
        maybe[:-1] |= same
        at = np.flatnonzero(maybe)
        sub = pd.DataFrame({"u": ucodes[at], "i": item[at], "t": t[at],
                            "s": inter["signal"].to_numpy()[rows[at]]})
        exact = sub.duplicated(["u", "i", "t", "s"]).to_numpy()
        clash = sub[~exact].duplicated(["u", "i", "t"], keep="last").to_numpy()
        raw.count_skip("duplicate interaction rows (exact repeats)", int(exact.sum()))
        raw.count_skip("interactions repeated with another signal at the same time (the last kept)", int(clash.sum()))
        drop[at[exact]] = True
        drop[at[~exact][clash]] = True
    if drop.any():
        rows, item = rows[~drop], item[~drop]
    identity = len(rows) == len(inter) and (len(rows) == 0 or (rows[0] == 0 and bool(np.all(np.diff(rows) == 1))))
    return _take(inter, None if identity else rows, item_idx=item)


def user_order(ids: pd.Series) -> np.ndarray:
    """Integer codes whose order is the order ``pd.factorize(ids, sort=True)`` sorts users in (for
    ordering and grouping, not dense): a Categorical's own codes, which follow its categories."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        codes = ids.cat.codes.to_numpy()
        if len(codes) == 0 or codes.min() >= 0:
            return codes
    return pd.factorize(ids, sort=True)[0]


def _sort_rows(user: np.ndarray, time: np.ndarray, item: np.ndarray) -> np.ndarray | None:
    """The stable order of rows by (user, time, item), or None where they are in it already: one
    composed int64 key where the three fit in it (checked in one pass, sorted only when out of
    order), else np.lexsort (the same order either way)."""
    if len(user) == 0:
        return None
    t0, span = int(time.min()), int(time.max()) - int(time.min()) + 1
    n_items = int(item.max()) + 1
    if (int(user.max()) + 1) * span * n_items < 2 ** 62:
        by_user = None
        if not np.all(user[1:] >= user[:-1]):  # a counting sort by user first (radix for small codes)
            narrow = user.astype(np.uint16 if user.max() < 2 ** 16 else np.int64)
            by_user = np.argsort(narrow, kind="stable")
        key = (user.astype(np.int64) * span + (time - t0)) * n_items + item
        if by_user is not None:
            key = key[by_user]
        if np.all(key[1:] >= key[:-1]):
            return by_user
        order = np.argsort(key, kind="stable")  # nearly sorted keys: a fast run-merging sort
        return order if by_user is None else by_user[order]
    order = np.lexsort((item, time, user))
    return None if np.all(np.diff(order) == 1) else order


def _observed_subsample(ucodes: np.ndarray, bounds: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """KuaiRec's observed subsample (ours: a seeded ``fraction`` of each user's interactions, at
    least one): in each user's block of rows the rows with the round(n * fraction) smallest of one
    seeded uniform draw per row, ties by position (what ranking by np.lexsort((r, user)) gives),
    found by one partition per user instead of a sort of every row."""
    r = rng(seed, 3).random(len(ucodes))
    out = np.zeros(len(ucodes), bool)
    sizes = np.diff(bounds)
    want = np.maximum(1, np.round(sizes * fraction)).astype(np.int64)
    for lo, hi, m in zip(bounds[:-1].tolist(), bounds[1:].tolist(), want.tolist()):
        if m >= hi - lo:
            out[lo:hi] = True
            continue
        block = r[lo:hi]
        v = np.partition(block, m - 1)[m - 1]
        sel = block < v
        ties = np.flatnonzero(block == v)[: m - int(sel.sum())]
        sel[ties] = True
        out[lo:hi] = sel
    return out


def sequential_instances(raw: RawData, inter: pd.DataFrame, cfg: BuildConfig, spec: DatasetSpec,
                          item_index: dict[str, int], progress: bool) -> tuple[dict[str, Instances], pd.DataFrame]:
    """Cut-point instances of every split, columnar: users are integer codes in lexicographic
    order of their ids, and cut points are counted per user and sampled by position, never
    listed one by one (KuaiRec's big matrix has 2.5M of them)."""
    if "item_idx" not in inter:
        inter = inter.assign(item_idx=item_positions(inter["item_id"], item_index))
    ucodes, users = pd.factorize(inter["user_id"], sort=True)
    users = np.asarray(users).astype(str)
    order = _sort_rows(ucodes, inter["timestamp"].to_numpy(np.int64), inter["item_idx"].to_numpy(np.int64))
    if order is not None:
        inter = _take(inter, order)
        ucodes = ucodes[order]
    bounds = np.flatnonzero(np.r_[True, ucodes[1:] != ucodes[:-1], True])
    annot = {}
    if cfg.observed_fraction < 1.0:  # observed subsample (KuaiRec: 10% of each user's interactions), seeded
        annot["observed"] = _observed_subsample(ucodes, bounds, cfg.observed_fraction, cfg.seed)
    perm = rng(cfg.seed, 1).permutation(len(users))
    f_train, f_val, _ = cfg.split_fractions
    n_train, n_val = int(round(f_train * len(users))), int(round(f_val * len(users)))
    split_code = np.empty(len(users), np.int8)  # 0 train, 1 val, 2 test
    split_code[perm] = np.where(np.arange(len(users)) < n_train, 0, np.where(np.arange(len(users)) < n_train + n_val, 1, 2))
    annot["split"] = pd.Categorical.from_codes(split_code[ucodes], categories=list(SPLITS))
    inter = _take(inter, None, **annot)
    eval_sets: dict[str, Known] = {}
    if raw.eval_labels is not None:
        el = raw.eval_labels
        held_out = {u for u, c in zip(users, split_code) if c != 0}
        el_pos = item_positions(el["item_id"], item_index)
        rows = np.flatnonzero((el_pos >= 0) & _in_set(el["user_id"], held_out))
        el_items = el_pos[rows]
        el_codes, el_users = pd.factorize(el["user_id"].iloc[rows])
        el_sig = el["signal"].to_numpy(np.float64)[rows]
        grp = np.argsort(el_codes, kind="stable")
        cuts = np.flatnonzero(np.r_[True, np.diff(el_codes[grp]) != 0, True])
        for g in range(len(cuts) - 1):
            rows = grp[cuts[g]: cuts[g + 1]]
            eval_sets[str(el_users[el_codes[rows[0]]])] = Known(el_items[rows], el_sig[rows])
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
                inst.known.append(eval_sets[u].without(inst.exclude[-1]))
            else:
                fut = slice(lo + c, hi)
                keep = obs_arr[fut]
                inst.known.append(Known(items_arr[fut][keep], sig_arr[fut][keep]))
        out[split] = inst
    return out, inter


def ensure_positive(inst: Instances, emb: np.ndarray, spec: DatasetSpec) -> int:
    """(Ours, off by default.) Where no retrieved candidate is a known positive, the best-scored
    positive replaces the weakest candidate and takes over its retrieval score, so neither its
    score nor (after the presentation shuffle) its slot marks it. Returns the number replaced."""
    injected = 0
    for i in range(len(inst)):
        pos_arr = inst.known[i].at_least(POSITIVE_SIGNAL[spec.signal_kind])  # sorted
        if not len(pos_arr):
            continue
        row = inst.candidates[i]
        valid = row >= 0
        if np.isin(row[valid], pos_arr).any():
            continue
        last = int(valid.sum()) - 1
        if last < 0:
            continue
        sc = exact_scores(emb[pos_arr], inst.profiles[i])
        row[last] = pos_arr[int(np.lexsort((pos_arr, -sc))[0])]  # the score in inst.scores[i, last] stays
        injected += 1
    return injected


class WindowCounter:
    """Counts, per (item, time), the interactions with the item in [t - w, t), exactly, without
    sorting every interaction: the rows are counted into (item, time bucket) cells (about one row
    per cell), a prefix sum over the cells counts every row before a queried cell, and only the rows
    in the queried cells are sorted to count those before the queried time within it."""

    def __init__(self, inter: pd.DataFrame, item_index: dict[str, int]):
        idx = (inter["item_idx"] if "item_idx" in inter else inter["item_id"].map(item_index)).to_numpy(np.int64)
        ts = inter["timestamp"].to_numpy(np.int64)
        self.t0 = int(ts.min()) if len(ts) else 0
        self.span = (int(ts.max()) - self.t0 + 1) if len(ts) else 1
        self.n_items = int(idx.max()) + 1 if len(idx) else 1
        per_item = max(1, min(self.span, len(ts) // self.n_items))  # buckets per item
        self.width = -(-self.span // per_item)  # seconds per bucket
        self.buckets = -(-self.span // self.width)
        # in place where it can be: each fresh 12.5M-row temporary costs its page faults
        self.idx = idx
        self.offset = ts - self.t0
        self.cells = self.offset // self.width
        self.cells += idx * self.buckets
        self.before = np.r_[0, np.cumsum(np.bincount(self.cells, minlength=self.n_items * self.buckets))]

    def _before(self, items: np.ndarray, t: np.ndarray, selected: np.ndarray) -> np.ndarray:
        """Per query, the interactions with ``items`` before offset ``t`` (0 <= t <= span), up to a
        constant per item that cancels in a window's difference."""
        b = t // self.width
        inside = b < self.buckets  # t == span lies past the item's last bucket: all its rows count
        cell = items * self.buckets + np.minimum(b, self.buckets - 1)
        whole = np.where(inside, self.before[cell], self.before[items * self.buckets + self.buckets])
        base = items * self.span
        part = (np.searchsorted(selected, base + t, side="left")
                - np.searchsorted(selected, base + np.minimum(b, self.buckets - 1) * self.width, side="left"))
        return whole + np.where(inside, part, 0)

    def counts(self, candidates: np.ndarray, query_time: np.ndarray, window: int) -> np.ndarray:
        valid = candidates >= 0
        items = np.where(valid, candidates, 0)
        if items.size and int(items.max()) >= self.n_items:  # an item with no interaction at all
            items = np.where(items < self.n_items, items, 0)
            valid = valid & (candidates < self.n_items)
        t = np.clip(query_time[:, None] - self.t0, 0, self.span) + np.zeros_like(items)
        lo = np.clip(t - window, 0, self.span)
        touched = np.zeros(self.n_items * self.buckets, bool)
        for q in (t, lo):
            b = q[valid] // self.width
            touched[(items[valid] * self.buckets + b)[b < self.buckets]] = True
        rows = touched[self.cells]
        selected = np.sort(self.idx[rows] * self.span + self.offset[rows])  # item-major fine keys of those rows
        return np.where(valid, self._before(items, t, selected) - self._before(items, lo, selected), 0)
