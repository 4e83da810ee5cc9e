"""Training logs where people look: report_to reaches TRL and verl alike, each evaluation writes the
validation metrics and a samples table to TensorBoard (read back from the event file) and JSON,
and a logger that is not installed is one line."""

from __future__ import annotations

import json

import pytest

from flexrec_bench.foundation.errors import MissingCapabilityError
from training.config import TrainConfig


@pytest.mark.slow
def test_two_steps_log_scalars_and_a_samples_table_to_tensorboard(ml100k, tiny_model, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.local import train_local

    cfg = TrainConfig(model=str(tiny_model), data=str(ml100k), output_dir=str(tmp_path / "run"), train_limit=4,
                      eval_limit=8, eval_steps=2, save_final=False,
                      trl=dict(max_steps=2, num_generations=2, per_device_train_batch_size=2, learning_rate=1e-3,
                               use_cpu=True, max_completion_length=16, report_to="tensorboard"))
    train_local(cfg, progress=False)
    tb = tmp_path / "run" / "runs"
    acc = EventAccumulator(str(tb / "validation"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "val/interest/ndcg@5" in scalars and "val/interest/format_ok" in scalars
    assert sorted(e.step for e in acc.Scalars("val/interest/ndcg@10")) == [0, 2]
    text = acc.Tensors("val/samples/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "| need | instance | completion | ranking (top 10) |" in text and "interest" in text
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert evals and len(evals[-1]["samples"]) == 3 and {"completion", "ranking", "prompt_tail"} <= set(evals[-1]["samples"][0])
    assert any(p.name.startswith("events") for p in tb.rglob("*") if p.parent.name != "validation")  # TRL's own


def test_report_to_is_one_field_for_both_backends_and_missing_loggers_are_one_line(monkeypatch):
    import importlib.util

    from training.monitor import check_loggers
    from training.verl_backend import verl_loggers

    assert verl_loggers(TrainConfig(model="m")) == "[console]"
    assert verl_loggers(TrainConfig(model="m", trl={"report_to": "tensorboard"})) == "[console,tensorboard]"
    assert verl_loggers(TrainConfig(model="m", trl={"report_to": ["tensorboard", "wandb"]})) == "[console,tensorboard,wandb]"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(MissingCapabilityError, match=r"report_to=wandb needs the 'wandb' package: pip install wandb"):
        check_loggers(["wandb"])
    check_loggers("none")
