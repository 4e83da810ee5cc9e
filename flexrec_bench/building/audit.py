"""The build's audits together: the leak audit (flexrec_bench.building.leak_audit: does the presented
order tell a ranker the labels?) and the formula audit (flexrec_bench.building.formula_audit: can a
formula of what a ranker is shown, or a need-blind ranker, solve the need?), summarized for the
manifest, run on a built dataset (``flexrec-bench audit``) and formatted as a table."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from flexrec_bench.building.formula_audit import (FIT_INSTANCES, NEED_BLIND, REFERENCE_NEED, SOLVABLE, add_need_blind,
                                                  formula_audit, shown_inputs)
from flexrec_bench.building.leak_audit import AUDIT_K, RULE, SplitAudit, audit_arrays


def summarize_audit(results: dict[str, dict[str, SplitAudit]], formula: dict[str, dict] | None = None,
                    formula_skipped: bool = False) -> dict:
    """The manifest's ``audit`` entry: the verdict, the rule, every split's figures, and each need's
    formula audit (flexrec_bench.building.formula_audit; a need solvable from what the ranker is shown is
    listed, not flagged as a leak). ``formula_skipped``: the build ran without it (``--no-formula-audit``)."""
    flagged = [f"{need}/{split}" for need, by in results.items() for split, a in by.items() if a.leak]
    formula = formula or {}
    return {"leak_free": not flagged, "flagged": flagged, "rule": RULE,
            "solvable_from_shown": [n for n, f in formula.items() if f.get("solvable")],
            "formula_rule": f"a need is solvable from what the ranker is shown when a ranker fitted on the train split "
                            f"from shown features reaches {SOLVABLE:g} of the oracle's NDCG@{AUDIT_K} on test "
                            f"(not a leak of order)",
            "need_blind": [n for n, f in formula.items() if f.get("need_blind")],
            "need_blind_rule": f"a need is need-blind (a need-blind ranker solves it) when ranking by the "
                               f"{REFERENCE_NEED} labels, scored under the need's labels, reaches NDCG@{AUDIT_K} "
                               f"{NEED_BLIND:g} on test",
            "needs": {need: {split: asdict(a) for split, a in by.items()} for need, by in results.items()},
            "formula": formula, **({"formula_skipped": True} if formula_skipped else {})}


def audit_build(data_dir, dataset: str, seed: int = 0, sample: int = FIT_INSTANCES) -> dict:
    """Audit every need and split of a built dataset (what ``flexrec-bench audit`` runs), with each
    need's formula audit (fitted on at most ``sample`` train instances)."""
    from flexrec_bench.building.labeling import make_need
    from flexrec_bench.building.splits import SPLITS, load_manifest, load_split

    manifest = load_manifest(data_dir, dataset)
    out: dict[str, dict[str, SplitAudit]] = {}
    formula: dict[str, dict] = {}
    test_labels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for need in manifest["needs"]:
        out[need] = {}
        loaded = {}
        for split in SPLITS:
            s = loaded[split] = load_split(data_dir, dataset, need, split)
            cols = {c: s.candidate_column(c) for c in s.ranker_columns}
            out[need][split] = audit_arrays(s.relevance, s.mask, seed, cols)
        items = loaded["train"].items
        topics = dict(zip(items["item_id"], map(frozenset, items["topics"]))) if "topics" in items else {}
        counts = dict(zip(items["item_id"], items["train_count"])) if "train_count" in items else {}
        shown = [c for c in loaded["train"].ranker_columns if c != "retrieval_scores"]
        inputs = {split: shown_inputs(loaded[split].frame, shown, topics, counts) for split in ("train", "test")}
        spec = manifest["needs"][need]
        try:
            obj = make_need(need, spec.get("config") or {})
        except Exception:  # a need this install does not know (a plugin's): the ceiling without its formula
            obj = None
        formula[need] = formula_audit(inputs["train"], inputs["test"], obj, loaded["train"].signal_kind,
                                      seed=seed, sample=sample)
        t = loaded["test"]
        test_labels[need] = (t.relevance, t.relevant, t.mask)
    return summarize_audit(out, add_need_blind(formula, test_labels, seed))


def format_audit(summary: dict) -> str:
    """A terminal table of an audit summary."""
    lines = [f"{'need':<9} {'split':<5} {'tested':>6} {'chi2 p':>9} {'ndcg@10 order':>13} {'reverse':>8} "
             f"{'random':>7}  {'best column':>22}  verdict"]
    for need, by in summary["needs"].items():
        for split, a in by.items():
            def f(x):
                return f"{x:.3f}" if x is not None else "-"

            cols = a.get("ndcg_by_column") or {}
            top = max(cols, key=cols.get) if cols else None
            best = f"{top} {cols[top]:.3f}" if top else "-"
            lines.append(f"{need:<9} {split:<5} {a['informative']:>6} {a['p_value']:>9.2g} {f(a['ndcg_presented']):>13} "
                         f"{f(a['ndcg_reversed']):>8} {f(a['ndcg_random']):>7}  {best:>22}  "
                         f"{'LEAK: ' + '; '.join(a['reasons']) if a['leak'] else 'ok'}")
    lines.append("leak-free" if summary["leak_free"] else f"LEAKS in {', '.join(summary['flagged'])}")
    lines += format_formula(summary.get("formula") or {})
    return "\n".join(lines)


def format_formula(formula: dict[str, dict]) -> list[str]:
    """The formula audit's table: NDCG@10 on test of random, popularity, the retrieval score, the
    shown columns, the fitted rankers (the ceiling is the better) and the oracle."""
    if not formula:
        return []
    lines = ["", f"formula audit (rankers fitted on train from what a ranker is shown, NDCG@{AUDIT_K} on test; "
                 f"solvable at {SOLVABLE:g} of the oracle):",
             f"{'need':<9} {'tested':>6} {'random':>7} {'popular':>7} {'retr.':>7} {'linear':>7} {'boosted':>7} "
             f"{'oracle':>7} {'ceiling':>8} {'blind':>6}  label formula on shown inputs"]
    for need, f in formula.items():
        sc = f.get("scores")
        if not sc:
            lines.append(f"{need:<9} {f.get('instances', 0):>6}  - ({f.get('why', 'not run')})")
            continue
        lf = f.get("label_formula") or {}
        lab = (f"reproduces {lf['match']:.3f} of instances, NDCG@{AUDIT_K} {lf.get(f'ndcg@{AUDIT_K}', float('nan')):.3f}"
               if lf.get("evaluated") else "not a formula of shown inputs" if lf else "-")
        lines.append(f"{need:<9} {f['instances']:>6} {sc['random']:>7.3f} {sc['popularity']:>7.3f} "
                     f"{sc['retrieval_scores']:>7.3f} {sc['linear']:>7.3f} {sc['boosted']:>7.3f} {sc['oracle']:>7.3f} "
                     f"{f['formula_ceiling']:>8.3f} {_blind(f):>6}  {lab}"
                     + ("  SOLVABLE from what the ranker is shown" if f["solvable"] else "")
                     + ("  NEED-BLIND: a need-blind ranker solves it" if f.get("need_blind") else ""))
    if any(f.get("need_blind_ceiling") is not None for f in formula.values()):
        lines.append(f"blind: the need-blind ceiling, ranking by the {REFERENCE_NEED} labels scored under the need's "
                     f"(flagged need-blind at {NEED_BLIND:g}; {REFERENCE_NEED}: the reference itself)")
    return lines


def _blind(f: dict) -> str:
    v = f.get("need_blind_ceiling")
    return "-" if v is None else "ref" if f.get("need_blind_reference") else f"{v:.3f}"
