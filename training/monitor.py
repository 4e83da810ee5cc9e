"""What a local run records while it trains: every log line to JSONL; validation NDCG, format and
echo share per need every ``eval_steps`` (which also ends a run at ``stop_at_ndcg`` or ``max_minutes``);
and the validation metrics with a samples table to TensorBoard or wandb (``report_to``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from flexrec_bench.foundation.errors import MissingCapabilityError

from .config import TrainConfig


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


class JsonlAndEval:
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


def make_callback(helper: JsonlAndEval):
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
