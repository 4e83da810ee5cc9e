"""``flexrec-bench leaderboard render --out site/``: one static page, no external resources.
A tab per dataset x need: a sortable table of the verified entries (95% CIs, beyond-accuracy
metrics, a significance marker against the best entry, provenance in a detail row), the paper's
reported rows for that dataset and need beside them (labelled, never ranked), and a bar chart.
Paper rows that name no dataset (the ablation tables) are listed apart.

The markup is the Jinja2 template ``templates/index.html.j2`` with autoescaping on: every string
that comes from a results file (model names, configs, provenance) is escaped by the template
engine, never by hand. This module only prepares the values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flexrec_bench.foundation.io import write_text_atomic

from .schema import PRIMARY_METRIC, Entry, Leaderboard, PaperResults, load_paper

METRICS = ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "precision@5", "mrr@5")
BEYOND = ("coverage@10", "novelty@10", "ild@10", "gini@10")
#: the paper's dataset names -> this project's (the tab a reported row joins)
PAPER_DATASETS = {"KuaiRec": "kuairec", "MovieLens-1M": "ml-1m", "ESCI": "esci", "KuaiRec-dense": "kuairec-dense"}
ALPHA = 0.05
CHART_METRICS = ("ndcg@5", "ndcg@10", "recall@5")
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")
TEMPLATES = Path(__file__).with_name("templates")


def _provenance(e: Entry) -> str:
    r = e.results
    p = r.provenance
    return (f"verified: build {r.dataset.fingerprint}, {r.dataset.instances} instances re-scored, rankings sha256 "
            f"{e.verification.rankings_sha256[:12]}…, bootstrap {r.bootstrap.samples} x seed {r.bootstrap.seed}, "
            f"{e.verification.submitted_at} by flexrec-bench {e.verification.flexrec_bench_version}. "
            f"As claimed by the submitter: model {r.model.id}"
            f"{f' (revision {r.model.revision})' if r.model.revision else ''}, flexrec-bench {p.flexrec_bench_version}, "
            f"{p.date}, {p.wall_seconds:.1f} s")


def _defined(v) -> bool:
    return v is not None and v.mean is not None and v.ci95 is not None


def significance(entries: list[Entry]) -> dict[int, str]:
    """A marker per entry against the best (highest mean PRIMARY_METRIC) of its tab: "best", "lower"
    (paired Wilcoxon on the per-instance values, Holm-corrected over the tab's entries, p < ALPHA),
    "tie" (not distinguishable), or "n/a" (no per-instance values stored)."""
    from flexrec_bench.scoring.compare import holm, paired_test

    def mean(e: Entry) -> float:
        v = e.results.metrics.get(PRIMARY_METRIC)
        return v.mean if v is not None and v.mean is not None else float("-inf")

    if not entries:
        return {}
    best = max(range(len(entries)), key=lambda i: mean(entries[i]))
    ref = entries[best].verification.per_instance.get(PRIMARY_METRIC)
    out, tested, ps = {best: "best"}, [], []
    for i, e in enumerate(entries):
        if i == best:
            continue
        cur = e.verification.per_instance.get(PRIMARY_METRIC)
        if not ref or not cur or len(cur) != len(ref):
            out[i] = "n/a"
            continue
        pairs = [(a, b) for a, b in zip(ref, cur) if a is not None and b is not None]
        a, b = (np.array(x, float) for x in zip(*pairs)) if pairs else (np.zeros(0), np.zeros(0))
        tested.append(i)
        ps.append(paired_test(b, a, "wilcoxon") if len(a) else 1.0)
    for i, p in zip(tested, holm(ps)):
        out[i] = "lower" if p is not None and p < ALPHA else "tie"
    return out


#: a label input -> the ``reads`` values through which a ranker sees it (topics are in the item texts)
SEEN_THROUGH = {"topics": ("text", "topics")}


def reads_label_inputs(reads: list[str] | None, label_inputs: list[str]) -> list[str]:
    """The label's inputs an entry reads (empty when it declares none of them, or declares nothing)."""
    got = set(reads or ())
    return [i for i in label_inputs if got & set(SEEN_THROUGH.get(i, (i,)))]


def _rows(entries: list[Entry], label_inputs: list[str] = ()) -> list[dict]:
    def sort_key(e: Entry) -> float:
        v = e.results.metrics.get(PRIMARY_METRIC) or next(iter(e.results.metrics.values()), None)
        return -(v.mean if v is not None and v.mean is not None else -1.0)

    entries = sorted(entries, key=sort_key)
    marks = significance(entries)
    rows = []
    for i, e in enumerate(entries):
        cells = []
        for m in METRICS:
            v = e.results.metrics.get(m)
            cells.append({"mean": v.mean, "lo": v.ci95[0], "hi": v.ci95[1]} if _defined(v) else None)
        p = e.results.parse
        parse = (f"; parse: {p.unparseable} unparseable, {p.invalid_ids} invalid ids, {p.duplicates} duplicates, "
                 f"{p.missing_items} padded; {p.echoed} of {p.instances} repeat the presented order, "
                 f"{p.first_shown_first} rank the first-shown candidate first") if p else ""
        if e.results.position_bias:
            from flexrec_bench.scoring.position_bias import format_probe

            parse += "; " + format_probe(e.results.position_bias)
        rows.append({"name": e.label(), "cells": cells, "provenance": _provenance(e), "parse": parse,
                     "echo": (f"echoes the prompt: {p.echoed} of {p.instances} rankings are the presented order"
                              if p is not None and p.warnings() else ""),
                     "config": json.dumps(e.results.model.config, sort_keys=True), "mark": marks.get(i, "n/a"),
                     "beyond": [e.results.beyond.get(m) for m in BEYOND],
                     "reads": ", ".join(e.results.model.reads) if e.results.model.reads is not None else "not declared",
                     "reads_label": reads_label_inputs(e.results.model.reads, list(label_inputs))})
    return rows


def _chart(entries: list[Entry]) -> dict:
    """Bar geometry (SVG user units) of the chart metrics per entry, with CI whiskers."""
    entries = sorted(entries, key=lambda e: e.results.model.name)
    n, m = len(entries), len(CHART_METRICS)
    bw, gap, h, left = 14, 18, 180, 40
    width = left + n * (m * bw + gap) + 160
    base = h + 10
    chart = {"width": width, "height": h + 70, "left": left, "right": width - 160, "base": base,
             "ticks": [{"value": t, "y": base - t * h} for t in (0, 0.25, 0.5, 0.75, 1.0)], "bars": [], "labels": [],
             "legend": [{"x": width - 140, "y": 14 + 18 * j, "color": COLORS[j], "metric": metric}
                        for j, metric in enumerate(CHART_METRICS)]}
    for i, e in enumerate(entries):
        x0 = left + gap / 2 + i * (m * bw + gap)
        for j, metric in enumerate(CHART_METRICS):
            v = e.results.metrics.get(metric)
            if not _defined(v):
                continue
            bh = max(0.0, v.mean) * h
            chart["bars"].append({"x": x0 + j * bw, "y": base - bh, "w": bw - 2, "h": bh, "color": COLORS[j],
                                  "cx": x0 + j * bw + (bw - 2) / 2, "lo": base - v.ci95[0] * h, "hi": base - v.ci95[1] * h,
                                  "title": f"{e.label()} {metric} {v.mean:.4f} [{v.ci95[0]:.3f}, {v.ci95[1]:.3f}]"})
        chart["labels"].append({"x": x0 + m * bw / 2, "y": h + 24, "text": e.label()[:28]})
    return chart


def reported_rows(paper: PaperResults) -> list[dict]:
    """The paper's numbers, one row per (table, method, dataset, need) with a value per metric."""
    rows: dict[tuple[str, str, str, str], dict] = {}
    for r in paper.reported_in_paper:
        row = rows.setdefault((r.source, r.method, r.dataset, r.need), {
            "source": r.source, "method": r.method, "dataset": r.dataset, "need": r.need, "values": {}})
        row["values"][r.metric] = r.value
    return list(rows.values())


def tabs(board: Leaderboard, paper_results: PaperResults) -> list[dict]:
    """One tab per dataset x need: its verified entries (per split) and the paper's rows for it."""
    groups: dict[tuple[str, str], dict[str, list[Entry]]] = {}
    for e in board.entries:
        d = e.results.dataset
        groups.setdefault((d.name, d.need), {}).setdefault(d.split, []).append(e)
    paper: dict[tuple[str, str], list[dict]] = {}
    for r in reported_rows(paper_results):
        if r["dataset"] in PAPER_DATASETS:
            paper.setdefault((PAPER_DATASETS[r["dataset"]], r["need"]), []).append(r)
    out = []
    for n, key in enumerate(sorted(set(groups) | set(paper))):
        sections = []
        for split, es in sorted(groups.get(key, {}).items()):
            fp = es[0].results.dataset.fingerprint
            reg = board.registered_builds.get(key[0])
            ref = reg.references.get(key[1]) if reg is not None and reg.fingerprint == fp and split == "test" else None
            sections.append({"id": f"t{n}-{split}", "split": split, "fingerprint": fp, "reference": ref,
                             "rows": _rows(es, ref.label_inputs if ref else []), "chart": _chart(es),
                             "primary_index": METRICS.index(PRIMARY_METRIC)})
        comparable = [{"method": e.label(), "split": e.results.dataset.split,
                       "values": {m: v.mean for m, v in e.results.metrics_over_all.items() if v.mean is not None}}
                      for split, es in sorted(groups.get(key, {}).items()) for e in es]
        out.append({"id": f"t{n}", "dataset": key[0], "need": key[1], "sections": sections,
                    "paper": paper.get(key, []), "comparable": comparable,
                    "n_entries": sum(len(s["rows"]) for s in sections)})
    return out


def render(board: Leaderboard, out_dir: str | Path, paper: PaperResults | None = None) -> Path:
    """Write the page; ``paper``: the reported numbers (default: leaderboard/paper_results.json)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    paper = paper if paper is not None else load_paper()
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("index.html.j2").render(
        css=(TEMPLATES / "page.css").read_text(encoding="utf-8"), js=(TEMPLATES / "page.js").read_text(encoding="utf-8"),
        n_entries=len(board.entries), metrics=METRICS, beyond=BEYOND, tabs=tabs(board, paper),
        primary=PRIMARY_METRIC, alpha=ALPHA,
        ablations=[r for r in reported_rows(paper) if r["dataset"] not in PAPER_DATASETS])
    out = Path(out_dir)
    from flexrec_bench.foundation.io import remove_stale_tmp
    from flexrec_bench.foundation.publish import locked

    with locked(out / "index.html", timeout=60.0, what="page"):  # one writer: a dead one's temp files go
        remove_stale_tmp(out / "index.html")
        write_text_atomic(out / "index.html", page)
    return out / "index.html"
