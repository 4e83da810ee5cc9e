"""Run inside the verl environment (scripts/make-verl-env.sh) by tests/test_verl.py.

1. verl's own main_ppo config (Hydra, ``verl/trainer/config/ppo_trainer.yaml``) composed with the
   overrides ``flexrec-bench train --backend verl`` passes resolves, through verl's own lookups, to
   FlexRec's reward-loop manager, agent-loop manager and advantage estimator (and, for
   estimator=ppo, to GAE with a critic).
2. The reward-loop manager scores one rollout (its NDCG); the agent-loop manager replaces a training
   batch's scalar scores with the environment's per-token credit; verl's compute_advantage with
   ``flexrec_token`` returns exactly that credit.
3. A planted advantage per item comes back on exactly the item's tokens, and verl's configured
   policy loss has gradient -A_t / N on each token's log-probability (issue 46 b).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def compose(overrides: list[str]):
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def check_resolution() -> None:
    from verl.experimental.agent_loop import AgentLoopManager
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.reward import resolve_reward_manager_cls
    from verl.trainer.ppo.utils import need_critic
    from verl.utils.import_utils import load_class_from_fqn

    import training.verl_plugin as plugin
    from training.config import load_config
    from training.verl_backend import verl_overrides

    tmp = Path(tempfile.mkdtemp())
    for estimator in ("grpo", "ppo"):
        cfg = load_config(Path(__file__).resolve().parents[1] / "training" / "configs" / "flexrec.yaml",
                          {"model": "m", "estimator": estimator, "output_dir": str(tmp / estimator)}).resolved()
        config = compose(verl_overrides(cfg, tmp / "t.parquet", tmp / "v.parquet", 1))
        assert resolve_reward_manager_cls(config).__name__ == "FlexRecRewardLoopManager", resolve_reward_manager_cls(config)
        manager = load_class_from_fqn(config.actor_rollout_ref.rollout.agent.agent_loop_manager_class, "AgentLoopManager")
        assert manager is plugin.FlexRecAgentLoopManager and issubclass(manager, AgentLoopManager)
        from training.verl_backend import write_config_file
        from training.verl_plugin import read_config_file

        worker_cfg = read_config_file(write_config_file(cfg) and config.flexrec.config_file)
        assert worker_cfg == cfg and worker_cfg.estimator == estimator and worker_cfg.needs == ("interest",)
        if estimator == "grpo":
            assert config.algorithm.adv_estimator == "flexrec_token"
            assert core_algos.get_adv_estimator_fn(config.algorithm.adv_estimator) is plugin.flexrec_token_advantage
            assert not need_critic(config)
        else:
            assert config.algorithm.adv_estimator == "gae" and need_critic(config)
            assert config.critic.model.path == "m" and config.actor_rollout_ref.rollout.n == 1
    # the name in verl's reward-loop registry resolves too (source: register)
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    assert get_reward_manager_cls("flexrec") is plugin.FlexRecRewardLoopManager


def rollout_batch(tok, answers: list[str], keys: list[str], uids: list[str], slack: int = 2):
    """A batch as verl's rollout hands it over: one prompt, the answers as responses (eos, then
    padding), unscored; and the training batch it came from. Returns (output, batch_in, responses'
    token lists, padded length)."""
    from verl import DataProto

    n = len(answers)
    prompt = tok("<|im_start|>user\nrank<|im_end|>\n", add_special_tokens=False)["input_ids"]
    resp = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in answers]
    t = max(len(r) for r in resp) + slack
    responses = torch.full((n, t), tok.pad_token_id)
    attn = torch.zeros((n, len(prompt) + t), dtype=torch.long)
    attn[:, : len(prompt)] = 1
    for i, r in enumerate(resp):
        responses[i, : len(r)] = torch.tensor(r)
        attn[i, len(prompt): len(prompt) + len(r)] = 1
    prompts_t = torch.tensor([prompt] * n)
    extra = np.array([{"instance_key": k} for k in keys], dtype=object)
    output = DataProto.from_dict(tensors={
        "prompts": prompts_t, "responses": responses, "attention_mask": attn, "response_mask": attn[:, len(prompt):],
        "input_ids": torch.cat([prompts_t, responses], 1), "rm_scores": torch.zeros((n, t))})
    batch_in = DataProto.from_dict(tensors={"input_ids": prompts_t},
                                   non_tensors={"uid": np.array(uids, dtype=object), "extra_info": extra})
    return output, batch_in, resp, t


def relabel(config, tok, output, batch_in):
    """The agent-loop manager on a batch: verl's generation stubbed (no GPU here) to return
    ``output``, then the environment's per-token credit in its rm_scores."""
    from verl.experimental.agent_loop import AgentLoopManager

    import training.verl_plugin as plugin

    async def fake_generate(self, prompts):
        return output

    AgentLoopManager.generate_sequences = fake_generate
    loop_manager = plugin.FlexRecAgentLoopManager.__new__(plugin.FlexRecAgentLoopManager)
    loop_manager.config, loop_manager._fx_tok = config, tok
    return loop_manager, loop_manager.generate_sequences(batch_in)


def backend_config():
    """verl's main_ppo config as ``train --backend verl`` composes it from the shipped FlexRec config."""
    from training.config import load_config
    from training.verl_backend import verl_overrides

    tmp = Path(tempfile.mkdtemp())
    run_cfg = load_config(Path(__file__).resolve().parents[1] / "training" / "configs" / "flexrec.yaml",
                          {"model": "m", "output_dir": str(tmp)}).resolved()
    return compose(verl_overrides(run_cfg, tmp / "t.parquet", tmp / "v.parquet", 1))


def check_credit() -> None:
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage
    from omegaconf import OmegaConf

    import training.verl_plugin as plugin
    from flexrec_bench.ranking.tiny import build_tokenizer
    from training.advantages import token_offsets
    from training.env import RankingEnv, _Instance

    importlib.reload(plugin)  # a second registration must not raise verl's duplicate error
    tok = build_tokenizer(tempfile.mkdtemp())
    env = RankingEnv("flexrec", "causal_swap", uncertainty=False)
    env.instances["i0"] = _Instance("i0", 3, np.array([1.0, 0.0, 0.5]), np.zeros(3), 1 + 0.5 / np.log2(3))
    env.instances["i1"] = _Instance("i1", 3, np.array([0.0, 0.1, 1.0]), np.zeros(3), 1 + 0.1 / np.log2(3))
    config = OmegaConf.create({"flexrec": {"data": "unused", "dataset": "ml-100k", "needs": ["interest"]},
                               "actor_rollout_ref": {"model": {"path": "unused"}, "rollout": {}}})
    key = tuple(sorted((k, str(v)) for k, v in dict(config.flexrec).items()))
    plugin._ENVS[key] = (env, "grpo")  # the environment env_from_config would build from the data

    answers = ["<answer>C1, C3, C2</answer>", "<answer>C2, C3, C1</answer>", "<answer>C3, C2, C1</answer>",
               "<answer>C1</answer>"]
    keys, uids = ["i0", "i0", "i1", "i1"], ["u0", "u0", "u1", "u1"]
    output, batch_in, resp, t = rollout_batch(tok, answers, keys, uids)
    extra = batch_in.non_tensor_batch["extra_info"]

    # the reward-loop manager scores one sample: its NDCG
    manager = plugin.FlexRecRewardLoopManager(config, tok)
    single = DataProto.from_dict(tensors={k: output.batch[k][:1] for k in ("prompts", "responses", "attention_mask")},
                                 non_tensors={"extra_info": extra[:1]})
    scored = asyncio.run(manager.run_single(single))
    assert scored["reward_score"] == env.sequence_reward(env.parse("i0", answers[0], None)) and scored["reward_score"] > 0.9

    # the agent-loop manager: verl's generation (stubbed: no GPU here), then the per-token credit
    loop_manager, relabelled = relabel(config, tok, output, batch_in)
    # verl's own reward -> advantage step, as RayPPOTrainer.fit runs it with the backend's config:
    # extract_reward reads rm_scores into token_level_scores; with use_kl_in_reward False (the
    # backend's choice: KL is a loss) they become token_level_rewards; then compute_advantage with the
    # configured estimator
    from verl.trainer.ppo.ray_trainer import apply_kl_penalty
    from verl.trainer.ppo.reward import extract_reward

    full = backend_config()
    reward_tensor, _ = extract_reward(relabelled)
    relabelled.batch["token_level_scores"] = reward_tensor
    assert full.algorithm.use_kl_in_reward is False
    if full.algorithm.use_kl_in_reward:  # the trainer's branch (not taken with the backend's config)
        relabelled, _ = apply_kl_penalty(relabelled, None)
    else:
        relabelled.batch["token_level_rewards"] = relabelled.batch["token_level_scores"]
    adv = compute_advantage(relabelled, adv_estimator=full.algorithm.adv_estimator,
                            config=full.algorithm).batch["advantages"].numpy()
    for group in ([0, 1], [2, 3]):  # expected: the environment's own per-token advantages, group by group
        texts, offs = [], []
        for i in group:
            text, o = token_offsets(tok, resp[i])
            texts.append(text)
            offs.append(o)
        fresh = RankingEnv("flexrec", "causal_swap", uncertainty=False)
        fresh.instances = env.instances
        exp = fresh.token_advantages([keys[i] for i in group], texts, offs, [t] * 2).advantages
        for j, i in enumerate(group):
            n = len(resp[i])
            np.testing.assert_allclose(adv[i, :n], exp[j][:n], rtol=1e-5, atol=1e-6)
            assert (adv[i, n:] == 0).all()
    assert not np.allclose(adv[0, :5], adv[1, :5])
    # a training batch that reached the manager unscored is an error, never passed on silently
    unscored = DataProto.from_dict(tensors={k: v for k, v in output.batch.items() if k != "rm_scores"})
    try:
        plugin.relabel_batch(batch_in, unscored, tok, env, "grpo")
    except RuntimeError as exc:
        assert "without rm_scores" in str(exc)
    else:
        raise AssertionError("a batch without rm_scores was passed on")
    # validation batches keep verl's scalar score
    batch_in.meta_info["validate"] = True
    output.batch["rm_scores"] = torch.zeros((4, t))
    assert loop_manager.generate_sequences(batch_in).batch["rm_scores"].abs().sum() == 0


def item_tokens(tok, ids: list[int]) -> tuple[str, dict[int, int]]:
    """The text of a completion and, for each token that names an item (``C<n>``), that item's
    position (n - 1). Found by prefix decodes and a regex, independently of the trainers' own span
    code (training.advantages.token_offsets), so the planted-credit checks can test that code."""
    import re

    from training.advantages import _quadratic_offsets

    text, offsets = _quadratic_offsets(tok, ids)
    item_of = {}
    for m in re.finditer(r"C(\d+)", text):
        for t, (a, b) in enumerate(offsets):
            if a < m.end() and b > m.start() and b > a:
                item_of[t] = int(m.group(1)) - 1
    return text, item_of


def check_planted() -> None:
    """Issue 46 (b): a known advantage planted on every item comes back, through verl's
    compute_advantage, on exactly the tokens that name the item (found here by prefix decodes and
    a regex, not by the environment's own span code), and verl's configured policy loss pushes each
    token's log-probability by -A_t / N."""
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.ray_trainer import compute_advantage
    from verl.trainer.ppo.reward import extract_reward
    from omegaconf import OmegaConf

    import training.verl_plugin as plugin
    from flexrec_bench.ranking.tiny import build_tokenizer
    from training.env import RankingEnv, _Instance

    plant_seq = -0.77

    class Planted(RankingEnv):
        def group_advantages(self, rollouts):
            return [np.array([0.1 * (p + 1) for p in r.order]) for r in rollouts], np.full(len(rollouts), plant_seq)

    tok = build_tokenizer(tempfile.mkdtemp())
    env = Planted("flexrec", "causal_swap", uncertainty=False)
    for key in ("p0", "p1"):
        env.instances[key] = _Instance(key, 8, np.linspace(1, 0, 8), np.zeros(8), 1.0)
    config = OmegaConf.create({"flexrec": {"data": "planted", "dataset": "toy", "needs": ["toy"]},
                               "actor_rollout_ref": {"model": {"path": "unused"}, "rollout": {}}})
    plugin._ENVS[tuple(sorted((k, str(v)) for k, v in dict(config.flexrec).items()))] = (env, "grpo")
    rng = np.random.default_rng(0)
    answers = ["<answer>" + ", ".join(f"C{j + 1}" for j in rng.permutation(8)) + "</answer>" for _ in range(4)]
    output, batch_in, resp, t = rollout_batch(tok, answers, ["p0", "p0", "p1", "p1"], ["u0", "u0", "u1", "u1"], 3)

    _, relabelled = relabel(config, tok, output, batch_in)
    full = backend_config()
    relabelled.batch["token_level_rewards"] = extract_reward(relabelled)[0]
    adv = compute_advantage(relabelled, adv_estimator=full.algorithm.adv_estimator,
                            config=full.algorithm).batch["advantages"]
    items = 0
    for i, r in enumerate(resp):
        text, item_of = item_tokens(tok, r)
        assert sorted(set(item_of.values())) == list(range(8)), text
        for tt in range(len(r)):
            want = 0.1 * (item_of[tt] + 1) if tt in item_of else plant_seq
            assert abs(float(adv[i, tt]) - want) < 1e-5, (text, tt, float(adv[i, tt]), want)
            items += tt in item_of
        assert (adv[i, len(r):] == 0).all()
    assert items >= 4 * 16
    # verl's configured policy loss at ratio 1: d loss / d log p_t = -A_t / (number of response tokens)
    actor = OmegaConf.create(OmegaConf.to_container(full.actor_rollout_ref.actor, resolve=True))
    mask = relabelled.batch["response_mask"].float()
    # what verl's actor worker fills in before the loss, for one data-parallel rank
    actor.global_batch_info = {"dp_size": 1, "batch_num_tokens": int(mask.sum())}
    loss_fn = core_algos.get_policy_loss_fn(actor.policy_loss.loss_mode)
    logp = torch.randn(mask.shape, dtype=torch.float64, requires_grad=True)
    loss, _ = loss_fn(old_log_prob=logp.detach(), log_prob=logp, advantages=adv.double(), response_mask=mask,
                      loss_agg_mode=actor.loss_agg_mode, config=actor)
    loss.backward()
    assert actor.loss_agg_mode == "token-mean", actor.loss_agg_mode
    expected = -adv.double() * mask / mask.sum()
    assert torch.allclose(logp.grad, expected, atol=1e-9), (logp.grad - expected).abs().max()


def main() -> None:
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    check_resolution()
    check_credit()
    check_planted()
    print("VERL OK")


if __name__ == "__main__":
    sys.exit(main())
