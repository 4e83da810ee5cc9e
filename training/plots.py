"""Learning curves from a training JSONL log, to PNG."""

from __future__ import annotations

import json
from pathlib import Path


def plot_training_log(log_path: str | Path, out_png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in rows if r.get("kind") == "eval"]
    panels = [("reward", "reward"), ("kl", "KL to reference"), ("entropy", "entropy"),
              ("flexrec/adv_weight_mean", "advantage weight (mean)")]
    panels = [(k, t) for k, t in panels if any(k in r for r in train)]
    val_keys = sorted({k for r in evals for k in r if k.startswith("val/") and "ndcg" in k})
    n = len(panels) + (1 if val_keys else 0)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(4 * max(n, 1), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        pts = [(r["step"], r[key]) for r in train if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(title)
        ax.set_xlabel("step")
    if val_keys:
        ax = axes[0][len(panels)]
        for key in val_keys:
            pts = [(r["step"], r[key]) for r in evals if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key[4:])
        ax.set_title("validation")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
