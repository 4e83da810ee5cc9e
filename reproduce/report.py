"""A grid's table: the mean over seeds with its interval, the paired test against the base model, the
paper's numbers beside ours, the learning curves, and the markdown and PNG forms (docs/reproduce.md)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .cells import HEADERS, PAPER_DATASET
from .config import ReproduceConfig

def t_interval(values: list[float]) -> tuple[float, list[float] | None]:
    """Mean and t 95% interval over seeds' values (None for one value)."""
    from scipy import stats

    mu = sum(values) / len(values)
    if len(values) < 2:
        return mu, None
    sd = math.sqrt(sum((x - mu) ** 2 for x in values) / (len(values) - 1))
    h = float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))
    return mu, [mu - h, mu + h]


def over_seeds(results: list[dict], metrics: tuple[str, ...]) -> dict:
    """Mean over the seeds' runs with a 95% interval: t over the seeds' means (several seeds) or
    the run's own bootstrap interval (one)."""
    out: dict[str, Any] = {"seeds": len(results)}
    for block in ("metrics", "metrics_over_all"):
        agg = {}
        for m in metrics:
            means = [r[block][m]["mean"] for r in results if r[block][m]["mean"] is not None]
            if not means:
                agg[m] = {"mean": None, "ci95": None, "per_seed": []}
                continue
            mu, ci = t_interval(means)
            if ci is None:
                ci = results[0][block][m]["ci95"]
            agg[m] = {"mean": mu, "ci95": ci, "per_seed": means}
        out[block] = agg
    return out


def compare_with_base(rows: list[dict], cfg: ReproduceConfig) -> None:
    """Each trained row against the base model (its step-0 policy), on the same test instances: a
    paired Wilcoxon test per seed on NDCG@5 and @10, pooled over seeds with Fisher's method."""
    from scipy import stats

    from flexrec_bench.scoring.compare import compare_runs

    base = next((r for r in rows if r["base"] and r["runs"]), None)
    if base is None:
        return
    for row in rows:
        if row["base"] or not row["runs"] or row["train_needs"] is None:
            continue
        row["vs_base"] = {}
        for need in cfg.test_needs:
            per_metric: dict[str, dict] = {}
            for run in row["runs"]:
                pair = compare_runs([base["runs"][0]["results"][need]["path"], run["results"][need]["path"]],
                                    cfg.data, ("ndcg@5", "ndcg@10"), "wilcoxon", bootstrap=0)[0]
                for mc in pair.metrics:
                    d = per_metric.setdefault(mc.metric, {"diff": [], "p": []})
                    d["diff"].append(mc.diff)
                    d["p"].append(mc.p)
            for m, d in per_metric.items():
                ps = [p for p in d["p"] if p is not None]
                pooled = float(stats.combine_pvalues([max(p, 1e-300) for p in ps], method="fisher").pvalue) \
                    if len(ps) > 1 else (ps[0] if ps else None)
                diffs = [x for x in d["diff"] if x is not None]  # None: the metric is defined on no shared instance
                d.update(mean_diff=sum(diffs) / len(diffs) if diffs else None, p_fisher=pooled)
            row["vs_base"][need] = per_metric


def paper_dataset(cfg: ReproduceConfig) -> str | None:
    """The paper's dataset whose numbers sit beside ours: Tables 7 and 8 and the figures name none
    (or none was transcribed); Table 9 is KuaiRec's dense setting; another dataset has no column."""
    kind, n = cfg.kind
    if kind == "figure" or n in (7, 8):
        return ""
    if n == 9:
        return "KuaiRec-dense" if cfg.dataset == "kuairec" else None
    return PAPER_DATASET.get(cfg.dataset)


def paper_numbers(reported: list[dict], cfg: ReproduceConfig, label: str) -> dict[str, float]:
    """The paper's values for a row, from paper_results.json (their one home)."""
    kind, n = cfg.kind
    ds = paper_dataset(cfg)
    if kind == "figure" or ds is None:
        return {}
    src = f"Pan et al. (FlexRec), Table {n}"
    return {r["metric"]: r["value"] for r in reported
            if r["source"] == src and r["method"] == label and r["dataset"] == ds}


#: the validation measures read from train_log.jsonl: NDCG, the complete answers and the share
#: of answers that repeat the presented order (a model that echoes the prompt ranks nothing)
CURVES = ("ndcg@5", "ndcg@10", "format_ok", "echo")
_CURVE_NAME = {"ndcg@5": "validation N@5", "ndcg@10": "validation N@10", "format_ok": "complete answers (share)",
               "echo": "echo of the presented order (share)"}


def learning_curves(logs: list[str], need: str) -> dict:
    """Validation NDCG@5/@10, format_ok and the echo share by step from each seed's train_log.jsonl:
    mean and range over seeds (a measure missing from a log is left out)."""
    import json

    per_seed = []
    for log in logs:
        pts: dict[int, dict] = {}
        p = Path(log)
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            r = json.loads(line)
            if r.get("kind") == "eval":
                pts[int(r["step"])] = {m: r.get(f"val/{need}/{m}") for m in CURVES}
        per_seed.append(pts)
    steps = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    out = {"steps": steps}
    for m in CURVES:
        vals = [[s[t][m] for s in per_seed] for t in steps]
        if any(v is None for vs in vals for v in vs):  # logs written before a measure was logged
            continue
        out[m] = {"mean": [sum(v) / len(v) for v in vals], "min": [min(v) for v in vals],
                  "max": [max(v) for v in vals]}
    return out


def _fmt(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "—"
    ci = m.get("ci95")
    return f"{m['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m['mean']:.3f}"


def _p(p: float | None) -> str:
    return "" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def row_name(label: str, model: str) -> str:
    """A row as the page shows it: the paper's rows name its model (Qwen2.5-3B-Instruct); run with
    another --model, the row names the model run and keeps the paper's row in brackets (the paper's
    numbers beside it are that row's)."""
    if "Qwen2.5-3B" not in label or "qwen2.5-3b" in model.lower():
        return label
    name = Path(model.partition(":")[2] if model.startswith(("hf:", "openai:")) else model).name or model
    return f"{re.sub(r'Qwen2[.]5-3B(-Instruct)?', name, label)} (paper: {label})"


def markdown(table: dict) -> str:
    """The table in the paper's layout: per row and metric, ours (mean over seeds, 95% CI), the
    paper-comparable mean over all instances, then the paper's value; trained rows also say how
    they differ from the base model."""
    metrics = table["metrics"]
    pd = table["paper_dataset"]
    title = ("Table" if table["kind"] == "table" else "Figure") + f" {table['number']}"
    paper_note = ("the paper's numbers (Tables 7 and 8 name no dataset)" if pd == "" and table["kind"] == "table" else
                  "no paper column (the figure's values are not in the text)" if table["kind"] == "figure" else
                  f"the paper's {pd} numbers" if pd else
                  f"no paper column: the paper reports no {table['dataset']} numbers in {title}")
    lines = [f"# {title} reproduced: {table['dataset']}, trained on {table['train_need']}, tested on "
             f"{', '.join(table['test_needs'])}; base model {table['model']}", "",
             f"Ours: mean [95% CI] over the instances where a metric is defined; with {table['seeds']} seed(s) per "
             f"trained row, the mean over seeds and a t interval over the seeds' means (one seed: the bootstrap "
             f"interval over instances). 'all': over all instances with undefined ones scored 0, the convention the "
             f"paper's tables appear to use (docs/metrics.md); beside them, {paper_note}. 'vs base': the mean "
             f"difference in NDCG@5 from the base model (its step-0 policy) on the same instances, and the paired "
             f"Wilcoxon p-value (Fisher-pooled over seeds). 'echo': the share of LLM rankings that repeat the "
             f"presented order (C1, C2, ...), mean over seeds."
             + (" Miniature run (the CPU smoke preset): the numbers only show that every cell runs."
                if table["miniature"] else "")]
    from flexrec_bench.foundation.secrets import redact

    if table.get("rows_selected"):
        lines += ["", f"Rows run: `--rows {table['rows_selected']}` (the base model runs with any trained row)."]
    for key, flag in (("sets", "--set"), ("options", "-o")):
        if table.get(key):
            lines += ["", f"`{flag}` for every {'trained' if key == 'sets' else 'LLM'} cell: "
                      + ", ".join(f"`{k}={v}`" for k, v in sorted(redact(table[key]).items()))]
    for need in table["test_needs"]:
        lines += ["", f"## test need: {need}", "",
                  "| Row | " + " | ".join(f"{HEADERS[m]} ours | {HEADERS[m]} all | {HEADERS[m]} paper" for m in metrics)
                  + " | vs base (N@5) | echo |", "|---|" + "---|---|---|" * len(metrics) + "---|---|"]
        for row in table["rows"]:
            cells = []
            got = row["needs"].get(need)
            for m in metrics:
                ours = "not run" if row["missing"] else _fmt(got["metrics"][m]) if got else "—"
                over_all = _fmt(got["metrics_over_all"][m]) if got else ""
                paper = row["paper"].get(m) if len(table["test_needs"]) == 1 else None
                cells.append(f"{ours} | {over_all} | {'' if paper is None else f'{paper:.3f}'}")
            vs = (row.get("vs_base") or {}).get(need, {}).get("ndcg@5")
            vs_text = f"{vs['mean_diff']:+.3f} (p {_p(vs['p_fisher'])})" if vs and vs["mean_diff"] is not None else ""
            echoes = [r["results"][need].get("echo_share") for r in row.get("runs", []) if need in r["results"]]
            echoes = [e for e in echoes if e is not None]
            echo = f"{sum(echoes) / len(echoes):.2f}" if echoes else ""
            lines.append(f"| {row_name(row['label'], table['model'])} | " + " | ".join(cells) + f" | {vs_text} | {echo} |")
    missing = [r for r in table["rows"] if r["missing"]]
    if missing:
        lines += ["", "Not run here:"] + [f"- {row_name(r['label'], table['model'])}: {r['missing']}" for r in missing]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> None:
    """Tables: grouped bars of our paper-comparable means with 95% whiskers and the paper's values as
    black ticks. Figures 3 and 4: the learning curves (validation NDCG@5 and NDCG@10 by step, the
    band spanning the seeds). Figure 2: bars per need for the joint and the single-need models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.get("curves"):
        shown = [m for m in CURVES if any(m in c for c in table["curves"].values())]
        fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4), squeeze=False)
        for ax, m in zip(axes[0], shown):
            for label, c in table["curves"].items():
                if not c["steps"] or m not in c:
                    continue
                ax.plot(c["steps"], c[m]["mean"], label=label)
                ax.fill_between(c["steps"], c[m]["min"], c[m]["max"], alpha=0.15)
            ax.set_xlabel("step")
            ax.set_ylabel(_CURVE_NAME[m])
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"Figure {table['number']} ({table['dataset']}, {table['seeds']} seed(s); band: range over seeds)")
    else:
        needs = table["test_needs"]
        metric = table["metrics"][0] if table["kind"] == "figure" else None
        rows = table["rows"]
        groups = [(need, m) for need in needs for m in ([metric] if metric else table["metrics"])]
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups)), 4))
        width = 0.8 / max(1, len(rows))
        for j, row in enumerate(rows):
            xs, ys, err = [], [], [[], []]
            for i, (need, m) in enumerate(groups):
                v = ((row["needs"].get(need) or {}).get("metrics_over_all") or {}).get(m) or {}
                if v.get("mean") is None:
                    continue
                ci = v.get("ci95") or (v["mean"], v["mean"])
                xs.append(i + (j - len(rows) / 2 + 0.5) * width)
                ys.append(v["mean"])
                err[0].append(max(0.0, v["mean"] - ci[0]))
                err[1].append(max(0.0, ci[1] - v["mean"]))
            ax.bar(xs, ys, width, yerr=err, capsize=2,
                   label=row_name(row["label"], table["model"]) + (" (not run)" if row["missing"] else ""))
            if len(needs) == 1:
                px = [i + (j - len(rows) / 2 + 0.5) * width for i, (_, m) in enumerate(groups) if m in row["paper"]]
                py = [row["paper"][m] for _, m in groups if m in row["paper"]]
                ax.scatter(px, py, marker="_", s=120, color="black", zorder=3)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{need}\n{HEADERS[m]}" if len(needs) > 1 else HEADERS[m] for need, m in groups], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("over all instances (the paper's convention)")
        ax.set_title(f"{'Table' if table['kind'] == 'table' else 'Figure'} {table['number']}: {table['dataset']}"
                     + (" (miniature)" if table["miniature"] else "") + "; black ticks: the paper")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
