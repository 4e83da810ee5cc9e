"""flexrec-bench inside verl (0.9.1): a reward manager and an advantage estimator, registered
with verl's own registries. Load it in every verl worker with
``VERL_USE_EXTERNAL_MODULES=training.verl_plugin``.

Division of labour. verl's estimators see only ``token_level_rewards``, ``response_mask`` and the
group ``uid``; FlexRec's item-level normalisation needs to know which tokens name which item, which
only the response text tells. So the reward manager ``flexrec`` (it sees every response and its
uid) parses each rollout, computes item rewards, group-normalised item/rank/sequence advantages and
the critic's uncertainty weights (the same :class:`training.env.RankingEnv` code as the TRL path)
and writes them per token; the estimator ``flexrec_token`` returns them, masked, as advantages and
returns. KL to the reference goes in the loss (``actor.use_kl_loss``), never into these tokens.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from flexrec_bench.data import load_split
from flexrec_bench.prompts import PromptConfig

from .advantages import token_offsets
from .env import RankingEnv

ESTIMATOR = "flexrec_token"
REWARD_MANAGER = "flexrec"


def flexrec_token_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, config=None, index=None,
                            **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token advantages written by the ``flexrec`` reward manager, masked to the response."""
    adv = token_level_rewards * response_mask
    return adv, adv


def build_env(data: str, dataset: str, needs: list[str], algo: str = "flexrec", item_reward: str = "causal_swap",
              critic: str | None = None, uncertainty: bool = True, seed: int = 0, split: str = "train",
              limit: int | None = None) -> tuple[RankingEnv, list[dict]]:
    crit = None
    if critic:
        from .critic import Critic

        crit = Critic.load(critic, data)
    env = RankingEnv(algo, item_reward, uncertainty and crit is not None, seed)
    rows = []
    for need in needs:
        rows += env.add_split(load_split(data, dataset, need, split), crit, limit, PromptConfig())
    return env, rows


class FlexRecRewardManager:
    """verl reward manager: decodes responses, groups them by uid, writes per-token advantages."""

    def __init__(self, tokenizer, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 env: RankingEnv | None = None, data: str | None = None, dataset: str | None = None,
                 needs: list[str] | None = None, algo: str = "flexrec", item_reward: str = "causal_swap",
                 critic: str | None = None, **_: Any):
        self.tokenizer = tokenizer
        if env is None:
            env, _rows = build_env(data, dataset, list(needs or ["interest"]), algo, item_reward, critic)
        self.env = env

    def __call__(self, data, return_dict: bool = False):
        prompts = data.batch["prompts"]
        responses = data.batch["responses"]
        p_len = prompts.shape[-1]
        attn = data.batch["attention_mask"]
        keys = [str(x["instance_key"]) for x in data.non_tensor_batch["extra_info"]]
        uids = [str(u) for u in data.non_tensor_batch["uid"]]
        texts, offsets, lengths = [], [], []
        for i in range(len(keys)):
            n = int(attn[i, p_len:].sum())
            text, offs = token_offsets(self.tokenizer, responses[i, :n].tolist())
            texts.append(text)
            offsets.append(offs)
            lengths.append(responses.shape[1])
        # group by uid (verl's prompt groups), then keep the instance key for labels
        order = sorted(range(len(keys)), key=lambda i: uids[i])
        adv = [None] * len(keys)
        by_uid: dict[str, list[int]] = defaultdict(list)
        for i in order:
            by_uid[uids[i]].append(i)
        for members in by_uid.values():
            group_keys = [f"{keys[i]}#{uids[i]}" for i in members]
            for gk, i in zip(group_keys, members):
                self.env.instances.setdefault(gk, self.env.instances[keys[i]])
            out = self.env.token_advantages(group_keys, [texts[i] for i in members], [offsets[i] for i in members],
                                            [lengths[i] for i in members])
            for i, a in zip(members, out):
                adv[i] = a
            for gk in group_keys:
                if "#" in gk:
                    self.env.instances.pop(gk, None)
        reward = torch.tensor(np.stack(adv), dtype=torch.float32) * attn[:, p_len:].to(torch.float32)
        if return_dict:
            extra = {"ndcg": [self.env.sequence_reward(self.env.parse(k, t, None)) for k, t in zip(keys, texts)]}
            return {"reward_tensor": reward, "reward_extra_info": extra}
        return reward


def register() -> None:
    """Register with verl, once: re-importing this module must not raise verl's duplicate error."""
    from verl.trainer.ppo import core_algos
    from verl.workers.reward_manager import registry

    if core_algos.ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR) is not flexrec_token_advantage:
        if ESTIMATOR in core_algos.ADV_ESTIMATOR_REGISTRY:
            del core_algos.ADV_ESTIMATOR_REGISTRY[ESTIMATOR]  # a stale copy from an earlier import
        core_algos.register_adv_est(ESTIMATOR)(flexrec_token_advantage)
    if registry.REWARD_MANAGER_REGISTRY.get(REWARD_MANAGER) is not FlexRecRewardManager:
        registry.REWARD_MANAGER_REGISTRY.pop(REWARD_MANAGER, None)
        registry.register(REWARD_MANAGER)(FlexRecRewardManager)


try:  # imported inside verl workers: register on import
    import verl  # noqa: F401
except ImportError:  # pragma: no cover - the plugin is inert without verl
    pass
else:
    register()
