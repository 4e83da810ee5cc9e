"""Issue-5 table and leaderboard seed: random, popularity, STAR, BERT4Rec and oracle on
MovieLens-100K (interest, niche, trend), test split, with 95% CIs and wall times.

    python benchmarks/run_baselines.py [--data data] [--results results] [--submit]

Builds the offline default if needed, trains BERT4Rec (RecBole, settings below) unless a checkpoint
is given, evaluates every model with `flexrec-bench eval`'s code path, prints a Markdown table, and
with --submit adds every results file to leaderboard/leaderboard.json (re-scored, --replace).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _util import save

#: BERT4Rec for the table: RecBole's default architecture with a shorter history and 5 epochs so it
#: trains on 2 CPU cores in minutes (the paper's setting is the same model trained to convergence).
BERT4REC_TABLE = {"epochs": 5, "MAX_ITEM_LIST_LENGTH": 20, "stopping_step": 3}
NEEDS = ("interest", "niche", "trend")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data")
    ap.add_argument("--results", default="results")
    ap.add_argument("--bert4rec", default=None, help="existing checkpoint dir (skips training)")
    ap.add_argument("--submit", action="store_true")
    ap.add_argument("--leaderboard", default="leaderboard/leaderboard.json")
    a = ap.parse_args()
    from baselines.bert4rec.runner import Bert4RecSettings, train_bert4rec
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build
    from flexrec_bench.scoring.eval_config import EvalConfig
    from flexrec_bench.scoring.evaluator import run_eval

    if not (Path(a.data) / "ml-100k" / "manifest.json").exists():
        build(BuildConfig(out=a.data), progress=False)
    ck = a.bert4rec
    train_s = None
    if ck is None:
        t0 = time.time()
        ck = str(train_bert4rec(a.data, "ml-100k", Path("checkpoints") / "bert4rec-ml-100k",
                                Bert4RecSettings(overrides=BERT4REC_TABLE)))
        train_s = time.time() - t0
        print(f"BERT4Rec trained in {train_s:.0f}s -> {ck}")
    models = ["random", "popularity", "star", f"bert4rec:{ck}", "oracle"]
    rows, paths = [], []
    for need in NEEDS:
        for m in models:
            res, rep, path = run_eval(EvalConfig(model=m, data=a.data, need=need, out=a.results), progress=False)
            paths.append(path)
            rows.append({"need": need, "model": m.split(":")[0], "wall_s": res.provenance.wall_seconds,
                         "n": {k: v.n for k, v in rep.metrics.items()},
                         **{k: {"mean": v.mean, "ci95": list(v.ci95)} for k, v in rep.metrics.items()},
                         "over_all": {k: {"mean": v.mean, "ci95": list(v.ci95)}
                                      for k, v in rep.metrics_over_all.items()}})
            print(f"{need:9s} {m.split(':')[0]:10s} ndcg@10 {rep.metrics['ndcg@10'].mean:.4f} "
                  f"({res.provenance.wall_seconds:.1f}s)")
    md = ["| need | model | NDCG@5 | NDCG@10 | NDCG@30 | Recall@5 | MRR@5 | wall s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def cell(k: str, r: dict = r) -> str:
            return f"{r[k]['mean']:.3f} [{r[k]['ci95'][0]:.3f}, {r[k]['ci95'][1]:.3f}]"

        md.append(f"| {r['need']} | {r['model']} | {cell('ndcg@5')} | {cell('ndcg@10')} | {cell('ndcg@30')} | "
                  f"{cell('recall@5')} | {cell('mrr@5')} | {r['wall_s']:.1f} |")
    md += ["", "Over all instances, undefined = 0 (the paper's convention):", "",
           "| need | model | NDCG@5 | NDCG@10 | NDCG@30 | Recall@5 | P@5 | MRR@5 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['need']} | {r['model']} | " + " | ".join(
            f"{r['over_all'][k]['mean']:.3f}" for k in ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "precision@5",
                                                       "mrr@5")) + " |")
    print("\n".join(md))
    save("baselines_ml100k", {"rows": rows, "bert4rec_overrides": BERT4REC_TABLE, "bert4rec_train_s": train_s})
    (Path(__file__).parent / "out" / "baselines_ml100k.md").write_text("\n".join(md) + "\n")
    plot(rows, Path(__file__).parent / "figures" / "baselines_ml100k.png")
    if a.submit:
        from leaderboard.submit import submit

        for p in paths:
            entry, _ = submit(p, a.leaderboard, a.data, replace=True)
            print(f"submitted {entry.results.model.name} {entry.results.dataset.need}")


def plot(rows: list[dict], path: Path, metric: str = "ndcg@10") -> Path:
    """Grouped bars of one metric per need and model, with the 95% CI as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    needs = list(dict.fromkeys(r["need"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    w = 0.8 / len(models)
    for j, m in enumerate(models):
        sel = [next(r for r in rows if r["need"] == n and r["model"] == m) for n in needs]
        mean = np.array([r[metric]["mean"] for r in sel])
        err = np.array([[r[metric]["mean"] - r[metric]["ci95"][0], r[metric]["ci95"][1] - r[metric]["mean"]]
                        for r in sel]).T
        ax.bar(np.arange(len(needs)) + (j - (len(models) - 1) / 2) * w, mean, w, yerr=err, capsize=2, label=m)
    ax.set_xticks(range(len(needs)), needs)
    ax.set_ylabel(f"{metric} (test, 95% CI)")
    ax.set_title("MovieLens-100K baselines")
    ax.legend(fontsize=8, ncol=len(models), loc="lower center", bbox_to_anchor=(0.5, -0.32))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
