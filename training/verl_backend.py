"""``flexrec-bench train --backend verl``: write verl's Parquet prompts and launch its PPO entry
point with the FlexRec reward manager and estimator (full-parameter, KL loss, entropy bonus,
vLLM rollouts, group size 8). Needs GPUs, verl and vLLM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flexrec_bench.errors import MissingCapabilityError, require

from .local import TrainConfig
from .verl_plugin import ESTIMATOR, REWARD_MANAGER


def verl_overrides(cfg: TrainConfig, train_file: Path, val_file: Path, n_gpus: int) -> list[str]:
    """Hydra overrides for verl.trainer.main_ppo from ``cfg`` (the algorithm as the paper states it; its constants are ours)."""
    return [
        f"data.train_files={train_file}", f"data.val_files={val_file}", "data.prompt_key=prompt",
        f"data.train_batch_size={cfg.per_device_train_batch_size * n_gpus}",
        f"data.max_prompt_length={cfg.max_prompt_tokens}", f"data.max_response_length={cfg.max_completion_length}",
        f"actor_rollout_ref.model.path={cfg.model}",
        f"actor_rollout_ref.actor.optim.lr={cfg.learning_rate}",
        "actor_rollout_ref.actor.use_kl_loss=True", f"actor_rollout_ref.actor.kl_loss_coef={cfg.beta}",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl", f"actor_rollout_ref.actor.entropy_coeff={cfg.entropy_coef}",
        "actor_rollout_ref.rollout.name=vllm", f"actor_rollout_ref.rollout.n={cfg.num_generations}",
        f"actor_rollout_ref.rollout.temperature={cfg.temperature}",
        f"algorithm.adv_estimator={ESTIMATOR}", "algorithm.use_kl_in_reward=False",
        f"reward_model.reward_manager={REWARD_MANAGER}",
        f"+reward_model.reward_kwargs.data={cfg.data}", f"+reward_model.reward_kwargs.dataset={cfg.dataset}",
        f"+reward_model.reward_kwargs.needs=[{','.join(cfg.needs)}]", f"+reward_model.reward_kwargs.algo={cfg.algo}",
        f"+reward_model.reward_kwargs.item_reward={cfg.item_reward}",
        f"+reward_model.reward_kwargs.critic={cfg.critic or 'null'}",
        f"trainer.n_gpus_per_node={n_gpus}", "trainer.nnodes=1", f"trainer.total_training_steps={cfg.max_steps}",
        f"trainer.default_local_dir={cfg.output_dir}", "trainer.logger=[console]", "trainer.project_name=flexrec-bench",
        f"trainer.experiment_name={Path(cfg.output_dir).name}",
    ]


def write_verl_data(cfg: TrainConfig) -> tuple[Path, Path]:
    """verl's RL dataset format: prompt (chat messages), data_source, reward_model, extra_info."""
    import pandas as pd

    from .verl_plugin import build_env

    out = Path(cfg.output_dir) / "verl_data"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, limit in (("train", cfg.train_limit), ("val", cfg.eval_limit)):
        _, rows = build_env(cfg.data, cfg.dataset, list(cfg.needs if split == "train" else cfg.eval_needs),
                            split=split, limit=limit)
        frame = pd.DataFrame({"prompt": [r["prompt"] for r in rows], "data_source": f"flexrec/{cfg.dataset}",
                              "reward_model": [{"style": "rule", "ground_truth": ""}] * len(rows),
                              "extra_info": [{"instance_key": r["instance_key"]} for r in rows]})
        p = out / f"{split}.parquet"
        frame.to_parquet(p)
        paths.append(p)
    return paths[0], paths[1]


def launch_verl(cfg: TrainConfig) -> Path:
    cfg = cfg.resolved()
    require("verl", "verl", "the verl backend")
    require("vllm", "vllm", "the verl backend's rollouts (GPU machines)")
    import torch

    n = torch.cuda.device_count()
    if n == 0:
        raise MissingCapabilityError("the verl backend needs GPUs; use --backend local on this machine")
    train_file, val_file = write_verl_data(cfg)
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "training.verl_plugin"}
    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", *verl_overrides(cfg, train_file, val_file, n)]
    subprocess.run(cmd, env=env, check=True)
    return Path(cfg.output_dir)
