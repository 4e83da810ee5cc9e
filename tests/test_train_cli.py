from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.errors import FlexRecError
from training.local import TrainConfig

runner = CliRunner()
QUICK = ["--max-steps", "1", "--set", "num_generations=2", "--set", "per_device_train_batch_size=2",
         "--set", "train_limit=2", "--set", "eval_limit=2", "--set", "eval_steps=1", "--set", "max_completion_length=12",
         "--quiet"]


def test_train_critic_cli(ml100k, tmp_path):
    r = runner.invoke(app, ["train-critic", "--data", str(ml100k), "--out", str(tmp_path / "c"), "--epochs", "1",
                            "--max-pairs", "500", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Pearson(variance, squared error)" in r.output and (tmp_path / "c" / "critic.pt").exists()
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert sum(m["pairs"].values()) == 500  # trained on exactly the pairs asked for, split 8:1:1
    from training.critic import Critic
    from flexrec_bench.data import load_split

    mean, var = Critic.load(tmp_path / "c", ml100k).fill(load_split(ml100k, "ml-100k", "interest", "test"))
    assert mean.shape == var.shape and (var >= 0).all() and var.max() > 0  # unobserved pairs get a variance


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["rec-r1", "rank-grpo"])
def test_other_algorithms_train_and_save(ml100k, tiny_model, tmp_path, algo):
    # rank-grpo also covers joint multi-need training validated on another need (generalisation)
    extra = ["--set", "sft_warmup_steps=1"] if algo == "rec-r1" else ["--need", "interest,trend", "--eval-need", "niche"]
    r = runner.invoke(app, ["train", "--algo", algo, "--model", str(tiny_model), "--data", str(ml100k),
                            "--output-dir", str(tmp_path / algo), *QUICK, *extra])
    assert r.exit_code == 0, r.output
    assert (tmp_path / algo / "final" / "config.json").exists()
    cfg = json.loads((tmp_path / algo / "train_config.json").read_text())
    assert cfg["flexrec"]["algo"] == algo and cfg["trl"]["num_generations"] == 2
    if algo == "rec-r1":
        assert (tmp_path / algo / "sft-warmup" / "final").exists()
        assert cfg["trl"]["reward_weights"] == [1.0, 0.1]
    else:
        assert cfg["flexrec"]["needs"] == ["interest", "trend"] and cfg["flexrec"]["eval_needs"] == ["niche"]
        rows = [json.loads(x) for x in (tmp_path / algo / "train_log.jsonl").read_text().splitlines()]
        assert any("val/niche/ndcg@5" in r for r in rows)


def test_train_config_validation(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("algo: flexrec\nlearning_rat: 0.1\n")
    with pytest.raises(FlexRecError, match="did you mean 'learning_rate'"):
        TrainConfig.from_yaml(bad, model="m")
    with pytest.raises(FlexRecError, match="unknown --algo 'flexrc'.*did you mean 'flexrec'"):
        TrainConfig(algo="flexrc", model="m").resolved()
    cfg = TrainConfig.from_yaml(_write(tmp_path), model="m",
                                needs="interest,niche", max_steps="7", lora="true")
    assert cfg.needs == ("interest", "niche") and cfg.max_steps == 7 and cfg.lora is True
    r = runner.invoke(app, ["train", "--model", "m", "--set", "bogus=1"])
    assert r.exit_code != 0 and "unknown training option 'bogus'" in str(r.exception) + r.output


def _write(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("algo: rank-grpo\nbeta: 0.002\n")
    return p


def test_shipped_configs_hold_our_documented_constants():
    import importlib.resources

    for algo in ("flexrec", "rec-r1", "rank-grpo"):
        cfg = TrainConfig.from_yaml(importlib.resources.files("training") / "configs" / f"{algo}.yaml", model="m")
        assert cfg.algo == algo and cfg.num_generations == 8 and cfg.beta == 0.001 and cfg.entropy_coef == 0.001
        assert cfg.lora is False
    assert TrainConfig.from_yaml(importlib.resources.files("training") / "configs" / "rec-r1.yaml",
                                 model="m").sft_warmup_steps == 25


def test_make_tiny_model_cli(tmp_path):
    r = runner.invoke(app, ["make-tiny-model", str(tmp_path / "m")])
    assert r.exit_code == 0 and (tmp_path / "m" / "config.json").exists()


def test_every_config_sets_loss_type_and_precision_follows_the_hardware():
    import yaml

    from training.sft import precision_flags

    for p in sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.yaml")):
        assert yaml.safe_load(p.read_text())["loss_type"] == "dapo", p.name
    assert precision_flags("auto", use_cpu=True) == {"bf16": False, "fp16": False}
    assert precision_flags("bf16", use_cpu=False) == {"bf16": True, "fp16": False}
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp16, fp32"):
        precision_flags("fp8", use_cpu=True)
