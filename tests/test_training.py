from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flexrec_bench.building.splits import load_split
from training.critic import Critic, CriticConfig, beta_nll, train_critic
from training.env import RankingEnv
from training.rewards import causal_swap_rewards


def _env_with_instance(algo="flexrec", item_reward="causal_swap", variance=None):
    env = RankingEnv(algo, item_reward, uncertainty=variance is not None)
    from training.env import _Instance

    g = np.array([1.0, 0.0, 0.5])
    v = np.zeros(3) if variance is None else np.asarray(variance, float)
    env.instances["x"] = _Instance("x", 3, g, v, float(1 + 0.5 / np.log2(3)))
    return env


def _offsets(text):
    # one token per character: the simplest exact offsets
    return [(i, i + 1) for i in range(len(text))]


def test_env_token_advantages_follow_item_spans():
    env = _env_with_instance()
    texts = ["<answer>C1, C3, C2</answer>", "<answer>C2, C3, C1</answer>"]
    adv = env.token_advantages(["x", "x"], texts, [_offsets(t) for t in texts], [len(t) for t in texts]).advantages
    g = np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    r = causal_swap_rewards(g)
    pooled = (r - r.mean()) / (r.std() + 1e-4)
    t0 = texts[0]
    # the tokens of "C1" in rollout 0 (rank 0) carry that item's normalised reward
    s = t0.index("C1")
    assert adv[0][s] == pytest.approx(pooled[0, 0]) and adv[0][s + 1] == pytest.approx(pooled[0, 0])
    s = t0.index("C2")
    assert adv[0][s] == pytest.approx(pooled[0, 2])
    # format tokens carry the sequence advantage: rollout 0 is the better list
    assert adv[0][0] > 0 > adv[1][0]
    assert adv[0][0] == pytest.approx(-adv[1][0])


def test_env_uncertainty_weights_scale_the_uncertain_rollout_down():
    env = _env_with_instance(variance=[0.0, 0.0, 0.0])
    env.instances["x"].variance = np.array([0.0, 0.3, 0.0])
    texts = ["<answer>C1, C2, C3</answer>", "<answer>C1, C3, C2</answer>"]
    adv = env.token_advantages(["x", "x"], texts, [_offsets(t) for t in texts], [len(t) for t in texts]).advantages
    plain = _env_with_instance()
    base = plain.token_advantages(["x", "x"], texts, [_offsets(t) for t in texts], [len(t) for t in texts]).advantages
    # the uncertain item (C2) sits at rank 1 in rollout 0 (higher discount) -> more variance -> smaller weight
    ratio0 = adv[0][0] / base[0][0]
    ratio1 = adv[1][0] / base[1][0]
    assert ratio0 < ratio1
    assert "flexrec/adv_weight_mean" in env.pop_stats()


def test_rank_grpo_and_rec_r1_variants():
    env = _env_with_instance("rank-grpo")
    texts = ["<answer>C1, C3, C2</answer>", "<answer>C2, C3, C1</answer>"]
    adv = env.token_advantages(["x", "x"], texts, [_offsets(t) for t in texts], [len(t) for t in texts]).advantages
    from training.advantages import rank_advantages
    from training.rewards import suffix_dcg_rewards

    g = np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])  # gains in rank order of the two rollouts
    expected = rank_advantages(suffix_dcg_rewards(g))
    for rank, item in enumerate(["C1", "C3", "C2"]):  # one token per character here: A_k / 2 on each of "Ck"
        assert adv[0][texts[0].index(item)] == pytest.approx(expected[0, rank] / 2)
    assert expected[0, 1] < 0 < expected[1, 1]  # rank 1: rollout 1 still has the best item to come
    env2 = _env_with_instance("rec-r1")
    adv2 = env2.token_advantages(["x", "x"], texts, [_offsets(t) for t in texts], [len(t) for t in texts]).advantages
    assert len(set(np.round(adv2[0], 8))) == 1  # one sequence-level advantage for every token


def test_skip_zero_gain_leaves_out_training_prompts_without_a_positive_only(ml100k):
    train = load_split(ml100k, "ml-100k", "interest", "train")
    val = load_split(ml100k, "ml-100k", "interest", "val")
    with_pos = int(((train.relevance * train.mask) > 0).any(1).sum())
    assert 0 < with_pos < len(train)  # the fixture has both kinds, so the check can fail
    env = RankingEnv(skip_zero_gain=True)
    rows = env.add_split(train)
    assert len(rows) == with_pos and env.skipped_zero_gain == len(train) - with_pos
    assert all(env.instances[r["instance_key"]].gains.max() > 0 for r in rows)
    assert len(env.add_split(val)) == len(val)  # validation keeps every instance
    assert len(RankingEnv().add_split(train)) == len(train)  # off by default: the paper's protocol


def test_beta_nll_weights_by_variance():
    m, y = torch.zeros(2), torch.tensor([1.0, 1.0])
    lv = torch.log(torch.tensor([1.0, 4.0]))
    l0 = beta_nll(m, lv, y, 0.0)
    assert l0.item() == pytest.approx(np.mean([0.5 * (0 + 1), 0.5 * (np.log(4) + 0.25)]), rel=1e-5)
    l1 = beta_nll(m, lv, y, 0.5)
    assert l1.item() == pytest.approx(np.mean([0.5 * 1 * 1, 0.5 * (np.log(4) + 0.25) * 2]), rel=1e-5)


def test_critic_trains_saves_and_fills(ml100k, tmp_path):
    critic, rep = train_critic(ml100k, "ml-100k", CriticConfig(epochs=2, max_pairs=3000), tmp_path / "critic",
                               progress=False)
    assert rep["pairs"]["train"] == 2400 and np.isfinite(rep["test_mse"])
    metrics = json.loads((tmp_path / "critic" / "metrics.json").read_text())
    assert {"test_mse", "test_mae", "test_pearson_mean", "test_pearson_var_sqerr"} <= set(metrics)
    loaded = Critic.load(tmp_path / "critic")
    split = load_split(ml100k, "ml-100k", "interest", "train").head(20)
    gains, var = loaded.fill(split)
    obs = split.observed & split.mask
    np.testing.assert_allclose(gains[obs], split.relevance[obs])
    assert (var[obs] == 0).all() and (var[~obs & split.mask] > 0).all()
    assert ((gains >= 0) & (gains <= 1)).all()


@pytest.mark.slow
def test_flexrec_trains_end_to_end_on_cpu(ml100k, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from training.config import load_config
    from training.local import train_local

    critic, _ = train_critic(ml100k, "ml-100k", CriticConfig(epochs=1, max_pairs=1000), tmp_path / "critic",
                             progress=False)
    # the shipped config, as `flexrec-bench train` reads it, with a tiny budget on top
    cfg = load_config(Path(__file__).resolve().parents[1] / "training" / "configs" / "flexrec.yaml", dict(
        model=str(tiny_model), data=str(ml100k), output_dir=str(tmp_path / "run"), max_steps=2, num_generations=4,
        per_device_train_batch_size=4, train_limit=4, eval_limit=2, eval_steps=2, max_completion_length=24,
        learning_rate=1e-3, critic=str(tmp_path / "critic"), reward_signal="critic"))
    final = train_local(cfg, progress=False)
    before = AutoModelForCausalLM.from_pretrained(tiny_model)
    after = AutoModelForCausalLM.from_pretrained(final)
    changed = [n for (n, p), (_, q) in zip(before.named_parameters(), after.named_parameters()) if not torch.equal(p, q)]
    assert changed, "training did not change any parameter"
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train" and "loss" in r]
    assert len(train_rows) == 2 and all(np.isfinite(r["reward"]) for r in train_rows)
    assert any("flexrec/adv_weight_mean" in r for r in train_rows)
    assert any(r["kind"] == "eval" and "val/interest/ndcg@5" in r for r in rows)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    cfg_json = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert cfg_json["trl"]["beta"] == 0.001 and cfg_json["trl"]["entropy_coef"] == 0.001
    # the checkpoint loads in eval
    from flexrec_bench.scoring.eval_config import EvalConfig
    from flexrec_bench.scoring.evaluator import run_eval

    res, _, _ = run_eval(EvalConfig(model=f"hf:{final}", data=str(ml100k), out=str(tmp_path / "res"), limit=2,
                                    bootstrap=0, options={"max_new_tokens": "8"}), progress=False)
    assert res.dataset.instances == 2
