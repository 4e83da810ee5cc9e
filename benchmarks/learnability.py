"""The learnability ladder (issue 46): does the trainer learn what can be learned?

Rungs, each on a member of the toy family (flexrec_bench.datasets.toy: ``--types``, ``--k``,
``--slots-seed``), a 2-layer Qwen2 (random init, a tokenizer trained on the toy's prompts):

- ``sft``: SFT on the oracle order. Can the model represent the map at all?
- ``fixed``: one user type, so one target order. RL from the format warm-up (the unconditional rung).
- ``conditional``: ``--types`` types (default 4). RL from the format warm-up (Figure 3 in miniature).
- ``need``: the need-conditional toy (``toy`` and ``toy-alt`` on the same instances, other slots).
  One policy trained on both needs; ``changed_top3`` is the share of test instances whose top 3
  changes when only the need line changes.

RL runs use the ``learnability`` preset (training/configs/presets/learnability.yaml, all ours; the
need rung at lr 3e-4 for up to 1,500 steps: ``RUNG_SETS``, ``RUNG_STEPS``) and start from one
format warm-up per build (SFT on random permutations: the answer format, nothing of the labels). Every design and seed reports the validation curve (N@5 every ``eval_steps``), the
steps to validation N@5 0.5 / 0.8 / 0.9 (None: not reached within the budget) and the final test
NDCG@5 (greedy, the whole test split). Finished cells are reused on a rerun with the same options
(``<out>/<toy>/cells``; another ``--steps``, ``--preset``, ``--set``, warm-up or width is a new cell).

    python benchmarks/learnability.py --rung conditional --types 4 --k 8 --design causal_swap,rec-r1 \\
        --seeds 3 --json benchmarks/out/learnability-conditional.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUNGS = ("sft", "fixed", "conditional", "need")
#: Figure 3's designs: (algo, overrides)
DESIGNS: dict[str, tuple[str, dict[str, Any]]] = {
    "rec-r1": ("rec-r1", {}),
    "rank-grpo": ("rank-grpo", {}),
    "independent": ("flexrec", {"item_reward": "independent"}),
    "noncausal_swap": ("flexrec", {"item_reward": "noncausal_swap"}),
    "causal_swap": ("flexrec", {"item_reward": "causal_swap"}),
}
THRESHOLDS = (0.5, 0.8, 0.9)
SFT_EVAL_EVERY = 50  #: ours: the SFT rung's validation grid
SIZES = {"train": 2000, "val": 128, "test": 400}
#: ours: what a rung sets on top of the preset, unless ``--set``/``--steps`` say otherwise. The need
#: rung trains on two needs, so each need gets half the prompts a step; at the preset's 1e-3 its
#: validation climbed and fell (seed 0: N@5 0.85 at step 350, 0.48 at 525; docs/training.md), at
#: 3e-4 it climbs and stays up, which takes more steps.
RUNG_SETS: dict[str, dict[str, str]] = {"need": {"learning_rate": "3e-4"}}
RUNG_STEPS: dict[str, int] = {"need": 1500}  #: ours: the rung's budget in place of the preset's max_steps


class UsageError(SystemExit):
    """A bad option: one line on stderr, exit status 2, before any model loads."""

    def __init__(self, message: str) -> None:
        print(f"learnability.py: error: {message}", file=sys.stderr)
        super().__init__(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rung", choices=RUNGS, required=True)
    ap.add_argument("--types", type=int, default=None, help="user types (fixed: 1; else default 4)")
    ap.add_argument("--k", type=int, default=8, help="candidates per instance (6..32)")
    ap.add_argument("--slots-seed", type=int, default=None,
                    help="draw each type's slots with this seed (default: the classic table for 4 types and 8 "
                         "candidates, else seed 0)")
    ap.add_argument("--design", default=",".join(DESIGNS), help=f"comma-separated, of {', '.join(DESIGNS)}")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps per run (RL: the preset's 600, the need rung 1500, ended early by the "
                         "preset's stop_at_ndcg; SFT: 600)")
    ap.add_argument("--preset", default="learnability", help="the RL preset (training/configs/presets)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training option on top of the preset (repeatable), e.g. --set learning_rate=1e-4")
    ap.add_argument("--warmup-steps", type=int, default=300, help="the format warm-up's SFT steps")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=1, help="cells run at once, one thread each")
    ap.add_argument("--out", default="benchmarks/out/learnability")
    ap.add_argument("--json", default=None, help="the results file (default <out>/<rung>.json)")
    ap.add_argument("--plot", default=None, help="the curves' PNG (default beside --json)")
    a = ap.parse_args(argv)
    return check_args(a)


def check_args(a: argparse.Namespace) -> argparse.Namespace:
    """One-line errors for options that cannot run, before anything is built or loaded."""
    from flexrec_bench.datasets.toy import toy_slots
    from flexrec_bench.foundation.registry import did_you_mean

    if a.rung == "fixed":
        if a.types not in (None, 1):
            raise UsageError(f"--rung fixed is the one-type toy (a fixed target order): --types must be 1, got {a.types}")
        a.types = 1
    a.types = 4 if a.types is None else a.types
    if a.slots_seed is None and (a.types, a.k) != (4, 8):
        a.slots_seed = 0
    try:
        toy_slots(a.types, a.k, a.slots_seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    a.designs = [d.strip() for d in a.design.split(",") if d.strip()]
    for d in a.designs:
        if d not in DESIGNS:
            raise UsageError(f"--design: unknown design {d!r}; {did_you_mean(d, list(DESIGNS))}")
    if a.rung == "sft":
        a.designs = ["sft"]
    for name in ("seeds", "jobs", "hidden"):
        if getattr(a, name) < 1:
            raise UsageError(f"--{name} must be at least 1, got {getattr(a, name)}")
    if a.steps is not None and a.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {a.steps}")
    if a.warmup_steps < 0:
        raise UsageError(f"--warmup-steps must be 0 or more, got {a.warmup_steps}")
    a.sets = {}
    for item in a.set:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        a.sets[key.strip()] = value.strip()
    a.sets = {**RUNG_SETS.get(a.rung, {}), **a.sets}
    if a.steps is None and "max_steps" not in a.sets:
        a.steps = RUNG_STEPS.get(a.rung)
    if a.rung != "sft":
        from training.config import ConfigError, layered_config, preset_path

        try:
            preset_path(a.preset)
            for design in a.designs:
                algo, over = DESIGNS[design]
                layered_config(None, a.preset, {"algo": algo, **over}, a.sets)
        except ConfigError as e:
            raise UsageError(str(e)) from None
    a.json = Path(a.json) if a.json else Path(a.out) / f"{a.rung}.json"
    a.plot = Path(a.plot) if a.plot else a.json.with_suffix(".png")
    return a


# -- the build, the tiny model and the format warm-up ---------------------------------------------
def build_key(a) -> str:
    return f"t{a.types}-k{a.k}-s{'classic' if a.slots_seed is None else a.slots_seed}" + ("-need" if a.rung == "need" else "")


def cell_dir(a, design: str, seed: int) -> Path:
    """Where one (design, seed) is cached: ``<design>-seed<N>-<digest>``, the digest of everything
    the result depends on beyond the build and the seed (the resolved training config: preset, --set
    and --steps; the warm-up and the width). A rerun with another budget, or after a preset changed,
    gets a new cell instead of reusing a result it did not produce."""
    import dataclasses
    import hashlib

    if a.rung == "sft":
        given: dict[str, Any] = {"steps": a.steps or 600, "hidden": a.hidden}
    else:
        from training.config import layered_config

        algo, over = DESIGNS[design]
        overrides = {"algo": algo, **over, **({"max_steps": a.steps} if a.steps else {})}
        cfg = dataclasses.asdict(layered_config(None, a.preset, overrides, a.sets)[0])
        given = {"config": cfg, "warmup_steps": a.warmup_steps, "hidden": a.hidden}
    tag = hashlib.sha256(json.dumps(given, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path(a.out) / build_key(a) / "cells" / a.rung / f"{design}-seed{seed}-{tag}"


def needs_of(a) -> tuple[str, ...]:
    from flexrec_bench.datasets.toy import ALT_NEED, NEED

    return (NEED, ALT_NEED) if a.rung == "need" else (NEED,)


def prepare(a) -> tuple[Path, Path, Path]:
    """(data root, base model, warm-up model) of the rung's toy, each written once."""
    from flexrec_bench.datasets.toy import write_toy_build
    from flexrec_bench.ranking.prompts import PromptConfig, split_messages
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.ranking.tiny import build_tiny_model
    from training.sft import SFTSettings, sft_train

    root = Path(a.out) / build_key(a)
    data = root / "data"
    if not (data / "toy" / "manifest.json").exists():
        write_toy_build(data, SIZES, types=a.types, k=a.k, slots_seed=a.slots_seed, need_conditional=a.rung == "need")
    splits = [load_split(data, "toy", n, "train") for n in needs_of(a)]
    base = root / f"tiny-h{a.hidden}"
    if not (base / "config.json").exists():
        texts = [split_messages(s, i, PromptConfig())[1]["content"] for s in splits for i in range(32)]
        build_tiny_model(base, hidden_size=a.hidden, layers=2, extra_texts=texts)
    warm = root / f"warmup-h{a.hidden}-{a.warmup_steps}" / "final"
    if a.rung != "sft" and a.warmup_steps and not (warm / "config.json").exists():
        t0 = time.time()
        sft_train(str(base), splits, warm.parent, SFTSettings(max_steps=a.warmup_steps, learning_rate=1e-3, lora=False,
                                                              use_cpu=True, targets="random",
                                                              per_device_train_batch_size=16), progress=False)
        print(f"format warm-up ({a.warmup_steps} steps) in {time.time() - t0:.0f} s", flush=True)
    return data, base, (warm if a.warmup_steps else base)


# -- one cell --------------------------------------------------------------------------------------
def steps_to(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """The first validation step whose N@5 reaches the threshold (None: never)."""
    return next((step for step, v in curve if v >= threshold), None)


def test_scores(model, tok, data: Path, needs: tuple[str, ...], constrained: bool) -> dict[str, Any]:
    """Final test NDCG@5 per need (greedy, the whole test split) and, with two needs, the share of
    instances whose top 3 changes when only the need line changes."""
    from flexrec_bench.scoring.evaluator import evaluate
    from flexrec_bench.ranking.prompts import answer_tokens
    from flexrec_bench.ranking.rankers.hf import HFRanker
    from flexrec_bench.building.splits import load_split

    out: dict[str, Any] = {"by_need": {}, "format_ok": {}}
    tops = []
    for need in needs:
        split = load_split(data, "toy", need, "test")
        ranker = HFRanker.from_loaded(model, tok, name=f"test {need}", batch_size=16, progress=False, seed=0,
                                      max_new_tokens=answer_tokens(int(split.mask.sum(1).max()), False),
                                      constrained=constrained)
        res = ranker.rank(split)
        out["by_need"][need] = evaluate(res, split, ("ndcg@5",), bootstrap=0).metrics["ndcg@5"].mean
        out["format_ok"][need] = res.parse.complete / max(1, res.parse.instances)
        tops.append([tuple(row[:3]) for row in res.order])
    out["final_ndcg@5"] = sum(out["by_need"].values()) / len(needs)
    if len(needs) == 2:
        out["changed_top3"] = sum(x != y for x, y in zip(*tops)) / len(tops[0])
    return out


def run_cell(a_dict: dict, design: str, seed: int) -> dict:
    """Train one design with one seed and score it; the result is cached in its folder."""
    import torch

    a = argparse.Namespace(**a_dict)
    if a.jobs > 1:  # the cells share the cores
        torch.set_num_threads(1)
    cell = cell_dir(a, design, seed)
    done = cell / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    data, base, warm = prepare(a)
    t0 = time.time()
    if a.rung == "sft":
        curve, model, tok = _sft_cell(a, data, base, cell, seed)
        constrained, stopped = False, None
    else:
        curve, model, tok, constrained, stopped = _rl_cell(a, data, warm, cell, design, seed)
    res = {"design": design, "seed": seed, "curve": curve, "stopped_at": stopped,
           **test_scores(model, tok, data, needs_of(a), constrained),
           "steps_to": {str(t): steps_to(curve, t) for t in THRESHOLDS}, "train_s": time.time() - t0}
    from flexrec_bench.foundation.io import write_json_atomic

    write_json_atomic(done, res)
    return res


def _sft_cell(a, data: Path, base: Path, cell: Path, seed: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from flexrec_bench.scoring.evaluator import evaluate
    from flexrec_bench.ranking.prompts import answer_tokens
    from flexrec_bench.ranking.rankers.hf import HFRanker
    from flexrec_bench.building.splits import load_split
    from training.sft import SFTSettings, sft_train

    val = load_split(data, "toy", "toy", "val")
    tok = AutoTokenizer.from_pretrained(str(base))
    curve: list[tuple[int, float]] = []

    def score(model, step):
        was = model.training
        model.eval()
        r = HFRanker.from_loaded(model, tok, name=f"sft step {step}", batch_size=16, progress=False, seed=0,
                                 max_new_tokens=answer_tokens(a.k, False))
        curve.append((step, evaluate(r.rank(val), val, ("ndcg@5",), bootstrap=0).metrics["ndcg@5"].mean))
        model.train(was)

    class Curve(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % SFT_EVAL_EVERY == 0:
                score(model, state.global_step)

    steps = a.steps or 600
    final = sft_train(str(base), [load_split(data, "toy", "toy", "train")], cell / "sft",
                      SFTSettings(max_steps=steps, learning_rate=1e-3, lora=False, use_cpu=True, targets="ideal",
                                  per_device_train_batch_size=16, seed=seed), progress=False, callbacks=[Curve()])
    model = AutoModelForCausalLM.from_pretrained(str(final))
    return curve, model, AutoTokenizer.from_pretrained(str(final))


def _rl_cell(a, data: Path, warm: Path, cell: Path, design: str, seed: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.config import layered_config
    from training.local import train_local

    algo, over = DESIGNS[design]
    given = {"algo": algo, **over, "model": str(warm), "data": str(data), "dataset": "toy", "needs": needs_of(a),
             "output_dir": str(cell / "run"), "seed": seed, "use_cpu": True}
    if a.steps:
        given["max_steps"] = a.steps
    cfg, _ = layered_config(None, a.preset, given, a.sets)
    final = train_local(cfg, progress=False)
    rows = [json.loads(x) for x in (cell / "run" / "train_log.jsonl").read_text().splitlines()]
    curve, stopped = [], None
    for r in rows:
        if r["kind"] == "stopped":
            stopped = int(r["step"])
        if r["kind"] == "eval":
            vals = [r[f"val/{n}/ndcg@5"] for n in needs_of(a)]
            curve.append((int(r["step"]), min(vals)))  # every need must reach the threshold
    model = AutoModelForCausalLM.from_pretrained(str(final))
    return curve, model, AutoTokenizer.from_pretrained(str(final)), cfg.constrained_decoding, stopped


# -- over seeds ------------------------------------------------------------------------------------
def summarise(runs: dict[str, list[dict]], budget: int) -> dict[str, dict]:
    from reproduce.report import t_interval

    out = {}
    for design, rs in runs.items():
        finals = [r["final_ndcg@5"] for r in rs]
        mu, ci = t_interval(finals)
        row: dict[str, Any] = {"final_ndcg@5": {"mean": mu, "ci95": ci, "per_seed": finals},
                               "min_final_ndcg@5": min(finals), "budget_steps": budget}
        for t in THRESHOLDS:
            reached = [r["steps_to"][str(t)] for r in rs if r["steps_to"][str(t)] is not None]
            m, c = t_interval(reached) if reached else (None, None)
            row[f"steps_to_{t}"] = {"mean": m, "ci95": c, "reached": len(reached), "of": len(rs),
                                    "per_seed": [r["steps_to"][str(t)] for r in rs]}
        if any("changed_top3" in r for r in rs):
            ch = [r["changed_top3"] for r in rs]
            m, c = t_interval(ch)
            row["changed_top3"] = {"mean": m, "ci95": c, "per_seed": ch}
        out[design] = row
    return out


def markdown(summary: dict[str, dict]) -> str:
    def fmt(m, digits=3):
        if m["mean"] is None:
            return "not reached"
        s = f"{m['mean']:.{digits}f}" if digits else f"{m['mean']:.0f}"
        return s + (f" [{m['ci95'][0]:.{digits}f}, {m['ci95'][1]:.{digits}f}]" if m.get("ci95") else "")

    lines = ["| design | final test N@5 (mean, t 95% CI) | min over seeds | steps to 0.5 | steps to 0.8 | steps to 0.9 |",
             "|---|---|---|---|---|---|"]
    for design, row in summary.items():
        steps = [f"{fmt(row[f'steps_to_{t}'], 0)} ({row[f'steps_to_{t}']['reached']}/{row[f'steps_to_{t}']['of']})"
                 for t in THRESHOLDS]
        lines.append(f"| {design} | {fmt(row['final_ndcg@5'])} | {row['min_final_ndcg@5']:.3f} | " + " | ".join(steps) + " |")
    if any("changed_top3" in r for r in summary.values()):
        lines += ["", "| design | top 3 changed with the need line (mean, t 95% CI) |", "|---|---|"]
        lines += [f"| {d} | {fmt(r['changed_top3'])} |" for d, r in summary.items() if "changed_top3" in r]
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (design, rs) in enumerate(runs.items()):
        for j, r in enumerate(rs):
            xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
            ax.plot(xs, ys, color=f"C{i}", alpha=0.8, lw=1.2, label=design if j == 0 else None)
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("validation NDCG@5" + (" (lowest need)" if "need" in title else ""))
    ax.set_title(title)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    from flexrec_bench.foundation.io import write_json_atomic
    from reproduce.grid import in_parallel

    t0 = time.time()
    prepare(a)  # once, before the workers (they would race to write it)
    a_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    tasks = [(run_cell, (a_dict, d, s)) for d in a.designs for s in range(a.seeds)]
    results = in_parallel(tasks, a.jobs, progress=True)
    runs: dict[str, list[dict]] = {}
    for r in results:
        runs.setdefault(r["design"], []).append(r)
    budget = a.steps or (600 if a.rung == "sft" else _preset_steps(a))
    summary = summarise(runs, budget)
    payload = {"rung": a.rung, "toy": {"types": a.types, "k": a.k, "slots_seed": a.slots_seed, "needs": list(needs_of(a))},
               "preset": None if a.rung == "sft" else a.preset, "set": a.sets, "seeds": a.seeds,
               "warmup_steps": a.warmup_steps, "hidden": a.hidden, "budget_steps": budget,
               "thresholds_on": "validation NDCG@5 (128 instances; the need rung: the lower of the two needs)",
               "final_on": "test NDCG@5, greedy, the whole test split (400 instances)",
               "summary": summary, "runs": runs, "wall_s": time.time() - t0}
    from flexrec_bench.foundation.secrets import redact

    write_json_atomic(a.json, redact(payload))  # a --set hub_token=... never reaches the file
    title = f"learnability, rung {a.rung}: {a.types} type(s), K={a.k}, slots {a.slots_seed if a.slots_seed is not None else 'classic'}"
    plot(runs, a.plot, title)
    print(markdown(summary))
    print(f"wrote {a.json} and {a.plot} in {time.time() - t0:.0f} s")
    return payload


def _preset_steps(a) -> int:
    from training.config import layered_config

    return int(layered_config(None, a.preset, {}, a.sets)[0].rl("max_steps"))


if __name__ == "__main__":
    main()
