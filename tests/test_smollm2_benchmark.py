"""The pieces of benchmarks/smollm2_grpo.py that summarise a run (the run itself needs the real model)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _log(path: Path, steps: int, kl: float, stopped: bool) -> Path:
    rows = [{"step": 0, "kind": "eval"}]
    rows += [{"step": t, "kind": "train", "reward": 0.5 + 0.01 * t, "kl": kl * t, "reward_std": 0.2, "entropy": 0.1}
             for t in range(1, steps + 1)]
    if stopped:
        rows.append({"step": steps, "kind": "stopped", "reason": "max_minutes"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_steps_reached_curves_and_the_summary_page(tmp_path):
    import smollm2_grpo as b

    a0, a1 = _log(tmp_path / "a0.jsonl", 28, 0.001, True), _log(tmp_path / "a1.jsonl", 27, 0.001, True)
    c0 = _log(tmp_path / "c0.jsonl", 28, 0.002, True)
    assert [b._steps_reached(p) for p in (a0, a1, c0)] == [28, 27, 28]
    b.plot_training({"Rec-R1": [a0, a1], "FlexRec": [c0]}, tmp_path / "training.png")
    assert (tmp_path / "training.png").stat().st_size > 10_000
    m = {"mean": 0.3, "ci95": [0.2, 0.4]}
    row = {n: {"ndcg@5": m, "ndcg@10": m, "echo_share": 1.0} for n in b.NEEDS}
    sens = {n: {"differ_from_interest": 0.0, "mean_kendall_tau": 1.0} for n in b.NEEDS[1:]}
    pair = {"a": "Rec-R1", "b": "FlexRec", "metrics": [{"metric": "ndcg@5", "diff": 0.0, "ci95": [0.0, 0.0], "p": 1.0,
                                                       "p_holm": 1.0}]}
    s = {"steps": 500, "max_minutes": 5.9, "seeds": 3, "device": "cuda", "limit": 200, "gen_limit": 100,
         "steps_reached": {"Rec-R1 seed 0": 28, "Rec-R1 seed 1": 27}, "rows": {"Rec-R1 seed 0": row},
         "compare": {"interest": [pair]}, "need_sensitivity": {"Rec-R1 seed 0": sens}}
    md = b.markdown(s, ["Rec-R1 seed 0"])
    assert "at most 500 steps or 5.9 min: 27, 28 reached, 3 seed(s), cuda" in md
    assert "averaged over the row's seeds" in md and "| interest | Rec-R1 | FlexRec | ndcg@5 | +0.000" in md


def test_trend_readable_orders_by_score_ties_presented_padding_last():
    import numpy as np
    import trend_readable as t

    scores = np.array([[0.0, 2.0, 0.0, 1.0], [5.0, 5.0, 5.0, 9.0]])
    mask = np.array([[True, True, True, True], [True, False, True, True]])
    assert t._order(scores, mask).tolist() == [[1, 3, 0, 2], [3, 0, 2, -1]]
    echo = -np.arange(4, dtype=float)[None, :].repeat(2, 0)
    assert t._order(echo, mask).tolist() == [[0, 1, 2, 3], [0, 2, 3, -1]]
