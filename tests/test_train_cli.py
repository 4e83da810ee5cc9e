from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import FlexRecError
from training.config import TrainConfig, completion_budget, from_dict, load_config
from training.local import resolved_trl_args

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
    from flexrec_bench.building.splits import load_split

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
        # the rank-level ratio path ran: rank indices reached the loss
        assert any("flexrec/rank_token_share" in r for r in rows if r["kind"] == "train")
    import torch
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / algo / "final").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "training changed no parameter"


def test_train_config_one_typed_path_with_errors_naming_the_field(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("algo: flexrec\nlearning_rat: 0.1\n")
    with pytest.raises(FlexRecError, match=r"c.yaml: unknown training option 'learning_rat'.*did you mean 'learning_rate'"):
        load_config(bad)
    bad.write_text("num_generations: many\n")
    with pytest.raises(FlexRecError, match=r"c.yaml num_generations: expects int"):
        load_config(bad)
    with pytest.raises(FlexRecError, match=r"--set lora: expects bool, got 'perhaps'"):
        load_config(None, sets={"lora": "perhaps"})
    with pytest.raises(FlexRecError, match="unknown algo 'flexrc'.*did you mean 'flexrec'"):
        TrainConfig(algo="flexrc", model="m").resolved()
    ok = tmp_path / "ok.yaml"
    ok.write_text("algo: rank-grpo\nbeta: 0.002\nnum_iterations: 2\n")
    cfg = load_config(ok, {"model": "m", "needs": "interest,niche", "max_steps": None},
                      {"max_steps": "7", "lora": "true", "learning_rate": "1e-5", "epsilon_high": "0.28"})
    # YAML and --set give the same types; TRL's own fields pass through untouched by a mirror
    assert cfg.needs == ("interest", "niche") and cfg.lora is True and cfg.algo == "rank-grpo"
    assert cfg.trl == {"beta": 0.002, "num_iterations": 2, "max_steps": 7, "learning_rate": 1e-5, "epsilon_high": 0.28}
    args = resolved_trl_args(cfg.resolved(), [1.0, 0.1], k_max=10)
    assert (args.num_iterations, args.epsilon_high, args.max_steps, args.beta) == (2, 0.28, 7, 0.002)
    assert args.max_completion_length == 5 * 10 + 32  # derived from the candidate count
    r = runner.invoke(app, ["train", "--model", "m", "--set", "bogus=1"])
    assert r.exit_code != 0 and "unknown training option 'bogus'" in str(r.exception) + r.output


def test_reasoning_switch_sizes_the_completion_budget():
    cfg = from_dict({"model": "m", "reasoning": True})
    assert completion_budget(cfg, 20) == 5 * 20 + 32 + 256
    with pytest.raises(FlexRecError, match="max_completion_length=64 is too short for reasoning before 20 ids"):
        completion_budget(from_dict({"model": "m", "reasoning": True, "max_completion_length": 64}), 20)
    assert completion_budget(from_dict({"model": "m", "max_completion_length": 64}), 20) == 64


def test_shipped_configs_say_where_every_value_comes_from():
    import importlib.resources

    import yaml

    paper_values = {("rec-r1", "sft_warmup_steps"), ("rec-r1", "algo"), ("rank-grpo", "algo"), ("flexrec", "algo"),
                    ("flexrec", "item_reward"), ("flexrec", "uncertainty"), ("flexrec", "estimator"),
                    ("flexrec", "item_normalisation"),  # sec. 3.2: pooled over all items of all rollouts
                    # the critic fills FlexRec's unobserved pairs; the baselines learn from observed labels (Table 1)
                    ("flexrec", "reward_signal"), ("rec-r1", "reward_signal"), ("rank-grpo", "reward_signal")}
    for algo in ("flexrec", "rec-r1", "rank-grpo"):
        path = Path(str(importlib.resources.files("training") / "configs" / f"{algo}.yaml"))
        cfg = load_config(path, {"model": "m"})
        assert cfg.algo == algo and cfg.rl("num_generations") == 8 and cfg.rl("beta") == 0.001
        assert cfg.rl("entropy_coef") == 0.001 and cfg.lora is False and "max_completion_length" not in cfg.trl
        keys = yaml.safe_load(path.read_text())
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, rest = line.partition(":")
                assert "# paper" in rest or "# ours" in rest, f"{path.name}: {key} says nowhere where it comes from"
                if "# paper" in rest:  # only what the paper's text states (lora: Appendix C's full-parameter training)
                    assert (algo, key) in paper_values or key == "lora", f"{path.name}: {key} is not a paper value"
        assert set(keys) <= {line.partition(":")[0] for line in path.read_text().splitlines()}
    assert load_config(Path(str(importlib.resources.files("training") / "configs" / "rec-r1.yaml"))).sft_warmup_steps == 25


def test_train_help_lists_exactly_the_values_the_config_accepts(tmp_path):
    """The ablation axes in `train --help` are the config's own choices: every value the help lists
    for an axis resolves (`--dry-run` reads it), and a value it does not list is refused."""
    import re

    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    text = " ".join(r.output.replace("│", " ").split())
    listed = {m.group(1): m.group(2).split("|") for m in re.finditer(r"(item_reward|reward_signal|estimator)=([\w|]+)", text)}
    assert set(listed) == {"item_reward", "reward_signal", "estimator"}, text
    from training.config import TrainConfig

    def resolve(axis: str, value: str) -> TrainConfig:
        critic = str(tmp_path) if (axis, value) == ("reward_signal", "critic") else None
        return TrainConfig(model="m", output_dir=str(tmp_path), critic=critic, **{axis: value}).resolved()

    for axis, values in listed.items():
        assert len(values) >= 2, (axis, values)
        for v in values:
            assert getattr(resolve(axis, v), axis) in values
        with pytest.raises(Exception, match=axis):
            resolve(axis, "no_such_" + axis)


def test_make_tiny_model_cli(tmp_path):
    r = runner.invoke(app, ["make-tiny-model", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    ids = tok("Rank the candidates: [1] [2] [3]", return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**ids).logits).all()
        out = model.generate(**ids, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 6
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=False)  # decodes to text


def test_every_config_sets_loss_type_and_precision_follows_the_hardware():
    import yaml

    from training.sft import precision_flags

    for p in sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.yaml")):
        assert yaml.safe_load(p.read_text())["loss_type"] == "dapo", p.name
    assert precision_flags("auto", use_cpu=True) == {"bf16": False, "fp16": False}
    assert precision_flags("bf16", use_cpu=False) == {"bf16": True, "fp16": False}
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp16, fp32"):
        precision_flags("fp8", use_cpu=True)


@pytest.mark.slow
def test_smoke_preset_trains_shows_progress_checkpoints_and_resumes(ml100k, tiny_model, tmp_path):
    out = tmp_path / "smoke"
    base = ["train", "--model", str(tiny_model), "--data", str(ml100k), "--output-dir", str(out), "--preset", "smoke"]
    r = runner.invoke(app, [*base, "--max-steps", "2"])
    assert r.exit_code == 0, r.output
    assert "validation at step 0" in r.output + (getattr(r, "stderr", "") or "")  # the step-0 validation has a bar
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["trl"]["max_steps"] == 2 and cfg["flexrec"]["eval_limit"] == 4  # --max-steps 2 caps validation at 4
    assert (out / "checkpoint-2" / "trainer_state.json").exists()
    r = runner.invoke(app, [*base, "--max-steps", "3", "--resume", "--quiet"])
    assert r.exit_code == 0, r.output
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    steps = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train" and "loss" in json.loads(x)]
    assert steps == [1, 2, 3]  # the log continues where the first run stopped; step 0 was not redone
    r = runner.invoke(app, ["train", "--model", str(tiny_model), "--output-dir", str(tmp_path / "none"), "--resume",
                            "--data", str(ml100k)])
    assert r.exit_code != 0 and "no checkpoint-<step> folder" in str(r.exception) + r.output


def test_config_show_lists_fields_with_their_source():
    r = runner.invoke(app, ["config", "show", "--algo", "flexrec", "--preset", "smoke", "--set", "beta=0.01"],
                      env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line for line in r.output.splitlines() if line.strip()}
    assert "preset smoke.yaml" in lines["num_generations"] and "0.01" in lines["beta"] and "--set" in lines["beta"]
    assert "config flexrec.yaml" in lines["item_reward"] and "Table 7 axis" in lines["item_reward"]
    r = runner.invoke(app, ["config", "show", "--all"])
    assert "trl.GRPOConfig default" in r.output and "epsilon_high" in r.output
    r = runner.invoke(app, ["train", "--model", "m", "--preset", "smok"])
    assert r.exit_code != 0 and "did you mean 'smoke'" in str(r.exception) + r.output


@pytest.mark.slow
def test_an_interrupted_run_leaves_a_checkpoint_that_resumes(ml100k, tiny_model, tmp_path, monkeypatch):
    import trl

    from training.config import layered_config, preset_path
    from training.local import train_local

    calls = {"n": 0}
    real = trl.GRPOTrainer.training_step

    def interrupted(self, *a, **kw):  # `kill` (SIGTERM) during the second step: the same as Ctrl-C
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *a, **kw)

    out = tmp_path / "run"
    cfg, _ = layered_config(Path(__file__).resolve().parents[1] / "training" / "configs" / "flexrec.yaml", "smoke",
                            {"model": str(tiny_model), "data": str(ml100k), "output_dir": str(out), "max_steps": 3}, {})
    monkeypatch.setattr(trl.GRPOTrainer, "training_step", interrupted)
    with pytest.raises(FlexRecError, match=r"interrupted at step 1: checkpoint .*checkpoint-1; continue with .*--resume"):
        train_local(cfg, progress=False)
    assert preset_path("smoke").exists() and (out / "checkpoint-1" / "trainer_state.json").exists()
    monkeypatch.setattr(trl.GRPOTrainer, "training_step", real)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the run's only
    train_local(cfg, progress=False, resume=True)
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3


def test_dry_run_says_what_auto_resolved_to_and_why(tmp_path):
    """`reward_signal: auto` without a critic falls back to observed labels: the dry run says so, with
    the path it looked at and what to do, and the same line is in its JSON."""
    from training.config import reward_signal_line

    r = runner.invoke(app, ["train", "--model", "m", "--data", str(tmp_path), "--dry-run"])
    assert r.exit_code == 0, r.output
    line = (f"reward_signal: observed (auto: no critic at {tmp_path / 'critics' / 'ml-100k'}; unobserved pairs count 0 "
            f"and the uncertainty weighting is off; train one with `flexrec-bench train-critic --dataset ml-100k --data "
            f"{tmp_path}`, or "
            f"set reward_signal=item_knn)")
    assert json.loads(r.output)["reward_signal"] == line
    (tmp_path / "critics" / "ml-100k").mkdir(parents=True)
    (tmp_path / "critics" / "ml-100k" / "critic.pt").write_bytes(b"x")
    assert reward_signal_line(TrainConfig(model="m", data=str(tmp_path))) == (
        f"reward_signal: critic (auto: found {tmp_path / 'critics' / 'ml-100k'})")
    assert reward_signal_line(TrainConfig(model="m", data=str(tmp_path), reward_signal="item_knn")) == (
        "reward_signal: item_knn (set)")


def test_max_minutes_ends_a_run_as_max_steps_does(ml100k, tiny_model, tmp_path):
    """A run past its max_minutes stops after the step in progress: it is validated and saved as at
    max_steps, and the log says where and why it stopped (parallel cells sharing one deadline)."""
    from training.config import ConfigError, layered_config
    from training.local import train_local

    out = tmp_path / "run"
    cfg, _ = layered_config(Path(__file__).resolve().parents[1] / "training" / "configs" / "flexrec.yaml", "smoke",
                            {"model": str(tiny_model), "data": str(ml100k), "output_dir": str(out), "max_steps": 5},
                            {"max_minutes": "1e-6"})
    final = train_local(cfg, progress=False)
    assert (final / "config.json").exists()
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    stopped = [r for r in rows if r["kind"] == "stopped"]
    assert [(r["step"], r["reason"]) for r in stopped] == [(1, "max_minutes")]
    assert [r["step"] for r in rows if r["kind"] == "eval"][-1] == 1  # validated where it stopped
    bad, _ = layered_config(Path(__file__).resolve().parents[1] / "training" / "configs" / "flexrec.yaml", "smoke",
                            {"model": str(tiny_model), "data": str(ml100k), "output_dir": str(out)}, {"max_minutes": "0"})
    with pytest.raises(ConfigError, match="max_minutes must be > 0"):
        bad.resolved()
