"""Single-machine training with TRL (CPU or a few GPUs): FlexRec, Rec-R1 and Rank-GRPO.

``GRPOTrainer`` is subclassed only where it must be: after TRL generates and scores the rollouts,
the sequence-level advantages are replaced by per-token ones (item spans from the tokenizer's own
offsets). KL to the reference policy (``beta``) and the entropy bonus (``entropy_coef``) are TRL's.
For Rank-GRPO the log-probabilities that enter the importance ratio (and the KL) are rank-level:
each item's tokens carry the mean log-probability of the item (:func:`advantages.rank_level_logps`).
TRL 1.x has no PPO trainer, so ``estimator=ppo`` runs on the verl backend only.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from flexrec_bench.building.splits import load_split
from flexrec_bench.foundation.errors import FlexRecError, MissingCapabilityError, require
from flexrec_bench.foundation.io import write_json_atomic

from .config import TrainConfig, completion_budget, max_candidates, reward_signal_line, reward_signal_notice
from .env import RankingEnv, reward_filler


#: a candidate as a prompt lists it ("[C12] ..."): the grammar of a rollout names exactly these
_CANDIDATE_MARK = __import__("re").compile(r"^\[C(\d+)\]", __import__("re").M)


def _build_trainer_class():
    trl = require("trl", "train", "local training")
    from .advantages import token_offsets

    class RankingGRPOTrainer(trl.GRPOTrainer):
        """GRPO with per-token advantages from the ranking environment."""

        def __init__(self, *args, ranking_env: RankingEnv, constrained: bool = False, squeeze_guard: bool = False,
                     **kwargs):
            super().__init__(*args, **kwargs)
            self.ranking_env = ranking_env
            self.constrained = constrained
            self.squeeze_guard = squeeze_guard
            self._rank_index = None

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            if self.constrained or self.squeeze_guard:
                out = self._constrained_logps(*args, **kwargs)
            else:
                out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            if self._rank_index is None:
                return out
            from .advantages import rank_level_logps

            return (rank_level_logps(out[0], self._rank_index), *out[1:])

        # -- constrained decoding (ours): rollouts that can only be permutations ---------------------
        def _grammar(self, prompt_ids):
            """The answer grammar of a prompt: its candidate count is the number of ids it lists."""
            from flexrec_bench.ranking.constrained import AnswerGrammar

            text = self.processing_class.decode(prompt_ids, skip_special_tokens=True)
            k = len(set(_CANDIDATE_MARK.findall(text)))
            cache = self.__dict__.setdefault("_grammars", {})
            if k not in cache:
                cache[k] = AnswerGrammar.build(self.processing_class, max(k, 1))
            return cache[k]

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            """TRL's generation, with the grammar's logits processor on the model's ``generate``."""
            if not self.constrained:
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            from transformers import LogitsProcessorList

            from flexrec_bench.ranking.constrained import ConstrainedLogits

            target = self.accelerator.unwrap_model(self.model_wrapped)
            had = "generate" in target.__dict__
            original = target.generate

            def generate(*a, **kw):
                ids = kw["input_ids"]
                grammars = [self._grammar(row[mask.bool()].tolist()) for row, mask in zip(ids, kw["attention_mask"])]
                kw["logits_processor"] = LogitsProcessorList([ConstrainedLogits(grammars, ids.shape[1])])
                return original(*a, **kw)

            target.generate = generate
            try:
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            finally:
                if had:
                    target.generate = original
                else:
                    del target.generate

        def _constrained_logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                               compute_entropy=False, compute_aux_loss=False, **_):
            """Per-token log-probs (and entropies) of the completions under the constrained
            distribution: the model's logits renormalised over the tokens the grammar allowed at
            each position (flexrec_bench.ranking.constrained.constrained_logprobs). Positions after the
            answer ended score 0 (the completion mask drops them). With ``squeeze_guard`` the rollouts
            were free: a completion's valid prefix is scored under the grammar, the rest (from its
            first invalid token) under the model's whole distribution."""
            import torch

            from flexrec_bench.ranking.constrained import allowed_masks

            batch_size = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                ids, att = input_ids[start:start + batch_size], attention_mask[start:start + batch_size]
                with self.accelerator.autocast():
                    logits = model(input_ids=ids, attention_mask=att).logits[:, -logits_to_keep - 1:-1, :].float()
                comp = ids[:, -logits_to_keep:]
                masks = torch.stack([allowed_masks(self._grammar(row[:-logits_to_keep][a[:-logits_to_keep].bool()]
                                                                 .tolist()), c.tolist(), logits.shape[-1],
                                                   lenient=self.squeeze_guard)
                                     for row, a, c in zip(ids, att, comp)]).to(logits.device)
                masked = logits.masked_fill(~masks, float("-inf"))
                lp = torch.log_softmax(masked, dim=-1)
                tok_lp = lp.gather(-1, comp[..., None])[..., 0]
                logps.append(torch.where(torch.isfinite(tok_lp), tok_lp, torch.zeros_like(tok_lp)))
                if compute_entropy:
                    p = lp.exp()
                    entropies.append(-(p * torch.where(masks, lp, torch.zeros_like(lp))).sum(-1))
            return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

        def _compute_loss(self, model, inputs):
            self._rank_index = inputs.get("rank_index") if self.ranking_env.algo == "rank-grpo" else None
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._rank_index = None

        def _generate_and_score_completions(self, inputs):
            import torch

            from .advantages import rank_level_logps

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
            credit = self.ranking_env.token_advantages(keys, texts, offsets, lengths)
            out["advantages"] = torch.tensor(np.stack(credit.advantages), dtype=torch.float32, device=ids.device) * mask
            if self.ranking_env.algo == "rank-grpo":
                ranks = torch.tensor(np.stack(credit.ranks), dtype=torch.long, device=ids.device)
                out["rank_index"] = ranks
                self.ranking_env.stats["rank_token_share"].append(float((ranks >= 0).float().mean()))
                for key in ("old_per_token_logps", "ref_per_token_logps"):  # the same rank-level view as the loss's
                    if out.get(key) is not None:
                        out[key] = rank_level_logps(out[key], ranks)
            return out

        def log(self, logs, *args, **kwargs):
            logs = {**logs, **self.ranking_env.pop_stats()} if "loss" in logs else logs
            return super().log(logs, *args, **kwargs)

    return RankingGRPOTrainer


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


#: validation instances per need whose prompt, completion and ranking are logged at each evaluation
SAMPLES = 3


def _prompt_tail(split, i: int, ranker) -> str:
    """The end of an instance's prompt (the candidates and the answer format), for the samples table."""
    from flexrec_bench.ranking.prompts import split_messages

    return split_messages(split, i, ranker.prompt)[-1]["content"][-600:]


def report_targets(report_to) -> list[str]:
    """TRL's ``report_to`` as a list (``none`` and ``all`` kept as TRL reads them)."""
    if report_to is None:
        return []
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    return [x for x in items if x != "none"]


def check_loggers(report_to) -> None:
    """A logger that is not installed is one line naming the package (before any model loads)."""
    import importlib.util

    for target, package in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        if target in report_targets(report_to) and importlib.util.find_spec(package) is None:
            raise MissingCapabilityError(f"report_to={target} needs the '{package}' package: pip install {package} "
                                         f"(or pip install 'flexrec-bench[train]', which brings tensorboard)")


def log_validation(cfg: TrainConfig, args, step: int, row: dict) -> None:
    """The validation metrics and the samples table to the loggers ``report_to`` names: TensorBoard
    scalars and a Markdown text table under ``<output_dir>/runs/validation`` (or
    ``$TENSORBOARD_LOGGING_DIR/validation``), a wandb Table in the active run."""
    targets = report_targets(getattr(args, "report_to", None))
    scalars = {k: v for k, v in row.items() if k.startswith("val/") and v is not None}
    samples = row.get("samples") or []
    if "tensorboard" in targets or "all" in targets:
        from torch.utils.tensorboard import SummaryWriter

        import os

        # beside TRL's own event files: transformers writes to TENSORBOARD_LOGGING_DIR or <output_dir>/runs
        root = os.environ.get("TENSORBOARD_LOGGING_DIR") or str(Path(cfg.output_dir) / "runs")
        writer = SummaryWriter(log_dir=str(Path(root) / "validation"))
        for k, v in scalars.items():
            writer.add_scalar(k, v, step)
        table = ["| need | instance | completion | ranking (top 10) |", "|---|---|---|---|"]
        table += [f"| {s['need']} | {s['instance_id']} | {s['completion'][:300].replace('|', '/')} | "
                  f"{', '.join(s['ranking'])} |" for s in samples]
        writer.add_text("val/samples", "\n".join(table).replace("\n", "  \n"), step)
        writer.flush()
        writer.close()
    if "wandb" in targets or "all" in targets:
        import wandb

        if wandb.run is not None:
            wandb.log({**scalars, "val/samples": wandb.Table(columns=["need", "instance", "completion", "ranking"],
                                                               data=[[s["need"], s["instance_id"], s["completion"],
                                                                      ", ".join(s["ranking"])] for s in samples])},
                      step=step)


class _JsonlAndEval:
    """TrainerCallback pieces: every log line to JSONL; validation NDCG per need every eval_steps."""

    def __init__(self, cfg: TrainConfig, log_path: Path, val_splits: dict, progress: bool = True):
        self.cfg, self.log_path, self.val_splits, self.progress = cfg, log_path, val_splits, progress
        self.trainer = None
        self.t0 = time.time()
        self.val_rows: list[dict] = []  # each validation's NDCG@5 per need (stop_at_ndcg)

    def past_deadline(self) -> bool:
        """max_minutes has passed since the run began (loading and the step-0 validation included)."""
        return self.cfg.max_minutes is not None and time.time() - self.t0 >= 60 * self.cfg.max_minutes

    def reached_target(self) -> bool:
        """stop_at_ndcg: every validation need's NDCG@5 at or above it in the last two validations."""
        target, last = self.cfg.stop_at_ndcg, self.val_rows[-2:]
        return target is not None and len(last) == 2 and all(
            v >= target for row in last for k, v in row.items() if k.endswith("/ndcg@5"))

    def write(self, row: dict) -> None:
        from flexrec_bench.foundation.secrets import redact

        with open(self.log_path, "a") as f:
            f.write(json.dumps(redact({k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                                       for k, v in row.items()})) + "\n")

    def validate(self, step: int) -> dict:
        from flexrec_bench.scoring.evaluator import evaluate
        from flexrec_bench.ranking.rankers.hf import HFRanker

        model, tok = self.trainer.model, self.trainer.processing_class
        was_training = model.training
        model.eval()
        side = tok.padding_side
        row = {"step": step, "kind": "eval"}
        for need, split in self.val_splits.items():
            ranker = HFRanker.from_loaded(model, tok, name=f"validation at step {step}, {need}", batch_size=8,
                                          progress=self.progress, seed=self.cfg.rl("seed"),
                                          max_new_tokens=self.trainer.args.max_completion_length,
                                          reasoning=self.cfg.reasoning, max_prompt_tokens=self.cfg.max_prompt_tokens,
                                          constrained=self.cfg.constrained_decoding)
            res = ranker.rank(split)
            rep = evaluate(res, split, ("ndcg@5", "ndcg@10"), bootstrap=0)
            row[f"val/{need}/ndcg@5"] = rep.metrics["ndcg@5"].mean
            row[f"val/{need}/ndcg@10"] = rep.metrics["ndcg@10"].mean
            row[f"val/{need}/format_ok"] = res.parse.complete / max(1, res.parse.instances)
            # zero-shot instruct models echo the presented order (issue 37): its share, read over the steps
            row[f"val/{need}/echo"] = res.parse.echo_share or 0.0
            row[f"val/{need}/first_shown_first"] = res.parse.first_shown_first / max(1, res.parse.instances)
            samples = row.setdefault("samples", [])
            for i in range(min(SAMPLES, len(split))):  # what people read to see a ranker learn
                samples.append({"need": need, "instance_id": split.instance_ids[i],
                                "prompt_tail": _prompt_tail(split, i, ranker), "completion": res.outputs[i],
                                "ranking": [split.candidates[i][j] for j in res.order[i] if j >= 0][:10]})
        tok.padding_side = side
        if was_training:
            model.train()
        self.val_rows.append({k: v for k, v in row.items() if k.endswith("/ndcg@5")})
        self.write(row)
        log_validation(self.cfg, self.trainer.args, step, row)
        return row


def _make_callback(helper: _JsonlAndEval):
    from transformers import TrainerCallback

    class Callback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if helper.cfg.eval_steps and state.global_step == 0:  # not again on --resume
                helper.validate(0)  # the starting point of every learning curve

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                helper.write({"step": state.global_step, "kind": "train", "elapsed_s": time.time() - helper.t0, **logs})

        def on_step_end(self, args, state, control, **kw):
            if helper.cfg.eval_steps and state.global_step % helper.cfg.eval_steps == 0:
                helper.validate(state.global_step)
                if helper.reached_target() and state.global_step < state.max_steps:
                    helper.write({"step": state.global_step, "kind": "stopped", "reason": "stop_at_ndcg",
                                  "stop_at_ndcg": helper.cfg.stop_at_ndcg, "elapsed_s": time.time() - helper.t0})
                    control.should_training_stop = True
            if helper.past_deadline() and state.global_step < state.max_steps:
                helper.write({"step": state.global_step, "kind": "stopped", "reason": "max_minutes",
                              "max_minutes": helper.cfg.max_minutes, "elapsed_s": time.time() - helper.t0})
                control.should_training_stop = True

        def on_train_end(self, args, state, control, **kw):
            if not helper.cfg.eval_steps or state.global_step % helper.cfg.eval_steps != 0:
                helper.validate(state.global_step)

    return Callback()


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
    helper = _JsonlAndEval(cfg, log_path, val, progress)
    trainer = _build_trainer_class()(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_ds,
                                     processing_class=tok, peft_config=peft_config, ranking_env=env,
                                     constrained=cfg.constrained_decoding, squeeze_guard=cfg.squeeze_guard,
                                     callbacks=[_make_callback(helper)])
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
