from __future__ import annotations

import numpy as np

from flexrec_bench.parsing import extract_ids, parse_ranking
from flexrec_bench.prompts import PromptConfig, build_messages
from flexrec_bench.ranking import ParseStats


def test_answer_block_with_reasoning():
    text = "<think>C9 looks bad, maybe C1</think>\nSure! <answer>C2, C3, C1</answer>"
    assert extract_ids(text) == [1, 2, 0]


def test_json_and_lines_and_unclosed_blocks():
    assert extract_ids('["C3", "C1"]') == [2, 0]
    assert extract_ids('{"ranking": ["C2", "C01"]}') == [1, 0]
    assert extract_ids("1. C4\n2. C2\n3. c1") == [3, 1, 0]
    assert extract_ids("<answer>C2, C1") == [1, 0]
    assert extract_ids("<think>unfinished C5 C6") == []


def test_repairs_are_counted_and_padding_is_seeded():
    stats = ParseStats()
    a = parse_ranking("<answer>C2, C2, C9, C1</answer>", 4, np.random.default_rng(0), stats)
    b = parse_ranking("<answer>C2, C2, C9, C1</answer>", 4, np.random.default_rng(0), ParseStats())
    assert a == b and a[:2] == [1, 0] and sorted(a) == [0, 1, 2, 3]
    assert (stats.duplicates, stats.invalid_ids, stats.missing_items, stats.unparseable) == (1, 1, 2, 0)
    parse_ranking("no idea", 4, np.random.default_rng(0), stats)
    parse_ranking("<answer>C1, C2, C3, C4</answer>", 4, np.random.default_rng(0), stats)
    assert stats.unparseable == 1 and stats.complete == 1 and stats.instances == 3


def test_prompt_contains_need_history_candidates_and_format():
    msgs = build_messages("Explore new topics.", ["Title: A", "Title: B"], [4, 5], "rating", "", ["Title: X", "Title: Y"],
                          PromptConfig())
    user = msgs[1]["content"]
    assert msgs[0]["role"] == "system" and "Need: Explore new topics." in user
    assert "- Title: A (rated 4/5)" in user and "[C1] Title: X" in user and "[C2] Title: Y" in user
    assert "<answer>" in user and "all 2 candidate ids" in user


def test_truncation_drops_oldest_history_then_shortens_candidates():
    hist = [f"Title: history item number {i} " + "x" * 100 for i in range(30)]
    cands = [f"Title: candidate {i} " + "y" * 200 for i in range(30)]
    count = lambda s: len(s) // 4
    msgs = build_messages("Need.", hist, [5] * 30, "rating", "", cands, PromptConfig(max_prompt_tokens=2500), count)
    user = msgs[1]["content"]
    assert count(msgs[0]["content"] + user) <= 2500
    assert "history item number 29" in user and "history item number 0 " not in user
    assert all(f"[C{i + 1}]" in user for i in range(30))
    msgs = build_messages("Need.", hist, [5] * 30, "rating", "", cands, PromptConfig(max_prompt_tokens=600), count)
    user = msgs[1]["content"]
    assert "history item" not in user and all(f"[C{i + 1}]" in user for i in range(30))
    assert "y" * 60 not in user
