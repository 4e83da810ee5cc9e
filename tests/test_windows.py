"""Sliding windows: back to front, each window reorders only its own slice, every ranker option
combines with them, and bad window/stride values are refused before any model loads."""

from __future__ import annotations

import numpy as np
import pytest

from flexrec_bench.foundation.errors import ConfigError
from flexrec_bench.ranking.rankers.hf import HFRanker
from flexrec_bench.ranking.rankers.base import make_ranker
from flexrec_bench.building.splits import load_split
from flexrec_bench.ranking.windows import window_starts


class Reverse(HFRanker):
    """A fake model that ranks its prompt's candidates in reverse presented order, and records them."""

    def generate(self, batch, max_new_tokens):
        self.seen.append([len(m[-1]["content"].split("\n[C")) - 1 for m in batch])
        return ["<answer>" + ", ".join(f"C{j}" for j in range(k, 0, -1)) + "</answer>" for k in self.batch_sizes_k]


def test_window_starts_run_back_to_front():
    assert window_starts(100, 20, 10) == [80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert window_starts(30, 20, 10) == [10, 0] and window_starts(20, 20, 5) == [0] and window_starts(25, 20, 10) == [5, 0]


def test_windows_reorder_only_their_slice(ml100k):
    split = load_split(ml100k, "ml-100k", "interest", "test").head(5)
    k = split.k
    r = Reverse("fake", window=20, stride=10, batch_size=8, progress=False)
    r.seen = []
    r.count_tokens = lambda text: None
    res = r.rank(split)
    # two rounds over K = 30 (positions 10-29, then 0-19), every prompt shows 20 candidates
    assert r.seen == [[20] * 5, [20] * 5] and res.usage["calls"] == 2 and res.usage["prompts"] == 10
    # by hand: reverse 10..29, then reverse the first 20 of that list
    cur = list(range(k))
    cur[10:30] = cur[10:30][::-1]
    cur[0:20] = cur[0:20][::-1]
    assert all(list(res.order[i]) == cur for i in range(5))
    assert res.outputs[0].startswith("<answer>C" + str(cur[0] + 1) + ",") and "[window 2]" in res.outputs[0]
    one = Reverse("fake", batch_size=8, progress=False)
    one.seen = []
    one.count_tokens = lambda text: None
    assert list(one.rank(split).order[0]) == list(range(k))[::-1] and one.seen == [[30] * 5]


def test_bad_windows_are_refused(ml100k):
    split = load_split(ml100k, "ml-100k", "interest", "test").head(2)
    with pytest.raises(ConfigError, match=r"-o window=40 is larger than the 30 candidates"):
        make_ranker("hf:nowhere", window=40).rank(split)  # refused before the model (which does not exist) loads
    with pytest.raises(ConfigError, match=r"-o stride must be from 1 to window - 1 = 19, got 20"):
        make_ranker("hf:nowhere", window=20, stride=20)
    with pytest.raises(ConfigError, match=r"-o stride must be from 1 to window - 1 = 19, got 0"):
        make_ranker("hf:nowhere", window=20, stride=0)
    with pytest.raises(ConfigError, match=r"stride needs -o window"):
        make_ranker("hf:nowhere", stride=5)
    with pytest.raises(ConfigError, match=r"-o window: must be >= 2"):
        make_ranker("openai:gpt-4o", window=1, api_key="never-sent")


def test_first_token_scoring_in_windows_on_a_tiny_model(ml100k, tiny_model):
    split = load_split(ml100k, "ml-100k", "niche", "test").head(2)
    res = make_ranker(f"hf:{tiny_model}", scoring="first_token", window=12, stride=6, progress=False).rank(split)
    assert res.usage["calls"] == len(window_starts(split.k, 12, 6))
    assert all(sorted(res.order[i][res.order[i] >= 0]) == list(range(split.k)) for i in range(2))
