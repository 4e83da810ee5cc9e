"""The columnar build's pieces against the plain versions they replaced (issue 26): the same
answers, so the same bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flexrec_bench.datasets.base import RawData
from flexrec_bench.building.instance_kinds.base import Known
from flexrec_bench.building.instance_kinds.sequential import (WindowCounter, _observed_subsample, _sort_rows,
                                                      item_positions, sort_and_dedupe)


def test_window_counter_equals_brute_force():
    gen = np.random.default_rng(0)
    for _ in range(25):
        n, n_items, span = int(gen.integers(1, 2000)), int(gen.integers(1, 40)), int(gen.integers(1, 5000))
        idx, ts = gen.integers(0, n_items, n), gen.integers(100, 100 + span, n)
        counter = WindowCounter(pd.DataFrame({"item_idx": idx, "timestamp": ts}), {})
        cands = gen.integers(-1, n_items + 3, (30, 6))
        qt, window = gen.integers(50, 200 + span, 30), int(gen.integers(1, span + 5))
        got = counter.counts(cands, qt, window)
        for i in range(30):
            t = min(max(qt[i], ts.min()), ts.max() + 1)
            for j in range(6):
                want = 0 if cands[i, j] < 0 else int(((idx == cands[i, j]) & (ts >= max(t - window, ts.min())) & (ts < t)).sum())
                assert got[i, j] == want


def test_known_reads_like_the_dict_it_replaced():
    items, sig = np.array([5, 2, 5, 9, 2]), np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    kn = Known(items, sig)
    assert dict(kn) == dict(zip(items.tolist(), sig.tolist()))  # a repeated item keeps its last signal
    assert kn.items.tolist() == [2, 5, 9] and 7 not in kn and kn[9] == 4.0
    np.testing.assert_array_equal(kn.lookup(np.array([9, 7, 2])), [4.0, np.nan, 5.0])
    assert kn.at_least(4.0).tolist() == [2, 9] and dict(kn.without(np.array([5]))) == {2: 5.0, 9: 4.0}
    with pytest.raises(KeyError):
        kn[3]
    rng = np.random.default_rng(0)
    for _ in range(50):  # without() against the set difference, for unsorted, repeated and empty drops
        big = Known(rng.integers(0, 40, 30), rng.random(30))
        drop = rng.integers(0, 60, int(rng.integers(0, 20)))
        assert dict(big.without(drop)) == {i: v for i, v in dict(big).items() if i not in set(drop.tolist())}


def test_observed_subsample_equals_a_lexsort_ranking():
    gen = np.random.default_rng(1)
    ucodes = np.sort(gen.integers(0, 50, 3000))
    bounds = np.flatnonzero(np.r_[True, ucodes[1:] != ucodes[:-1], True])
    got = _observed_subsample(ucodes, bounds, 0.1, seed=7)
    r = np.random.default_rng([7, 3]).random(len(ucodes))
    order = np.lexsort((r, ucodes))
    size = np.bincount(ucodes)
    rank = np.empty(len(r))
    rank[order] = np.arange(len(r)) - np.r_[0, np.cumsum(size)[:-1]][ucodes[order]] + 1
    np.testing.assert_array_equal(got, rank <= np.maximum(1, np.round(size[ucodes] * 0.1)))


def test_sort_rows_is_the_stable_lexsort_and_none_when_sorted():
    gen = np.random.default_rng(2)
    u, t, i = gen.integers(0, 20, 5000), gen.integers(0, 50, 5000), gen.integers(0, 30, 5000)
    order = _sort_rows(u, t, i)
    np.testing.assert_array_equal(order, np.lexsort((i, t, u)))
    assert _sort_rows(u[order], t[order], i[order]) is None


def test_sort_and_dedupe_keeps_what_the_hash_version_kept():
    gen = np.random.default_rng(3)
    n = 4000
    inter = pd.DataFrame({"user_id": pd.Categorical(gen.choice(["u1", "u10", "u2", "u3"], n)),
                          "item_id": gen.choice(["a", "b", "c", "zz"], n),
                          "signal": gen.integers(0, 3, n).astype(float),
                          "timestamp": gen.integers(0, 40, n), "observed": np.ones(n, bool)})
    index = {"a": 0, "b": 1, "c": 2}
    raw = RawData("t", items=pd.DataFrame(), interactions=inter, sources=[])
    got = sort_and_dedupe(inter, item_positions(inter["item_id"], index), inter["item_id"].isin(index).to_numpy(), raw)
    # the plain version: drop exact repeats (first kept), then same-time clashes (last kept), then sort
    plain = inter[inter["item_id"].isin(index)]
    exact = plain.duplicated(["user_id", "item_id", "timestamp", "signal"])
    rest = plain[~exact]
    clash = rest.duplicated(["user_id", "item_id", "timestamp"], keep="last")
    want = rest[~clash].assign(item_idx=lambda d: d["item_id"].map(index))
    want = want.iloc[np.lexsort((want["item_idx"], want["timestamp"], want["user_id"].astype(str)))]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
    assert raw.skipped == {"duplicate interaction rows (exact repeats)": int(exact.sum()),
                           "interactions repeated with another signal at the same time (the last kept)": int(clash.sum())}
