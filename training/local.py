"""Single-machine training with TRL (CPU or a few GPUs): FlexRec, Rec-R1 and Rank-GRPO.

``train_local`` loads the splits, the reward environment and the model (LoRA optional, an SFT
format warm-up optional), then runs the trainer of :mod:`training.trl_trainer` with the recorder of
:mod:`training.monitor`; ``dry_run`` resolves every argument without loading a model. TRL 1.x has no
PPO trainer, so ``estimator=ppo`` runs on the verl backend only.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flexrec_bench.building.splits import load_split
from flexrec_bench.foundation.errors import FlexRecError, MissingCapabilityError, require
from flexrec_bench.foundation.io import write_json_atomic

from .config import TrainConfig, completion_budget, max_candidates, reward_signal_line, reward_signal_notice
from .env import RankingEnv, reward_filler
from .monitor import JsonlAndEval, check_loggers, make_callback
from .trl_trainer import build_trainer_class


def _reward_functions(env: RankingEnv, cfg: TrainConfig):
    def _text(c):
        return c[-1]["content"] if isinstance(c, list) else c

    def ndcg_reward(prompts, completions, instance_key, **_):
        return [env.sequence_reward(env.parse(k, _text(c), None)) for k, c in zip(instance_key, completions)]

    def format_reward(prompts, completions, instance_key, **_):
        return [float(env.parse(k, _text(c), None).format_ok) for k, c in zip(instance_key, completions)]

    return [ndcg_reward, format_reward], [1.0, cfg.format_reward_weight]


def _check_local(cfg: TrainConfig) -> None:
    if cfg.estimator == "ppo":
        raise MissingCapabilityError("estimator=ppo needs the verl backend (TRL 1.x has no PPO trainer): "
                                     "use --backend verl, or --set estimator=grpo")


def resolved_trl_args(cfg: TrainConfig, weights: list[float], k_max: int | None, progress: bool = True):
    """The trl.GRPOConfig of a resolved run. A hub token never enters it (TRL pickles its arguments
    into every checkpoint as training_args.bin): it goes to the process's HF_TOKEN, where the hub
    client reads it, and is taken out of everything written (flexrec_bench.foundation.secrets)."""
    import os

    from flexrec_bench.foundation.secrets import is_secret_name, remember

    trl = require("trl", "train", "local training")
    kw: dict[str, Any] = cfg.grpo_kwargs()
    for name in [k for k in kw if is_secret_name(k)]:
        value = kw.pop(name)
        if value:
            remember(value)
            if name == "hub_token":
                os.environ["HF_TOKEN"] = str(value)
    if k_max is not None:
        kw["max_completion_length"] = completion_budget(cfg, k_max)
    kw.setdefault("disable_tqdm", not progress)
    return trl.GRPOConfig(**kw, reward_weights=weights)


def dry_run(cfg: TrainConfig) -> dict:
    """The fully resolved local run (our fields and every GRPOConfig argument), loading no model."""
    cfg = cfg.resolved()
    _check_local(cfg)
    import warnings

    with warnings.catch_warnings():  # transformers warns about its own deprecated fields while serialising
        warnings.simplefilter("ignore", FutureWarning)
        args = resolved_trl_args(cfg, [1.0, cfg.format_reward_weight], max_candidates(cfg))
        return {"backend": "local", "flexrec": asdict(cfg), "trl": json.loads(args.to_json_string())}


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder TRL wrote into ``output_dir``."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and
             (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def train_local(cfg: TrainConfig, progress: bool = True, resume: bool = False) -> Path:
    """Run one training job; returns the directory of the final checkpoint (loadable by ``eval --model hf:``).
    Checkpoints are saved every ``save_steps`` (TRL's field; ours: 50, the last 2 kept) and when the
    run is interrupted (Ctrl-C); ``resume`` continues from the newest one."""
    notice = reward_signal_notice(cfg)
    if notice:
        print(notice, file=sys.stderr)
    signal_line = reward_signal_line(cfg)
    print(signal_line, file=sys.stderr)
    cfg = cfg.resolved()
    _check_local(cfg)
    check_loggers(cfg.rl("report_to"))
    datasets = require("datasets", "train", "local training")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flexrec_bench.ranking.prompts import PromptConfig

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start_from = last_checkpoint(out) if resume else None
    if resume and start_from is None:
        raise FlexRecError(f"--resume: no checkpoint-<step> folder with a trainer_state.json in {out}")
    from flexrec_bench.ranking.models import hub_access

    with hub_access(cfg.model, "--model") as hub_kw:  # a hub id with the hub down: fail (or use the cache) at once
        tok = AutoTokenizer.from_pretrained(cfg.model, **hub_kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    filler = reward_filler(cfg.reward_signal, cfg.data, cfg.dataset, cfg.critic, cfg.knn_neighbors)
    seed = cfg.rl("seed")
    env = RankingEnv.from_config(cfg)
    prompt_cfg = PromptConfig(max_prompt_tokens=cfg.max_prompt_tokens, reasoning=cfg.reasoning)
    count = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    rows, k_max = [], 1
    for need in cfg.needs:
        split = load_split(cfg.data, cfg.dataset, need, "train").head(cfg.train_limit)
        k_max = max(k_max, int(split.mask.sum(1).max()))
        rows += env.add_split(split, filler, None, prompt_cfg, count)
    if cfg.skip_zero_gain:
        print(f"skip_zero_gain: {env.skipped_zero_gain} training prompts without a positive left out; "
              f"{len(rows)} kept", file=sys.stderr)
        if not rows:
            raise FlexRecError("skip_zero_gain left no training prompt: no training instance has a positive")
    val = {n: load_split(cfg.data, cfg.dataset, n, "val").head(cfg.eval_limit) for n in cfg.eval_needs}
    train_ds = datasets.Dataset.from_list(rows).shuffle(seed=seed)
    if cfg.sft_warmup_steps > 0:
        from .sft import SFTSettings, sft_train

        warm = sft_train(cfg.model, [load_split(cfg.data, cfg.dataset, n, "train").head(cfg.train_limit) for n in cfg.needs],
                         out / "sft-warmup", SFTSettings(max_steps=cfg.sft_warmup_steps, seed=seed,
                                                         use_cpu=cfg.rl("use_cpu"), lora=cfg.lora,
                                                         precision=cfg.precision,  # targets hold no reasoning
                                                         max_prompt_tokens=cfg.max_prompt_tokens,
                                                         targets=cfg.sft_warmup_target), progress=progress)
        model_path = str(warm)
    else:
        model_path = cfg.model
    with hub_access(model_path, "--model") as hub_kw:
        model = AutoModelForCausalLM.from_pretrained(model_path, **hub_kw)
    peft_config = None
    if cfg.lora:
        peft = require("peft", "train", "LoRA training")
        peft_config = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.05,
                                      target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    reward_funcs, weights = _reward_functions(env, cfg)
    args = resolved_trl_args(cfg, weights, k_max, progress)
    log_path = out / "train_log.jsonl"
    if start_from is None:
        log_path.unlink(missing_ok=True)
    helper = JsonlAndEval(cfg, log_path, val, progress)
    trainer = build_trainer_class()(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_ds,
                                     processing_class=tok, peft_config=peft_config, ranking_env=env,
                                     constrained=cfg.constrained_decoding, squeeze_guard=cfg.squeeze_guard,
                                     callbacks=[make_callback(helper)])
    helper.trainer = trainer
    write_json_atomic(out / "train_config.json", {"flexrec": asdict(cfg), "reward_signal": signal_line,
                                                  "trl": json.loads(args.to_json_string()),
                                                  "versions": _versions()})
    previous = _stop_on_sigterm()
    try:
        trainer.train(resume_from_checkpoint=str(start_from) if start_from else None)
    except KeyboardInterrupt:
        # a usable checkpoint (weights, optimizer, scheduler, RNG, trainer state) before leaving
        trainer._save_checkpoint(trainer.model, trial=None)
        saved = last_checkpoint(out)
        raise FlexRecError(f"interrupted at step {trainer.state.global_step}: checkpoint {saved}; continue with "
                           f"`flexrec-bench train ... --output-dir {out} --resume`") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    final = out / "final"
    if cfg.save_final:
        trainer.save_model(str(final))
        tok.save_pretrained(str(final))
    from .plots import plot_training_log

    plot_training_log(log_path, out / "curves.png")
    return final


def _stop_on_sigterm():
    """SIGTERM (`kill`, a scheduler's stop) ends a run as Ctrl-C does: a checkpoint, then the message
    that says how to resume. A job started in the background of a shell ignores SIGINT, so Ctrl-C
    cannot reach it. Returns the handler to restore (None off the main thread, where none is set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _versions() -> dict:
    from flexrec_bench.scoring.results import package_versions

    return package_versions()
