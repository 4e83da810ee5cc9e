"""`flexrec-bench reproduce`: a table's grid, evaluated by the one evaluator, written in the paper's
layout with CIs and the paper's numbers beside ours."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.errors import FlexRecError
from leaderboard.schema import load_paper
from training.reproduce import ReproduceConfig, cells, markdown, paper_numbers

runner = CliRunner()


def _reported() -> list[dict]:
    return [r.model_dump() for r in load_paper().reported_in_paper]


def test_grids_follow_the_papers_rows():
    cfg = ReproduceConfig(table=7, model="m")
    t7 = cells(7, cfg)
    assert [c.label for c in t7][:3] == ["GRPO / Independent contribution", "GRPO / Swap-based contribution (non-causal)",
                                         "GRPO / CausalSwap reward (ours)"]
    assert all(c.missing and "verl" in c.missing for c in t7[3:]) and all(c.sets["estimator"] == "ppo" for c in t7[3:])
    t8 = cells(8, cfg)
    assert [c.sets["reward_signal"] for c in t8] == ["user_knn", "item_knn", "critic", "critic"]
    assert [c.sets.get("uncertainty") for c in t8] == [None, None, False, True]
    t1 = cells(1, cfg)
    assert next(c for c in t1 if c.label == "GPT-4o").missing  # no OpenAI model given
    assert [c.algo for c in t1 if c.algo] == ["rec-r1", "rank-grpo", "flexrec"]
    with pytest.raises(FlexRecError, match="Table 1, 7 or 8"):
        cells(3, cfg)


def test_paper_numbers_sit_beside_ours():
    rep = _reported()
    assert paper_numbers(rep, 7, "GRPO / CausalSwap reward (ours)", "ml-100k", "interest")["ndcg@5"] == 0.607
    assert paper_numbers(rep, 1, "Qwen2.5-3B-Instruct + FlexRec", "kuairec", "interest")["mrr@5"] == 0.840
    assert paper_numbers(rep, 1, "Qwen2.5-3B-Instruct + FlexRec", "ml-100k", "interest") == {}  # not in the paper
    table = {"table": 8, "model": "m", "dataset": "ml-100k", "need": "interest", "miniature": False, "steps": 3,
             "metrics": ["ndcg@5"], "paper_dataset": "",
             "rows": [{"label": "Raw critic", "missing": None, "metrics": {"ndcg@5": {"mean": 0.5, "ci95": [0.4, 0.6]}},
                       "metrics_over_all": {"ndcg@5": {"mean": 0.45, "ci95": [0.35, 0.55]}}, "paper": {"ndcg@5": 0.566}},
                      {"label": "Item-KNN CF", "missing": "why", "metrics": {}, "paper": {"ndcg@5": 0.417}}]}
    md = markdown(table)
    # ours (defined instances), then the paper-comparable mean over all instances, then the paper's value
    assert "| Raw critic | 0.500 [0.400, 0.600] | 0.450 [0.350, 0.550] | 0.566 |" in md
    assert "| Item-KNN CF | not run |  | 0.417 |" in md
    assert "- Item-KNN CF: why" in md


@pytest.mark.slow
def test_table7_miniature_runs_every_cell_it_can_and_resumes(tiny_model, ml100k, tmp_path):
    args = ["reproduce", "--table", "7", "--model", str(tiny_model), "--data", str(ml100k), "--out", str(tmp_path),
            "--miniature", "--limit", "8", "--bootstrap", "100", "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "3 of 6 cells run" in r.output
    out = tmp_path / "table7"
    table = json.loads((out / "table7.json").read_text())
    ran = [row for row in table["rows"] if not row["missing"]]
    assert [row["axes"]["item_reward"] for row in ran] == ["independent", "noncausal_swap", "causal_swap"]
    for row in ran:
        assert row["instances"] == 8 and row["metrics"]["ndcg@5"]["ci95"] is not None
        assert row["metrics_over_all"]["ndcg@5"]["mean"] <= row["metrics"]["ndcg@5"]["mean"]
        assert row["paper"]["ndcg@5"] > 0
    # each trained cell ran with its own axis value
    item_rewards = sorted(json.loads(p.read_text())["flexrec"]["item_reward"] for p in (out / "runs").glob("*/train_config.json"))
    assert item_rewards == ["causal_swap", "independent", "noncausal_swap"]
    md = (out / "table7.md").read_text()
    assert "| GRPO / CausalSwap reward (ours) | " in md and "| PPO / CausalSwap reward (ours) | not run |  | 0.621 |" in md
    assert (out / "table7.png").stat().st_size > 5000
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/final/config.json")}
    r = runner.invoke(app, args)  # a re-run reuses the finished cells
    assert r.exit_code == 0, r.output
    assert stamps and {p: p.stat().st_mtime_ns for p in stamps} == stamps
