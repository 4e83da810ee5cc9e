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


def test_sft_curve_plots_the_logged_loss_and_refuses_a_run_without_one(tmp_path, capsys):
    import pytest
    import sft_curve as c

    run = tmp_path / "run"
    run.mkdir()
    log = [{"step": 10, "loss": 1.2, "mean_token_accuracy": 0.7}, {"step": 20, "loss": 0.5, "mean_token_accuracy": 0.8},
           {"step": 20, "train_runtime": 5.0}]
    (run / "sft_config.json").write_text(json.dumps({"settings": {}, "log": log}))
    assert [r["step"] for r in c.read_log(run)] == [10, 20]
    sys.argv = ["sft_curve", f"{run}=shown", "--png", str(tmp_path / "curve.png")]
    c.main()
    assert "shown: step 10 loss 1.200 -> step 20 loss 0.500; token accuracy 0.700 -> 0.800" in capsys.readouterr().out
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    (run / "sft_config.json").write_text(json.dumps({"log": [{"step": 20, "train_runtime": 5.0}]}))
    with pytest.raises(SystemExit, match="holds no training loss"):
        c.read_log(run)
    with pytest.raises(SystemExit, match="not found"):
        c.read_log(tmp_path / "absent")
