"""Run inside the verl environment (scripts/make-verl-env.sh) by tests/test_verl.py: the registered
reward manager and estimator are called through verl's own compute_advantage and must return the
per-token advantages the ranking environment defines."""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import torch


def main() -> None:
    from verl import DataProto
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.ray_trainer import compute_advantage
    from verl.workers.reward_manager import get_reward_manager_cls

    import training.verl_plugin as plugin
    from flexrec_bench.tiny import build_tokenizer
    from training.advantages import token_offsets
    from training.env import RankingEnv, _Instance

    import importlib

    importlib.reload(plugin)  # a second registration must not raise verl's duplicate error
    assert core_algos.get_adv_estimator_fn("flexrec_token") is plugin.flexrec_token_advantage

    tok = build_tokenizer(tempfile.mkdtemp())
    env = RankingEnv("flexrec", "causal_swap", uncertainty=False)
    env.instances["i0"] = _Instance("i0", 3, np.array([1.0, 0.0, 0.5]), np.zeros(3), 1 + 0.5 / np.log2(3))
    env.instances["i1"] = _Instance("i1", 3, np.array([0.0, 0.1, 1.0]), np.zeros(3), 1 + 0.1 / np.log2(3))
    answers = ["<answer>C1, C3, C2</answer>", "<answer>C2, C3, C1</answer>", "<answer>C3, C2, C1</answer>",
               "<answer>C1</answer>"]
    keys, uids = ["i0", "i0", "i1", "i1"], ["u0", "u0", "u1", "u1"]
    prompt = tok("<|im_start|>user\nrank<|im_end|>\n", add_special_tokens=False)["input_ids"]
    resp = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in answers]
    t = max(len(r) for r in resp) + 2
    responses = torch.full((4, t), tok.pad_token_id)
    attn = torch.zeros((4, len(prompt) + t), dtype=torch.long)
    attn[:, : len(prompt)] = 1
    for i, r in enumerate(resp):
        responses[i, : len(r)] = torch.tensor(r)
        attn[i, len(prompt): len(prompt) + len(r)] = 1
    prompts = torch.tensor([prompt] * 4)
    data = DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": attn,
                 "input_ids": torch.cat([prompts, responses], 1)},
        non_tensors={"uid": np.array(uids, dtype=object),
                     "extra_info": np.array([{"instance_key": k} for k in keys], dtype=object)})
    manager = get_reward_manager_cls("flexrec")(tok, 0, env=env)
    data.batch["token_level_rewards"] = manager(data)
    out = compute_advantage(data, adv_estimator="flexrec_token", config=None)
    adv = out.batch["advantages"].numpy()
    # expected: the environment's own per-token advantages, group by group
    for group in ([0, 1], [2, 3]):
        texts, offs = [], []
        for i in group:
            text, o = token_offsets(tok, resp[i])
            texts.append(text)
            offs.append(o)
        fresh = RankingEnv("flexrec", "causal_swap", uncertainty=False)
        fresh.instances = env.instances
        exp = fresh.token_advantages([keys[i] for i in group], texts, offs, [t] * 2)
        for j, i in enumerate(group):
            n = len(resp[i])
            np.testing.assert_allclose(adv[i, :n], exp[j][:n], rtol=1e-5, atol=1e-6)
            assert (adv[i, n:] == 0).all()
    assert not np.allclose(adv[0, :5], adv[1, :5])
    print("VERL OK", adv.shape)


if __name__ == "__main__":
    sys.exit(main())
