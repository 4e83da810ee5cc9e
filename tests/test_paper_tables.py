"""The paper's numbers (leaderboard/paper_results.json: reported_in_paper, reported_critic_in_paper) against the
paper's own text: every number stored occurs on its table's lines, and every numeric cell of
Tables 1, 2, 3, 4, 6, 7, 8 and 9 is stored (relative-gain rows aside)."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest

from leaderboard.paper_tables import TABLES, transcribe
from leaderboard.schema import Leaderboard, PaperResults, load_paper

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "tests" / "data" / "flexrec_paper_tables.txt"
CELL = re.compile(r"(?<![\w.+-])[0-9]+\.[0-9]+(?![\w%])")  # 0.415, not +59.2%


def _excerpt() -> dict[int, str]:
    out = {}
    for line in EXCERPT.read_text().splitlines():
        if line.startswith("#"):
            continue
        num, _, text = line.partition(": ")
        out[int(num)] = text
    return out


def _table(n: int) -> list[str]:
    lines = _excerpt()
    lo, hi = TABLES[n].lines
    return [lines[i] for i in range(lo, hi + 1)]


def _board() -> PaperResults:
    return load_paper()


def test_excerpt_is_verbatim_from_the_paper():
    paper = Path(os.environ.get("FLEXREC_PAPER", ROOT.parent / "shared" / "paper" / "flexrec-paper.txt"))
    if not paper.exists():
        pytest.skip(f"the paper's text is not here ({paper}); the excerpt stands in for it")
    lines = paper.read_text().splitlines()
    for num, text in _excerpt().items():
        assert lines[num - 1] == text, f"line {num} differs from the paper"


def test_every_reported_number_occurs_on_its_tables_lines():
    board = _board()
    rows = [*board.reported_in_paper, *board.reported_critic_in_paper]
    assert rows
    for r in rows:
        n = int(r.source.rsplit("Table ", 1)[1])
        cells = [c for line in _table(n) for c in CELL.findall(line)]
        assert f"{r.value:.3f}" in cells, f"{r.source}: {r.method} {r.metric} = {r.value} is not on its table's lines"


@pytest.mark.parametrize("n", sorted(TABLES))
def test_every_numeric_cell_of_each_table_is_stored(n):
    board = _board()
    rows = board.reported_critic_in_paper if n == 4 else board.reported_in_paper
    stored = Counter(f"{r.value:.3f}" for r in rows if r.source == f"Pan et al. (FlexRec), Table {n}")
    printed = Counter(c for line in _table(n) for c in CELL.findall(line))
    assert stored == printed, f"Table {n}: missing {printed - stored}, extra {stored - printed}"


def test_transcription_fields_follow_the_conventions():
    board = _board()
    res = board.reported_in_paper
    t1 = {(r.method, r.dataset, r.metric): r.value for r in res if r.source.endswith("Table 1")}
    assert t1[("Qwen2.5-3B-Instruct + FlexRec", "KuaiRec", "ndcg@5")] == 0.597
    assert t1[("BERT4Rec", "MovieLens-1M", "precision@5")] == 0.128       # ML-1M's column 4 is P@5
    assert ("BERT4Rec", "MovieLens-1M", "recall@5") not in t1
    t2 = {(r.method, r.dataset, r.metric): r for r in res if r.source.endswith("Table 2")}
    assert t2[("Qwen2.5-3B-Instruct + Rank-GRPO", "MovieLens-1M", "mrr@5")].value == 0.216
    assert {r.need for r in t2.values()} == {"niche"}
    t3 = {(r.method, r.metric): r.value for r in res if r.source.endswith("Table 3")}
    assert t3[("STAR", "precision@5")] == 0.220 and t3[("STAR", "recall@5")] == 0.533
    assert not any(m == "BERT4Rec" for m, _ in t3)                         # "—": not run
    t7 = {(r.method, r.metric): r for r in res if r.source.endswith("Table 7")}
    assert t7[("PPO / CausalSwap reward (ours)", "ndcg@10")].value == 0.661
    assert t7[("GRPO / Swap-based contribution (non-causal)", "mrr@5")].value == 0.716
    assert all(r.dataset == "" for r in t7.values())
    t8 = {r.method for r in res if r.source.endswith("Table 8")}
    assert t8 == {"User-KNN CF", "Item-KNN CF", "Raw critic", "FlexRec: Uncertainty-aware Critic"}
    t9 = {(r.method, r.metric): r for r in res if r.source.endswith("Table 9")}
    assert t9[("Qwen2.5-3B + SFT", "ndcg@5")].value == 0.585 and t9[("Qwen2.5-3B + SFT", "ndcg@5")].dataset == "KuaiRec-dense"
    critic = {r.metric: r.value for r in board.reported_critic_in_paper}
    assert critic == {"mse": 0.328, "mae": 0.400, "pearson_mean": 0.317, "pearson_var": 0.271}


def test_stored_lists_are_what_the_transcriber_reads_from_the_text():
    lines = _excerpt()
    text = "\n".join(lines.get(i, "") for i in range(1, max(lines) + 1))
    results, critic = transcribe(text)
    board = _board()
    assert [r.model_dump() for r in board.reported_in_paper] == results
    assert [r.model_dump() for r in board.reported_critic_in_paper] == critic


def test_page_shows_the_papers_rows_one_per_method_with_metric_columns(tmp_path):
    from leaderboard.render import render, reported_rows

    board = _board()
    rows = reported_rows(board)
    assert len(rows) == len({(r.source, r.method, r.dataset, r.need) for r in board.reported_in_paper})
    page = render(Leaderboard(), tmp_path, board).read_text()
    section = page[page.index("Reported in paper: kuairec · interest"):]
    section = section[: section.index("</table>")]
    assert "Qwen2.5-3B-Instruct + FlexRec" in section and "<td>0.597</td>" in section
    ablations = page[page.index("Reported in paper: ablations"):]
    assert "GRPO / CausalSwap reward (ours)" in ablations and "<td>0.607</td>" in ablations
