from __future__ import annotations

import numpy as np

from flexrec_bench.ranking.parsing import parse_ranking, rank_text
from flexrec_bench.ranking.prompts import PromptConfig, build_messages
from flexrec_bench.ranking.permutations import ParseStats


IDS = [f"C{j}" for j in range(1, 13)]


def _pos(text, k=12):
    return parse_ranking(text, IDS[:k]).positions


def test_answer_block_with_reasoning():
    text = "<think>C9 looks bad, maybe C1</think>\nSure! <answer>C2, C3, C1</answer>"
    p = parse_ranking(text, IDS)
    assert p.positions == [1, 2, 0] and p.order == ["C2", "C3", "C1"] and p.think == "C9 looks bad, maybe C1"
    from flexrec_bench.ranking.parsing import reasoning_text

    assert reasoning_text(text) == "C9 looks bad, maybe C1" and reasoning_text("<answer>C1</answer>") == ""
    assert [text[s:e] for s, e in p.spans] == ["C2", "C3", "C1"]  # character offsets into the text itself


def test_list_forms_case_and_whole_ids():
    assert _pos("C3 > C1 > C2") == [2, 0, 1]
    assert _pos("Ranking: C2, C1") == [1, 0]
    assert _pos("1. C4\n2. C2\n3. c1") == [3, 1, 0]
    assert _pos('["C3", "C1"]') == [2, 0] and _pos('{"ranking": ["C2", "C01"]}') == [1, 0]
    assert _pos("lowercase c5 then C11") == [4, 10]  # C11 is never read as C1
    assert parse_ranking("C11, C1", IDS[:3]).invalid == ["C11"]


def test_unclosed_blocks_are_truncated():
    p = parse_ranking("<answer>C2, C1", IDS[:3])
    assert p.positions == [1, 0] and p.truncated and not p.complete
    q = parse_ranking("<think>unfinished C5 C6", IDS)
    assert q.positions == [] and q.truncated and q.think == "unfinished C5 C6"


def test_diagnostics_and_seeded_padding_are_counted():
    p = parse_ranking("<answer>C2, C2, C9, C1</answer>", IDS[:4])
    assert p.order == ["C2", "C1"] and p.duplicates == 1 and p.invalid == ["C9"] and p.missing == ["C3", "C4"]
    stats = ParseStats()
    a = rank_text("<answer>C2, C2, C9, C1</answer>", 4, np.random.default_rng(0), stats)
    b = rank_text("<answer>C2, C2, C9, C1</answer>", 4, np.random.default_rng(0))
    assert a == b and a[:2] == [1, 0] and sorted(a) == [0, 1, 2, 3]
    assert (stats.duplicates, stats.invalid_ids, stats.missing_items, stats.unparseable) == (1, 1, 2, 0)
    rank_text("no idea", 4, np.random.default_rng(0), stats)
    rank_text("<answer>C1, C2, C3, C4</answer>", 4, np.random.default_rng(0), stats)
    assert stats.unparseable == 1 and stats.complete == 1 and stats.instances == 3


def test_training_env_and_evaluator_read_a_ranking_alike():
    """The reviewer's case: 'Ranking: C2 > C1' is scored by the evaluator and earns item credit in
    training (spans for both items), through the one parser."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.env import RankingEnv, _Instance

    env = RankingEnv()
    env.instances["k"] = _Instance("k", 2, np.array([0.0, 1.0]), np.zeros(2), 1.0)
    text = "Ranking: C2 > C1"
    offsets = [(i, i + 1) for i in range(len(text))]
    r = env.parse("k", text, offsets)
    assert r.order == [1, 0] == rank_text(text, 2, np.random.default_rng(0)) and r.format_ok
    assert all(len(s) == 2 for s in r.spans)  # both ids map to their two characters' tokens


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


def test_need_prompts_show_what_the_label_uses(ml100k):
    """Trend prompts show each candidate's recent count with the window named; niche prompts list the
    history's genres whenever the shown history texts do not name them all (here: when the budget
    drops history items); item texts are Appendix E's lines."""
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.ranking.prompts import split_messages

    trend = load_split(ml100k, "ml-100k", "trend", "test")
    user = split_messages(trend, 0, PromptConfig())[1]["content"]
    counts = trend.frame.iloc[0]["recent_count"]
    note = "interactions by all users in the 1 day before this request"
    assert user.count(note) == len(counts) == 30
    for j, c in enumerate(counts):
        block = user.split(f"[C{j + 1}] ")[1].split("\n[C")[0]
        assert f"({note}: {int(c)})" in block and block.startswith("Movie Title: ")
    assert "\n     Movie Year: " in user or "\n     Movie genres: " in user  # continuation lines, indented
    niche = load_split(ml100k, "ml-100k", "niche", "test")
    full = split_messages(niche, 0, PromptConfig())[1]["content"]
    assert "Genres in this user's history" not in full and "Movie genres: " in full
    cut = split_messages(niche, 0, PromptConfig(max_prompt_tokens=900))[1]["content"]
    line = [ln for ln in cut.splitlines() if ln.startswith("Genres in this user's history: ")]
    topics = niche.items["topics"]
    want = sorted({t for h in niche.frame.iloc[0]["history"] for t in topics[h]})
    assert line == [f"Genres in this user's history: {', '.join(want)}"]
    interest = load_split(ml100k, "ml-100k", "interest", "test")
    assert "interactions by all users" not in split_messages(interest, 0, PromptConfig())[1]["content"]
