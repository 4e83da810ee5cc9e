"""Learning curves of SFT runs (``train-baseline tallrec`` / ``sft_train``) from the log each run
writes to ``<out>/sft_config.json``: training loss and token accuracy per logged step, one line per run.

    python benchmarks/sft_curve.py RUN_DIR[=label] [RUN_DIR[=label] ...] [--png benchmarks/figures/x.png]

Prints one line per run (first and last logged loss and accuracy) and writes the PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_log(run: Path) -> list[dict]:
    """The logged training rows (those with a loss) of one run, in step order."""
    path = run / "sft_config.json"
    if not path.exists():
        raise SystemExit(f"{path}: not found; give the --out folder of a finished SFT run")
    rows = [r for r in json.loads(path.read_text()).get("log", []) if "loss" in r and "step" in r]
    if not rows:
        raise SystemExit(f"{path}: the log holds no training loss (was logging_steps above max_steps?)")
    return sorted(rows, key=lambda r: r["step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="SFT output folders, each optionally =label")
    ap.add_argument("--png", default="benchmarks/figures/sft_curve.png")
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for spec in a.runs:
        folder, _, label = spec.partition("=")
        rows = read_log(Path(folder))
        label = label or Path(folder).name
        steps = [r["step"] for r in rows]
        ax_loss.plot(steps, [r["loss"] for r in rows], marker=".", label=label)
        acc = [r.get("mean_token_accuracy") for r in rows]
        acc = acc if all(isinstance(x, (int, float)) for x in acc) else [None]  # absent or not a number: loss only
        if acc[-1] is not None:
            ax_acc.plot(steps, acc, marker=".", label=label)
        first, last = rows[0], rows[-1]
        print(f"{label}: step {first['step']} loss {first['loss']:.3f} -> step {last['step']} loss {last['loss']:.3f}"
              + (f"; token accuracy {acc[0]:.3f} -> {acc[-1]:.3f}" if acc[-1] is not None else ""))
    ax_loss.set(xlabel="step", ylabel="training loss (completion tokens)", title="SFT loss")
    ax_acc.set(xlabel="step", ylabel="mean token accuracy", title="SFT token accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(a.png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
