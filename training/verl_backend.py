"""``flexrec-bench train --backend verl``: write verl's Parquet prompts and launch its PPO entry
point with the FlexRec reward path and estimator (full-parameter, KL loss, entropy bonus, vLLM
rollouts). ``estimator=ppo`` runs PPO with GAE and a value model. Needs GPUs, verl and vLLM."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from flexrec_bench.foundation.errors import MissingCapabilityError, require

from .config import TrainConfig, completion_budget, max_candidates
from .verl_plugin import AGENT_LOOP_MANAGER_FQN, ESTIMATOR, PLUGIN_MODULE, REWARD_LOOP_MANAGER


#: the value model's learning rate for estimator=ppo (ours: 10x the policy's, a common PPO choice)
VALUE_LR_FACTOR = 10.0


def config_file(cfg: TrainConfig) -> Path:
    """Where the launcher writes the resolved TrainConfig that every verl worker reads."""
    return Path(cfg.output_dir) / "verl_data" / "flexrec_config.json"


def write_config_file(cfg: TrainConfig) -> Path:
    from flexrec_bench.foundation.io import write_json_atomic

    path = config_file(cfg)
    write_json_atomic(path, asdict(cfg))
    return path


def verl_overrides(cfg: TrainConfig, train_file: Path, val_file: Path, n_gpus: int) -> list[str]:
    """Hydra overrides for verl.trainer.main_ppo (verl 0.9) from ``cfg``: the algorithm as the paper
    states it; its constants are ours (the RL values come from the same GRPOConfig names as the
    local backend's). The reward path is named explicitly, so verl cannot fall back to its default:
    the reward-loop manager is loaded by module path, and the agent-loop manager that turns each
    batch's rollouts into per-token credit is ours."""
    for flag in ("constrained_decoding", "squeeze_guard"):
        if getattr(cfg, flag):
            raise MissingCapabilityError(f"{flag}=true is local-backend only (verl's vLLM rollouts and actor loss do not "
                                         f"apply the answer grammar here): use --backend local, or --set {flag}=false")
    if cfg.stop_at_ndcg is not None:
        raise MissingCapabilityError("stop_at_ndcg is local-backend only (verl's trainer has no stop on a validation "
                                     "target here): use --backend local, or leave stop_at_ndcg unset")
    ppo = cfg.estimator == "ppo"
    lr = cfg.rl("learning_rate")
    ov = [
        f"data.train_files={train_file}", f"data.val_files={val_file}", "data.prompt_key=prompt",
        f"data.train_batch_size={cfg.rl('per_device_train_batch_size') * n_gpus}",
        f"data.max_prompt_length={cfg.max_prompt_tokens}",
        f"data.max_response_length={completion_budget(cfg, max_candidates(cfg)) or 256}",
        f"actor_rollout_ref.model.path={cfg.model}",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        "actor_rollout_ref.actor.use_kl_loss=True", f"actor_rollout_ref.actor.kl_loss_coef={cfg.rl('beta')}",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl", f"actor_rollout_ref.actor.entropy_coeff={cfg.rl('entropy_coef')}",
        "actor_rollout_ref.rollout.name=vllm", f"actor_rollout_ref.rollout.n={1 if ppo else cfg.rl('num_generations')}",
        f"actor_rollout_ref.rollout.temperature={cfg.rl('temperature')}",
        f"+actor_rollout_ref.rollout.agent.agent_loop_manager_class={AGENT_LOOP_MANAGER_FQN}",
        f"algorithm.adv_estimator={'gae' if ppo else ESTIMATOR}", "algorithm.use_kl_in_reward=False",
        "reward.reward_manager.source=importlib", f"reward.reward_manager.module.path={PLUGIN_MODULE}",
        f"reward.reward_manager.name={REWARD_LOOP_MANAGER}",
        # every worker rebuilds the environment from the one resolved config (no default applied twice)
        f"+flexrec.config_file={config_file(cfg)}",
        f"trainer.n_gpus_per_node={n_gpus}", "trainer.nnodes=1", f"trainer.total_training_steps={cfg.rl('max_steps')}",
        f"trainer.default_local_dir={cfg.output_dir}", f"trainer.logger={verl_loggers(cfg)}", "trainer.project_name=flexrec-bench",
        f"trainer.experiment_name={Path(cfg.output_dir).name}",
    ]
    if ppo:  # GAE over item-level rewards placed at the item tokens, with a value model from the policy's weights
        ov += [f"critic.model.path={cfg.model}", f"critic.optim.lr={lr * VALUE_LR_FACTOR:g}",
               "algorithm.gamma=1.0", "algorithm.lam=1.0"]
    return ov


def dry_run(cfg: TrainConfig, n_gpus: int = 1) -> dict:
    """The resolved verl run: the Hydra overrides main_ppo would get (files not written, no model)."""
    cfg = cfg.resolved()
    out = Path(cfg.output_dir) / "verl_data"
    return {"backend": "verl", "flexrec": asdict(cfg),
            "verl_overrides": verl_overrides(cfg, out / "train.parquet", out / "val.parquet", n_gpus)}


def write_verl_data(cfg: TrainConfig) -> tuple[Path, Path]:
    """verl's RL dataset format: prompt (chat messages), data_source, reward_model, extra_info."""
    import pandas as pd

    from .verl_plugin import build_env

    out = Path(cfg.output_dir) / "verl_data"
    out.mkdir(parents=True, exist_ok=True)
    # prompts only: rewards are the workers' business, so no critic or KNN is loaded here
    _, all_rows = build_env(cfg, {"train": list(cfg.needs), "val": list(cfg.eval_needs)},
                            limits={"train": cfg.train_limit, "val": cfg.eval_limit}, with_rewards=False)
    paths = []
    for split in ("train", "val"):
        rows = [r for r in all_rows if r["instance_key"].split("|")[1] == split]
        frame = pd.DataFrame({"prompt": [r["prompt"] for r in rows], "data_source": f"flexrec/{cfg.dataset}",
                              "reward_model": [{"style": "rule", "ground_truth": ""}] * len(rows),
                              "extra_info": [{"instance_key": r["instance_key"]} for r in rows]})
        p = out / f"{split}.parquet"
        frame.to_parquet(p)
        paths.append(p)
    return paths[0], paths[1]


def launch_verl(cfg: TrainConfig) -> Path:
    from .config import reward_signal_notice

    notice = reward_signal_notice(cfg)
    if notice:
        print(notice, file=sys.stderr)
    cfg = cfg.resolved()
    require("verl", "verl", "the verl backend")
    require("vllm", "vllm", "the verl backend's rollouts (GPU machines)")
    import torch

    n = torch.cuda.device_count()
    if n == 0:
        raise MissingCapabilityError("the verl backend needs GPUs; use --backend local on this machine")
    train_file, val_file = write_verl_data(cfg)
    write_config_file(cfg)
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "training.verl_plugin"}
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", *verl_overrides(cfg, train_file, val_file, n)]
    subprocess.run(cmd, env=env, check=True)
    return Path(cfg.output_dir)


def verl_loggers(cfg) -> str:
    """TRL's ``report_to`` (one field for both backends) as verl's ``trainer.logger`` list: the console
    always, plus tensorboard and/or wandb."""
    targets = cfg.rl("report_to")
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    extra = [t for t in ("tensorboard", "wandb") if t in targets or "all" in targets]
    return "[" + ",".join(["console", *extra]) + "]"
