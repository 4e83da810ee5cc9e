"""flexrec-bench inside verl (0.9): the reward path and the advantage estimator.

How verl 0.9 computes rewards, read from its source (``verl/experimental/reward_loop``,
``verl/experimental/agent_loop``, ``verl/trainer/ppo/reward.py``): without a reward model, rewards
stream from reward-loop workers during rollout. Each worker builds the class that
``reward.reward_manager`` names (``source: register`` looks the name up in the reward-loop
registry; ``source: importlib`` loads ``module.path``) and calls ``run_single`` on *one* sample;
the agent loop writes that scalar on the sample's last token as ``rm_scores``. The older
``reward_model.reward_manager`` key and ``verl.workers.reward_manager`` registry are not read by
``main_ppo`` any more.

FlexRec's credit needs the whole group of rollouts of a prompt and the tokens that name each item,
which one sample cannot give. So:

- :class:`FlexRecRewardLoopManager` (``reward.reward_manager``, loaded by module path and also
  registered as ``flexrec``) scores one rollout: its NDCG, and the parse's format flag as extra info;
- :class:`FlexRecAgentLoopManager` (``actor_rollout_ref.rollout.agent.agent_loop_manager_class``)
  runs verl's own agent loop, then replaces each training batch's ``rm_scores`` with per-token
  credit from :class:`training.env.RankingEnv`, grouped by verl's ``uid``: group-normalised
  advantages for the GRPO family (the estimator ``flexrec_token`` passes them through) or item
  rewards at the item tokens for PPO (verl's ``gae`` with the value model). Validation batches keep
  the NDCG score;
- the estimator ``flexrec_token`` is registered with verl's advantage-estimator registry.

Settings come from the resolved TrainConfig the launcher writes (``+flexrec.config_file=...``,
:func:`training.verl_backend.verl_overrides`): the same fields the local trainer reads. Load this module in verl's processes with
``VERL_USE_EXTERNAL_MODULES=training.verl_plugin`` (the backend sets it).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from flexrec_bench.building.splits import load_split

if TYPE_CHECKING:
    from .config import TrainConfig
from flexrec_bench.ranking.prompts import PromptConfig

from .advantages import token_offsets
from .env import RankingEnv, reward_filler

ESTIMATOR = "flexrec_token"
REWARD_MANAGER = "flexrec"                          #: name in verl's reward-loop registry
REWARD_LOOP_MANAGER = "FlexRecRewardLoopManager"    #: class name loaded by module path
PLUGIN_MODULE = "pkg://training.verl_plugin"
AGENT_LOOP_MANAGER_FQN = "training.verl_plugin.FlexRecAgentLoopManager"


def flexrec_token_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, config=None, index=None,
                            **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token advantages written by :class:`FlexRecAgentLoopManager`, masked to the response."""
    adv = token_level_rewards * response_mask
    return adv, adv


def build_env(cfg, needs_by_split: dict[str, list[str]], limits: dict[str, int | None] | None = None,
              with_rewards: bool = True) -> tuple[RankingEnv, list[dict]]:
    """The environment of a resolved :class:`~training.config.TrainConfig` over the needs of each
    split (keys ``<need>|<split>|<row>``, the same in every process) and verl's prompt rows.
    ``limits`` keeps the first N instances of a split; ``with_rewards=False`` writes prompts only
    (no critic or KNN is loaded)."""
    data, dataset, reasoning = cfg.data, cfg.dataset, cfg.reasoning
    filler = reward_filler(cfg.reward_signal, data, dataset, cfg.critic, cfg.knn_neighbors) if with_rewards else None
    env = RankingEnv.from_config(cfg)
    rows = []
    for split, needs in needs_by_split.items():
        for need in needs:
            rows += env.add_split(load_split(data, dataset, need, split), filler, (limits or {}).get(split),
                                  PromptConfig(reasoning=reasoning))
    return env, rows


_ENVS: dict[tuple, tuple[RankingEnv, str]] = {}


def env_from_config(config) -> tuple[RankingEnv, str]:
    """The ranking environment (and estimator) of a verl run's ``flexrec`` config block, built once per process."""
    fx = config.get("flexrec") if hasattr(config, "get") else None
    if fx is None:
        raise ValueError("the verl config has no `flexrec` block: launch with `flexrec-bench train --backend verl`")
    key = tuple(sorted((k, str(v)) for k, v in dict(fx).items()))
    if key not in _ENVS:
        cfg = read_config_file(fx.get("config_file"))
        env, _ = build_env(cfg, {"train": list(cfg.needs), "val": list(cfg.eval_needs or cfg.needs)})
        _ENVS[key] = (env, cfg.estimator)
    return _ENVS[key]


def read_config_file(path) -> TrainConfig:
    """The resolved TrainConfig the launcher wrote (training.verl_backend.write_config_file): every
    worker builds its environment from it, so no default is applied a second time."""
    import json

    from .config import TrainConfig

    if not path:
        raise ValueError("the verl config's flexrec block names no config_file: launch with `flexrec-bench train "
                         "--backend verl`")
    d = json.loads(Path(str(path)).read_text())
    d["needs"] = tuple(d["needs"])
    d["eval_needs"] = tuple(d["eval_needs"]) if d.get("eval_needs") else None
    d["uncertainty_clip"] = tuple(d["uncertainty_clip"])
    return TrainConfig(**d)


def batch_credit(env: RankingEnv, tokenizer, responses: torch.Tensor, response_mask: torch.Tensor, keys: list[str],
                 uids: list[str], estimator: str = "grpo") -> torch.Tensor:
    """(B, T) per-token credit for a batch of rollouts: group-normalised advantages (grpo; rollouts
    of one prompt share a uid) or item-level rewards at the item tokens (ppo)."""
    texts, offsets, lengths = [], [], []
    for i in range(len(keys)):
        n = int(response_mask[i].sum())
        text, offs = token_offsets(tokenizer, responses[i, :n].tolist())
        texts.append(text)
        offsets.append(offs)
        lengths.append(responses.shape[1])
    credit: list = [None] * len(keys)
    if estimator == "ppo":
        credit = env.token_rewards(keys, texts, offsets, lengths).advantages
    else:
        by_uid: dict[str, list[int]] = defaultdict(list)
        for i in sorted(range(len(keys)), key=lambda i: uids[i]):
            by_uid[uids[i]].append(i)
        for members in by_uid.values():
            group_keys = [f"{keys[i]}#{uids[i]}" for i in members]  # one group per uid, even for a repeated prompt
            for gk, i in zip(group_keys, members):
                env.instances.setdefault(gk, env.instances[keys[i]])
            out = env.token_advantages(group_keys, [texts[i] for i in members], [offsets[i] for i in members],
                                       [lengths[i] for i in members]).advantages
            for i, a in zip(members, out):
                credit[i] = a
            for gk in group_keys:
                env.instances.pop(gk, None)
    return torch.tensor(np.stack(credit), dtype=torch.float32) * response_mask.to(torch.float32)


def _response_mask(data) -> torch.Tensor:
    if "response_mask" in data.batch.keys():
        return data.batch["response_mask"]
    p_len = data.batch["prompts"].shape[-1]
    return data.batch["attention_mask"][:, p_len:]


def relabel_batch(prompts, output, tokenizer, env: RankingEnv, estimator: str):
    """Replace ``output``'s ``rm_scores`` with per-token credit (training batches only). ``prompts``
    is the batch the rollouts were generated from (same order): it carries ``uid`` and ``extra_info``."""
    if prompts.meta_info.get("validate", False):
        return output
    if "rm_scores" not in output.batch.keys():
        raise RuntimeError("FlexRec's agent-loop manager got a training batch without rm_scores: verl's reward loop "
                           "did not score it (reward.reward_manager must name FlexRec's reward-loop manager)")
    keys = [str(x["instance_key"]) for x in prompts.non_tensor_batch["extra_info"]]
    uids = [str(u) for u in prompts.non_tensor_batch["uid"]]
    output.batch["rm_scores"] = batch_credit(env, tokenizer, output.batch["responses"], _response_mask(output), keys,
                                             uids, estimator)
    return output


try:  # the verl classes exist only where verl is installed
    from verl.experimental.agent_loop import AgentLoopManager as _AgentLoopManager
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase as _RewardManagerBase
    from verl.utils.ray_utils import auto_await as _auto_await
except ImportError:  # pragma: no cover - the plugin is inert without verl
    _AgentLoopManager = _RewardManagerBase = None

if _RewardManagerBase is not None:

    class FlexRecRewardLoopManager(_RewardManagerBase):
        """verl reward-loop manager: one rollout's NDCG (its scalar score) and format flag."""

        def __init__(self, config, tokenizer, compute_score=None, **_: Any):
            super().__init__(config, tokenizer, compute_score)
            self.env, _estimator = env_from_config(config)

        async def run_single(self, data) -> dict:
            item = data[0]
            p_len = item.batch["prompts"].shape[-1]
            n = int(item.batch["attention_mask"][p_len:].sum())
            text = self.tokenizer.decode(item.batch["responses"][:n].tolist(), skip_special_tokens=True)
            rollout = self.env.parse(str(item.non_tensor_batch["extra_info"]["instance_key"]), text, None)
            ndcg = self.env.sequence_reward(rollout)
            return {"reward_score": ndcg, "reward_extra_info": {"ndcg": ndcg, "format_ok": float(rollout.format_ok)}}

    class FlexRecAgentLoopManager(_AgentLoopManager):
        """verl's agent loop, then FlexRec's per-token credit for each training batch."""

        @_auto_await
        async def generate_sequences(self, prompts):
            output = await super().generate_sequences(prompts)
            env, estimator = env_from_config(self.config)
            return relabel_batch(prompts, output, self._flexrec_tokenizer(), env, estimator)

        def _flexrec_tokenizer(self):
            if getattr(self, "_fx_tok", None) is None:
                from transformers import AutoTokenizer

                path = self.config.actor_rollout_ref.model.get("tokenizer_path") or self.config.actor_rollout_ref.model.path
                self._fx_tok = AutoTokenizer.from_pretrained(path)
            return self._fx_tok


def register() -> None:
    """Register with verl's registries, once: re-importing this module must not raise verl's
    duplicate error. The reward-loop registry is the one ``source: register`` reads."""
    from verl.experimental.reward_loop.reward_manager import registry as loop_registry
    from verl.trainer.ppo import core_algos

    if core_algos.ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR) is not flexrec_token_advantage:
        core_algos.ADV_ESTIMATOR_REGISTRY.pop(ESTIMATOR, None)  # a stale copy from an earlier import
        core_algos.register_adv_est(ESTIMATOR)(flexrec_token_advantage)
    if loop_registry.REWARD_MANAGER.get(REWARD_MANAGER) is not FlexRecRewardLoopManager:
        loop_registry.REWARD_MANAGER.pop(REWARD_MANAGER, None)
        loop_registry.register(REWARD_MANAGER)(FlexRecRewardLoopManager)


if _RewardManagerBase is not None:
    register()
