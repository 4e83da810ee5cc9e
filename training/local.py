"""Single-machine training with TRL (CPU or a few GPUs): FlexRec, Rec-R1 and Rank-GRPO.

``GRPOTrainer`` is subclassed only where it must be: after TRL generates and scores the rollouts,
the sequence-level advantages are replaced by per-token ones (item spans from the tokenizer's own
offsets). KL to the reference policy (``beta``) and the entropy bonus (``entropy_coef``) are TRL's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flexrec_bench.data import load_split
from flexrec_bench.errors import FlexRecError, require
from flexrec_bench.io import write_json_atomic

from .env import ALGOS, RankingEnv


@dataclass
class TrainConfig:
    """One training run; YAML files under training/configs/ set these fields (CLI flags override)."""

    algo: str = "flexrec"                   #: flexrec, rec-r1 or rank-grpo
    model: str = ""                         #: HF model name or local path (policy and reference)
    dataset: str = "ml-100k"
    needs: tuple[str, ...] = ("interest",)  #: several needs = joint multi-need training
    eval_needs: tuple[str, ...] | None = None  #: validation needs (default: needs); another need = generalisation run
    data: str = "data"                      #: build-data output root
    output_dir: str = ""                    #: default checkpoints/<algo>-<dataset>-<needs>
    item_reward: str = "causal_swap"        #: flexrec ablations: sequence, independent, noncausal_swap, causal_swap
    critic: str | None = None               #: critic checkpoint dir; fills unobserved labels with mean and variance
    uncertainty: bool = True                #: down-weight advantages by reward variance (needs a critic to matter)
    train_limit: int | None = None          #: use the first N training instances per need
    eval_limit: int = 64                    #: validation instances per need
    eval_steps: int = 50                    #: validate every N optimizer steps (and at the end)
    max_steps: int = 500
    learning_rate: float = 1e-6
    beta: float = 0.001                     #: KL coefficient to the reference policy
    entropy_coef: float = 0.001             #: entropy bonus
    num_generations: int = 8                #: group size G
    per_device_train_batch_size: int = 8    #: completions per device step (a multiple of G)
    gradient_accumulation_steps: int = 1
    temperature: float = 1.0
    max_completion_length: int = 192
    max_prompt_tokens: int = 3072
    format_reward_weight: float = 0.1       #: Rec-R1 format reward weight
    sft_warmup_steps: int = 0               #: supervised warm-up on ideal lists before RL (Rec-R1: 25)
    lora: bool = False                      #: LoRA instead of full-parameter updates
    lora_r: int = 8
    lora_alpha: int = 16
    seed: int = 0
    use_cpu: bool | None = None             #: default: CPU when no GPU is visible
    logging_steps: int = 1
    save_final: bool = True
    loss_type: str = "dapo"                 #: TRL loss aggregation, set explicitly (ours): token-level mean, as verl's default token-mean
    precision: str = "auto"                 #: auto (bf16 where the GPU supports it, else fp32), bf16, fp16 or fp32

    def resolved(self) -> TrainConfig:
        if self.algo not in ALGOS:
            from flexrec_bench.registry import did_you_mean

            raise FlexRecError(f"unknown --algo {self.algo!r}; {did_you_mean(self.algo, list(ALGOS))}")
        if not self.model:
            raise FlexRecError("--model is required (a Hugging Face name or a local path)")
        d = asdict(self)
        d["needs"] = tuple(self.needs)
        d["eval_needs"] = tuple(self.eval_needs or self.needs)
        if not self.output_dir:
            d["output_dir"] = f"checkpoints/{self.algo}-{self.dataset}-{'+'.join(self.needs)}"
        if self.use_cpu is None:
            import torch

            d["use_cpu"] = not torch.cuda.is_available()
        return TrainConfig(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(raw) - known)
        if bad:
            from flexrec_bench.registry import did_you_mean

            raise FlexRecError(f"{path}: unknown field {bad[0]!r}; {did_you_mean(bad[0], sorted(known))}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        bad = sorted(set(raw) - known)
        if bad:
            from flexrec_bench.registry import did_you_mean

            raise FlexRecError(f"unknown training option {bad[0]!r}; {did_you_mean(bad[0], sorted(known))}")
        for k in ("needs", "eval_needs"):
            if isinstance(raw.get(k), str):
                raw[k] = tuple(x.strip() for x in raw[k].split(",") if x.strip())
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for k, v in list(raw.items()):  # --set values arrive as strings
            if isinstance(v, str) and k not in ("needs", "eval_needs"):
                t = str(types[k])
                if t.startswith("int"):
                    raw[k] = int(v)
                elif t.startswith("float"):
                    raw[k] = float(v)
                elif t.startswith("bool"):
                    raw[k] = v.lower() in ("1", "true", "yes")
        return cls(**raw)


def _build_trainer_class():
    trl = require("trl", "train", "local training")
    from .advantages import token_offsets

    class RankingGRPOTrainer(trl.GRPOTrainer):
        """GRPO with per-token advantages from the ranking environment."""

        def __init__(self, *args, ranking_env: RankingEnv, **kwargs):
            super().__init__(*args, **kwargs)
            self.ranking_env = ranking_env

        def _generate_and_score_completions(self, inputs):
            import torch

            out = super()._generate_and_score_completions(inputs)
            if self.ranking_env.algo == "rec-r1":
                return out
            ids, mask = out["completion_ids"], out["completion_mask"]
            tok = self.processing_class
            texts, offsets, lengths = [], [], []
            for row, m in zip(ids.tolist(), mask.tolist()):
                n = int(sum(m))
                text, offs = token_offsets(tok, row[:n])
                texts.append(text)
                offsets.append(offs)
                lengths.append(ids.shape[1])
            keys = [x["instance_key"] for x in inputs]
            adv = self.ranking_env.token_advantages(keys, texts, offsets, lengths)
            out["advantages"] = torch.tensor(np.stack(adv), dtype=torch.float32, device=ids.device) * mask
            return out

        def log(self, logs, *args, **kwargs):
            logs = {**logs, **self.ranking_env.pop_stats()} if "loss" in logs else logs
            return super().log(logs, *args, **kwargs)

    return RankingGRPOTrainer


def _reward_functions(env: RankingEnv, cfg: TrainConfig):
    def _text(c):
        return c[-1]["content"] if isinstance(c, list) else c

    def ndcg_reward(prompts, completions, instance_key, **_):
        return [env.sequence_reward(env.parse(k, _text(c), None, salt=i)) for i, (k, c) in
                enumerate(zip(instance_key, completions))]

    def format_reward(prompts, completions, instance_key, **_):
        return [float(env.parse(k, _text(c), None).format_ok) for k, c in zip(instance_key, completions)]

    return [ndcg_reward, format_reward], [1.0, cfg.format_reward_weight]


class _JsonlAndEval:
    """TrainerCallback pieces: every log line to JSONL; validation NDCG per need every eval_steps."""

    def __init__(self, cfg: TrainConfig, log_path: Path, val_splits: dict):
        self.cfg, self.log_path, self.val_splits = cfg, log_path, val_splits
        self.trainer = None
        self.t0 = time.time()

    def write(self, row: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps({k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                                for k, v in row.items()}) + "\n")

    def validate(self, step: int) -> dict:
        from flexrec_bench.evaluator import evaluate
        from flexrec_bench.rankers.hf import HFRanker

        model, tok = self.trainer.model, self.trainer.processing_class
        was_training = model.training
        model.eval()
        side = tok.padding_side
        row = {"step": step, "kind": "eval"}
        ranker = HFRanker.from_loaded(model, tok, batch_size=8, progress=False, seed=self.cfg.seed,
                                      max_new_tokens=self.cfg.max_completion_length,
                                      max_prompt_tokens=self.cfg.max_prompt_tokens)
        for need, split in self.val_splits.items():
            res = ranker.rank(split)
            rep = evaluate(res, split, ("ndcg@5", "ndcg@10"), bootstrap=0)
            row[f"val/{need}/ndcg@5"] = rep.metrics["ndcg@5"].mean
            row[f"val/{need}/ndcg@10"] = rep.metrics["ndcg@10"].mean
            row[f"val/{need}/format_ok"] = res.parse.complete / max(1, res.parse.instances)
        tok.padding_side = side
        if was_training:
            model.train()
        self.write(row)
        return row


def _make_callback(helper: _JsonlAndEval):
    from transformers import TrainerCallback

    class Callback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if helper.cfg.eval_steps:
                helper.validate(0)  # the starting point of every learning curve

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                helper.write({"step": state.global_step, "kind": "train", "elapsed_s": time.time() - helper.t0, **logs})

        def on_step_end(self, args, state, control, **kw):
            if helper.cfg.eval_steps and state.global_step % helper.cfg.eval_steps == 0:
                helper.validate(state.global_step)

        def on_train_end(self, args, state, control, **kw):
            if not helper.cfg.eval_steps or state.global_step % helper.cfg.eval_steps != 0:
                helper.validate(state.global_step)

    return Callback()


def train_local(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run one training job; returns the directory of the final checkpoint (loadable by ``eval --model hf:``)."""
    cfg = cfg.resolved()
    trl = require("trl", "train", "local training")
    datasets = require("datasets", "train", "local training")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flexrec_bench.prompts import PromptConfig

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(cfg.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    critic = None
    if cfg.critic:
        from .critic import Critic

        critic = Critic.load(cfg.critic, cfg.data)
    env = RankingEnv(cfg.algo, cfg.item_reward, cfg.uncertainty and critic is not None, cfg.seed)
    prompt_cfg = PromptConfig(max_prompt_tokens=cfg.max_prompt_tokens)
    count = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    rows = []
    for need in cfg.needs:
        rows += env.add_split(load_split(cfg.data, cfg.dataset, need, "train"), critic, cfg.train_limit, prompt_cfg, count)
    val = {n: load_split(cfg.data, cfg.dataset, n, "val").head(cfg.eval_limit) for n in cfg.eval_needs}
    train_ds = datasets.Dataset.from_list(rows).shuffle(seed=cfg.seed)
    if cfg.sft_warmup_steps > 0:
        from .sft import SFTSettings, sft_train

        warm = sft_train(cfg.model, [load_split(cfg.data, cfg.dataset, n, "train").head(cfg.train_limit) for n in cfg.needs],
                         out / "sft-warmup", SFTSettings(max_steps=cfg.sft_warmup_steps, seed=cfg.seed,
                                                         use_cpu=cfg.use_cpu, lora=cfg.lora, precision=cfg.precision,
                                                         max_prompt_tokens=cfg.max_prompt_tokens), progress=progress)
        model_path = str(warm)
    else:
        model_path = cfg.model
    model = AutoModelForCausalLM.from_pretrained(model_path)
    peft_config = None
    if cfg.lora:
        peft = require("peft", "train", "LoRA training")
        peft_config = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.05,
                                      target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    reward_funcs, weights = _reward_functions(env, cfg)
    from .sft import precision_flags

    args = trl.GRPOConfig(
        output_dir=str(out), max_steps=cfg.max_steps, learning_rate=cfg.learning_rate, beta=cfg.beta,
        entropy_coef=cfg.entropy_coef, num_generations=cfg.num_generations, temperature=cfg.temperature,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_completion_length=cfg.max_completion_length,
        reward_weights=weights, use_cpu=cfg.use_cpu, seed=cfg.seed, logging_steps=cfg.logging_steps,
        save_strategy="no", report_to="none", disable_tqdm=not progress, loss_type=cfg.loss_type,
        **precision_flags(cfg.precision, cfg.use_cpu),
    )
    log_path = out / "train_log.jsonl"
    log_path.unlink(missing_ok=True)
    helper = _JsonlAndEval(cfg, log_path, val)
    trainer = _build_trainer_class()(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_ds,
                                     processing_class=tok, peft_config=peft_config, ranking_env=env,
                                     callbacks=[_make_callback(helper)])
    helper.trainer = trainer
    write_json_atomic(out / "train_config.json", {"flexrec": asdict(cfg), "trl": json.loads(args.to_json_string()),
                                                  "versions": _versions()})
    trainer.train()
    final = out / "final"
    if cfg.save_final:
        trainer.save_model(str(final))
        tok.save_pretrained(str(final))
    from .plots import plot_training_log

    plot_training_log(log_path, out / "curves.png")
    return final


def _versions() -> dict:
    from flexrec_bench.results import package_versions

    return package_versions()
