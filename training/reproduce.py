"""``flexrec-bench reproduce --table 1|7|8``: run the grid of one of the paper's tables for a given
model, dataset and step budget, evaluate every cell with the one evaluator, and write the table in
the paper's layout (markdown and PNG) with 95% CIs and the paper's numbers beside ours.

Each cell is a training run (``training/configs/<algo>.yaml`` plus the cell's axis values plus the
user's ``--set``) or an evaluation-only ranker; cells that cannot run here say why (PPO needs the
verl backend; GPT-4o needs an OpenAI model and key). Finished cells are reused on a re-run (a cell
is done when its results.json exists), so an interrupted grid resumes where it stopped.

``--miniature`` trains every cell with the smoke preset (training/configs/presets/smoke.yaml) for 2
steps, with a 1-epoch critic and a tiny BERT4Rec; without it the budget is the configs' (the real
run, on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexrec_bench.errors import FlexRecError
from flexrec_bench.io import write_json_atomic, write_text_atomic

TABLE_METRICS = {1: ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "mrr@5"),
                 7: ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "mrr@5"),
                 8: ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "mrr@5")}
_HEAD = {"ndcg@5": "N@5", "ndcg@10": "N@10", "ndcg@30": "N@30", "recall@5": "R@5", "precision@5": "P@5",
         "mrr@5": "MRR@5"}
#: the paper's dataset names, for looking its numbers up
PAPER_DATASET = {"kuairec": "KuaiRec", "ml-1m": "MovieLens-1M", "esci": "ESCI"}
PPO_MISSING = "PPO runs on the verl backend only (GPUs; TRL 1.x has no PPO trainer)"
#: --miniature trains each cell with the smoke preset for this many steps (which also caps validation)
MINIATURE_STEPS = 2


@dataclass
class Cell:
    """One row of a table: how to get a ranker for it."""

    label: str                                  #: the row as the paper prints it
    algo: str | None = None                     #: a training run of this algorithm...
    sets: dict[str, Any] = field(default_factory=dict)
    ranker: str | None = None                   #: ...or an evaluation-only ranker ("star", "hf:<model>", ...)
    baseline: str | None = None                 #: ...or a baseline to train first (bert4rec, tallrec)
    missing: str | None = None                  #: why it cannot run here


@dataclass
class ReproduceConfig:
    table: int                                  #: 1, 7 or 8
    model: str                                  #: the policy's base model (Hugging Face name or local path)
    dataset: str = "ml-100k"
    data: str = "data"
    out: str = "benchmarks/out/reproduce"
    need: str = "interest"
    steps: int | None = None                    #: RL steps per training cell (default: the configs')
    test_limit: int | None = None               #: first N test instances (default: all)
    bootstrap: int = 1000
    seed: int = 0
    critic: str | None = None                   #: a trained critic (Table 8; else one is trained here)
    openai_model: str | None = None             #: Table 1's GPT-4o row (an OpenAI-compatible model)
    backend: str = "local"
    miniature: bool = False
    sets: dict[str, str] = field(default_factory=dict)  #: extra training options for every cell


def cells(table: int, cfg: ReproduceConfig) -> list[Cell]:
    if table == 7:
        out = []
        for est in ("GRPO", "PPO"):
            for variant, label in (("independent", "Independent contribution"),
                                   ("noncausal_swap", "Swap-based contribution (non-causal)"),
                                   ("causal_swap", "CausalSwap reward (ours)")):
                missing = PPO_MISSING if est == "PPO" and cfg.backend == "local" else None
                out.append(Cell(f"{est} / {label}", "flexrec", {"item_reward": variant, "estimator": est.lower()},
                                missing=missing))
        return out
    if table == 8:
        return [Cell("User-KNN CF", "flexrec", {"reward_signal": "user_knn"}),
                Cell("Item-KNN CF", "flexrec", {"reward_signal": "item_knn"}),
                Cell("Raw critic", "flexrec", {"reward_signal": "critic", "uncertainty": False}),
                Cell("FlexRec: Uncertainty-aware Critic", "flexrec", {"reward_signal": "critic", "uncertainty": True})]
    if table == 1:
        gpt = (Cell("GPT-4o", ranker=f"openai:{cfg.openai_model}") if cfg.openai_model else
               Cell("GPT-4o", missing="needs --openai-model (an OpenAI-compatible endpoint and key)"))
        return [Cell("BERT4Rec", baseline="bert4rec"), Cell("STAR", ranker="star"), gpt,
                Cell("Qwen2.5-3B-Instruct", ranker=f"hf:{cfg.model}"),
                Cell("Qwen2.5-3B-Instruct + TALLRec", baseline="tallrec"),
                Cell("Qwen2.5-3B-Instruct + Rec-R1", "rec-r1"), Cell("Qwen2.5-3B-Instruct + Rank-GRPO", "rank-grpo"),
                Cell("Qwen2.5-3B-Instruct + FlexRec", "flexrec")]
    raise FlexRecError(f"--table {table}: the grid of Table 1, 7 or 8 can be run (see docs/reproduce.md)")


def _slug(label: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _train_cell(cell: Cell, cfg: ReproduceConfig, run_dir: Path, critic: str | None, progress: bool) -> Path:
    from .config import algo_config, layered_config
    from .local import train_local

    final = run_dir / "final"
    if (final / "config.json").exists():
        return final  # done in an earlier run
    path = algo_config(cell.algo)
    sets = {**cell.sets, **cfg.sets}
    if sets.get("reward_signal") == "critic":
        sets["critic"] = critic
    steps = cfg.steps if cfg.steps is not None else (MINIATURE_STEPS if cfg.miniature else None)
    overrides = {"model": cfg.model, "dataset": cfg.dataset, "data": cfg.data, "needs": cfg.need,
                 "output_dir": str(run_dir), "max_steps": steps}
    train_cfg, _ = layered_config(path, "smoke" if cfg.miniature else None, overrides,
                                  {k: v for k, v in sets.items() if v is not None})
    return train_local(train_cfg, progress=progress)


def _critic(cfg: ReproduceConfig, out: Path, progress: bool) -> str:
    if cfg.critic:
        return cfg.critic
    from .critic import CriticConfig, train_critic

    dest = out / "critic"
    if not (dest / "critic.pt").exists():
        ccfg = CriticConfig(epochs=1, max_pairs=500, seed=cfg.seed) if cfg.miniature else CriticConfig(seed=cfg.seed)
        train_critic(cfg.data, cfg.dataset, ccfg, dest, progress=progress)
    return str(dest)


#: trains a baseline for a cell and returns the ranker to evaluate: (name, cfg, run_dir, progress) -> "bert4rec:<dir>"
BaselineTrainer = Callable[[str, ReproduceConfig, Path, bool], str]


def run_grid(cfg: ReproduceConfig, reported: list[dict] | None = None, train_baseline: BaselineTrainer | None = None,
             progress: bool = True) -> dict:
    """Run (or resume) every cell of the table; return and write the table's cells. ``reported``
    are the paper's numbers (the leaderboard's reported_in_paper rows); ``train_baseline`` trains
    Table 1's BERT4Rec and TALLRec (baselines.grid.train_for_grid). The CLI passes both, so this
    module imports neither the baselines nor the leaderboard."""
    from flexrec_bench.evaluator import EvalConfig, run_eval

    if cfg.backend != "local":
        raise FlexRecError("reproduce runs the local backend; on verl, train each cell with `flexrec-bench train "
                           "--backend verl` and evaluate its exported checkpoint with `flexrec-bench eval`")
    out = Path(cfg.out) / f"table{cfg.table}"
    out.mkdir(parents=True, exist_ok=True)
    grid = cells(cfg.table, cfg)
    critic = _critic(cfg, out, progress) if any(c.sets.get("reward_signal") == "critic" for c in grid if not c.missing) else None
    metrics = TABLE_METRICS[cfg.table]
    rows = []
    for cell in grid:
        row: dict[str, Any] = {"label": cell.label, "axes": cell.sets, "metrics": {}, "missing": cell.missing}
        if cell.missing is None:
            run_dir = out / "runs" / _slug(cell.label)
            if cell.algo:
                model = f"hf:{_train_cell(cell, cfg, run_dir, critic, progress)}"
            elif cell.baseline:
                if train_baseline is None:
                    raise FlexRecError(f"{cell.label}: no baseline trainer given (run through `flexrec-bench reproduce`)")
                model = train_baseline(cell.baseline, cfg, run_dir, progress)
            else:
                model = cell.ranker
            res, _, path = run_eval(EvalConfig(model=model, dataset=cfg.dataset, need=cfg.need, data=cfg.data,
                                               out=str(out / "results"), limit=cfg.test_limit, bootstrap=cfg.bootstrap,
                                               seed=cfg.seed, metrics=metrics,
                                               options={"max_new_tokens": "16"} if cfg.miniature and
                                               model.startswith("hf:") else {}), progress=progress)
            row.update(model=model, results=str(path), instances=res.dataset.instances,
                       fingerprint=res.dataset.fingerprint,
                       metrics={m: res.metrics[m].model_dump() for m in metrics},
                       metrics_over_all={m: res.metrics_over_all[m].model_dump() for m in metrics
                                         if m in res.metrics_over_all})
        row["paper"] = paper_numbers(reported or [], cfg.table, cell.label, cfg.dataset, cfg.need)
        rows.append(row)
    table = {"table": cfg.table, "model": cfg.model, "dataset": cfg.dataset, "need": cfg.need,
             "miniature": cfg.miniature, "steps": cfg.steps, "metrics": list(metrics), "rows": rows,
             "paper_dataset": _paper_dataset(cfg.table, cfg.dataset)}
    write_json_atomic(out / f"table{cfg.table}.json", table)
    write_text_atomic(out / f"table{cfg.table}.md", markdown(table))
    plot(table, out / f"table{cfg.table}.png")
    return table


def _paper_dataset(table: int, dataset: str) -> str | None:
    """The paper's dataset whose numbers sit beside ours: Tables 7 and 8 name none; Table 1's
    columns are KuaiRec and MovieLens-1M, so another dataset has no paper column."""
    return "" if table in (7, 8) else PAPER_DATASET.get(dataset)


def paper_numbers(reported: list[dict], table: int, label: str, dataset: str, need: str) -> dict[str, float]:
    """The paper's values for a row, from the leaderboard's reported_in_paper rows (their one home)."""
    ds = _paper_dataset(table, dataset)
    if ds is None:
        return {}
    src = f"Pan et al. (FlexRec), Table {table}"
    return {r["metric"]: r["value"] for r in reported
            if r["source"] == src and r["method"] == label and r["dataset"] == ds and (table in (7, 8) or r["need"] == need)}


def _fmt(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "—"
    ci = m.get("ci95")
    return f"{m['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m['mean']:.3f}"


def markdown(table: dict) -> str:
    """The table in the paper's layout: one row per cell, each metric ours (defined instances, 95%
    CI), then over all instances with undefined = 0 (the paper-comparable convention), then the
    paper's value."""
    metrics = table["metrics"]
    pd = table["paper_dataset"]
    paper_note = ("the paper's numbers (its Tables 7 and 8 name no dataset)" if pd == "" else
                  f"the paper's {pd} numbers" if pd else
                  f"no paper column: the paper reports no {table['dataset']} numbers in Table {table['table']}")
    head = ["| Row | " + " | ".join(f"{_HEAD[m]} ours | {_HEAD[m]} all | {_HEAD[m]} paper" for m in metrics) + " |",
            "|---|" + "---|---|---|" * len(metrics)]
    lines = [f"# Table {table['table']} reproduced: {table['dataset']} / {table['need']}, base model {table['model']}",
             "", f"Ours: mean [95% bootstrap CI] over the instances where a metric is defined; 'all': over all "
                 f"instances with undefined ones scored 0, the convention the paper's tables appear to use "
                 f"(docs/metrics.md); beside them, {paper_note}."
             + (" Rows keep the paper's labels; in Table 1, 'Qwen2.5-3B-Instruct' stands for the base model above."
                if table["table"] == 1 else "")
             + (" Miniature run (CPU smoke preset): the numbers only show that every cell runs." if table["miniature"]
                else ""), "", *head]
    for row in table["rows"]:
        cells = []
        for m in metrics:
            ours = "not run" if row["missing"] else _fmt(row["metrics"].get(m))
            over_all = "" if row["missing"] else _fmt((row.get("metrics_over_all") or {}).get(m))
            paper = row["paper"].get(m)
            cells.append(f"{ours} | {over_all} | {'' if paper is None else f'{paper:.3f}'}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    missing = [r for r in table["rows"] if r["missing"]]
    if missing:
        lines += ["", "Not run here:"] + [f"- {r['label']}: {r['missing']}" for r in missing]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> None:
    """Grouped bars of our paper-comparable means (over all instances, undefined = 0) with 95% CI
    whiskers, the paper's values as black ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, rows = table["metrics"], table["rows"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        xs, ys, err = [], [], [[], []]
        for i, row in enumerate(rows):
            v = (row.get("metrics_over_all") or {}).get(m) or {}
            if v.get("mean") is None:
                continue
            ci = v.get("ci95") or (v["mean"], v["mean"])
            xs.append(i + (j - len(metrics) / 2 + 0.5) * width)
            ys.append(v["mean"])
            err[0].append(v["mean"] - ci[0])
            err[1].append(ci[1] - v["mean"])
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=_HEAD[m])
        px = [i + (j - len(metrics) / 2 + 0.5) * width for i, row in enumerate(rows) if m in row["paper"]]
        py = [row["paper"][m] for row in rows if m in row["paper"]]
        ax.scatter(px, py, marker="_", s=120, color="black", zorder=3, label="paper" if j == 0 and px else None)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] + (" (not run)" if r["missing"] else "") for r in rows], rotation=20, ha="right",
                       fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"Table {table['table']}: {table['dataset']} / {table['need']}"
                 + (" (miniature)" if table["miniature"] else ""))
    ax.legend(fontsize=7, ncol=len(metrics) + 1)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
