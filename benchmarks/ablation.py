"""Miniature reproduction of the paper's reward ablation on CPU: sequence-level vs independent vs
non-causal swap vs causal swap item rewards, 3 seeds each, with a tiny Qwen2 model first taught the
answer format by SFT. Reports validation NDCG@5 curves (PNG) and a table, whatever they show.

    python benchmarks/ablation.py [--steps 20] [--seeds 0,1,2] [--out benchmarks/out/ablation]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

VARIANTS = ("sequence", "independent", "noncausal_swap", "causal_swap")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--need", default="interest")
    ap.add_argument("--out", default="benchmarks/out/ablation")
    a = ap.parse_args()
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.ranking.tiny import build_tiny_model
    from training.config import from_dict
    from training.local import train_local
    from training.sft import SFTSettings, sft_train

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    t0 = time.time()
    if not (data / "ml-100k" / "manifest.json").exists():
        build(BuildConfig(out=str(data), candidates=10, history=5, train_size=400, val_size=64, test_size=64),
              progress=False)
    base = build_tiny_model(out / "tiny", hidden_size=128, layers=2)
    train = load_split(data, "ml-100k", a.need, "train")
    warm = out / "sft" / "final"
    if not warm.exists():
        warm = sft_train(str(base), [train], out / "sft", SFTSettings(max_steps=a.sft_steps, lora=False,
                                                                     learning_rate=3e-3, per_device_train_batch_size=8),
                         progress=False)
    print(f"data + SFT warm-up: {time.time() - t0:.0f}s")
    curves: dict[str, list[list[tuple[int, float]]]] = {v: [] for v in VARIANTS}
    for variant in VARIANTS:
        for seed in [int(s) for s in a.seeds.split(",")]:
            run = out / f"{variant}-s{seed}"
            t1 = time.time()
            train_local(from_dict(dict(algo="flexrec", item_reward=variant, model=str(warm), data=str(data),
                                    needs=(a.need,), output_dir=str(run), max_steps=a.steps, num_generations=4,
                                    per_device_train_batch_size=8, learning_rate=5e-5, eval_steps=5, eval_limit=64,
                                    max_completion_length=64, seed=seed, beta=0.001, entropy_coef=0.001,
                                    save_final=False)), progress=False)
            rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
            pts = [(r["step"], r[f"val/{a.need}/ndcg@5"]) for r in rows if r["kind"] == "eval"]
            curves[variant].append(pts)
            print(f"{variant} seed {seed}: {time.time() - t1:.0f}s, val NDCG@5 {pts[0][1]:.4f} -> {pts[-1][1]:.4f}")
    table = {}
    for v, runs in curves.items():
        first = np.array([r[0][1] for r in runs])
        last = np.array([r[-1][1] for r in runs])
        table[v] = {"first_mean": float(first.mean()), "final_mean": float(last.mean()), "final_std": float(last.std()),
                    "delta_mean": float((last - first).mean())}
    (out / "ablation.json").write_text(json.dumps({"curves": curves, "table": table, "args": vars(a)}, indent=2))
    _plot(curves, out / "ablation.png", a.need)
    print(f"{'variant':16s} {'NDCG@5 start':>12s} {'NDCG@5 end (mean ± sd)':>24s} {'change':>8s}")
    for v, t in table.items():
        print(f"{v:16s} {t['first_mean']:12.4f} {t['final_mean']:15.4f} ± {t['final_std']:.4f} {t['delta_mean']:+8.4f}")


def _plot(curves, path, need):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for v, runs in curves.items():
        steps = [p[0] for p in runs[0]]
        vals = np.array([[p[1] for p in r] for r in runs])
        ax.plot(steps, vals.mean(0), marker="o", label=v)
        ax.fill_between(steps, vals.min(0), vals.max(0), alpha=0.15)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(f"validation NDCG@5 ({need})")
    ax.set_title("Reward ablation, tiny Qwen2 on CPU (mean, min-max over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
