"""Issue 36: the needs under the paper's reading and the held-out reading (ours), and the interest
conventions a reader of the paper's Table 1 could mean.

    python benchmarks/needs_readings.py [--dataset ml-100k] [--raw-dir DIR] [--data benchmarks/out/needs]

Builds the dataset twice (``relevance=paper``, the default, and ``niche.relevance=heldout
trend.relevance=heldout``) and, on each test split, scores random, popularity and STAR with the
one evaluator (NDCG@10 with 95% bootstrap CIs), beside the build's formula ceiling and oracle
(flexrec_bench.building.formula_audit). For each need it also measures how often the ideal top-10 under the
need differs from the ideal top-10 under interest (a need that reorders nothing is not a need).
Then it scores the same three rankers on the interest split under eight conventions (gain linear
or exponential, unrated candidates 0 or a rating-1 floor, defined-only or empty-as-zero averaging)
and reports each one's distance to the paper's ML-1M STAR row (N@5, N@10, N@30, P@5, MRR@5).
Writes benchmarks/out/needs_readings.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from _util import OUT, save

NEEDS = ("interest", "niche", "trend")
RANKERS = ("random", "popularity", "star")
READINGS = {"paper": {}, "heldout": {"niche": {"relevance": "heldout"}, "trend": {"relevance": "heldout"}},
            # with exponential gains a bonus of 1 never lifts a niche 4-star over a non-niche 5-star
            # ((2^4-1)/31 = 0.48 < 0.5): a bonus of 2 lets the need reorder across rating levels
            "heldout-bonus2": {"niche": {"relevance": "heldout", "bonus": 2.0}, "trend": {"relevance": "heldout"}}}
CONVENTION_METRICS = ("ndcg@5", "ndcg@10", "ndcg@30", "precision@5", "mrr@5")


def _build(dataset: str, raw_dir: str | None, out: Path, options: dict) -> dict:
    from flexrec_bench.building.build import build
    from flexrec_bench.building.config import BuildConfig

    manifest = out / dataset / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        if m["config"]["need_options"] == options:
            return m
    return build(BuildConfig(dataset=dataset, raw_dir=raw_dir, out=str(out), need_options=options),
                 progress=False).manifest


def _rank(name: str, split):
    from flexrec_bench.ranking.rankers.base import make_ranker

    return make_ranker(name, seed=0).rank(split).order


def _reorder_share(top: dict[str, np.ndarray], need: str) -> dict:
    """Share of test instances whose ideal top-10 (candidates with a gain, best first, ties by
    presented position) differs between ``need`` and interest, over instances where either has a gain."""
    a, b = top[need], top["interest"]
    differ = informative = 0
    for ra, rb in zip(a, b):
        la = [j for j in np.argsort(-ra, kind="stable")[:10] if ra[j] > 0]
        lb = [j for j in np.argsort(-rb, kind="stable")[:10] if rb[j] > 0]
        if la or lb:
            informative += 1
            differ += la != lb
    return {"instances": informative, "differ": differ, "share": differ / informative if informative else None}


def readings_table(dataset: str, raw_dir: str | None, data: Path) -> dict:
    from flexrec_bench.scoring.evaluator import evaluate
    from flexrec_bench.building.splits import load_split

    out: dict = {}
    for reading, options in READINGS.items():
        m = _build(dataset, raw_dir, data / reading, options)
        out[reading] = {"fingerprint": m["fingerprint"], "candidate_recall": m["candidate_quality"]["test"]["recall"],
                        "needs": {}}
        ideal = {}
        for need in NEEDS:
            split = load_split(data / reading, dataset, need, "test")
            ideal[need] = split.relevance
            f = m["audit"]["formula"][need]
            row = {"formula_ceiling": f["formula_ceiling"], "ceiling_model": f.get("ceiling_model"),
                   "share_of_oracle": f.get("share_of_oracle"), "solvable": f["solvable"],
                   "label_formula_match": (f.get("label_formula") or {}).get("match")}
            for ranker in (*RANKERS, "oracle"):
                rep = evaluate(_rank(ranker, split), split, ("ndcg@10",), bootstrap=1000, seed=0)
                mv = rep.metrics["ndcg@10"]
                row[ranker] = {"mean": mv.mean, "ci95": list(mv.ci95), "n": mv.n}
            out[reading]["needs"][need] = row
        for need in ("niche", "trend"):
            out[reading]["needs"][need]["top10_differs_from_interest"] = _reorder_share(ideal, need)
    return out


def _paper_star_row() -> dict[str, float]:
    rows = json.loads((Path(__file__).resolve().parents[1] / "leaderboard" / "paper_results.json").read_text())
    return {r["metric"]: r["value"] for r in rows["reported_in_paper"]
            if r["dataset"] == "MovieLens-1M" and r["method"] == "STAR" and r["need"] == "interest"}


def conventions_table(dataset: str, data: Path) -> dict:
    """The interest split scored under each convention. Ratings come back from the stored gain
    (2^r - 1) / 31 of observed candidates; the relevant set is r >= 4 under every convention."""
    from flexrec_bench.foundation.metrics import per_instance_scores
    from flexrec_bench.building.splits import load_split

    split = load_split(data / "paper", dataset, "interest", "test")
    mask, observed = split.mask, split.observed & split.mask
    rating = np.where(observed, np.log2(split.relevance * 31.0 + 1.0), 0.0)
    relevant = split.relevant
    orders = {r: _rank(r, split) for r in RANKERS}
    paper = _paper_star_row()
    out = {"paper_star_ml1m": paper, "rated_per_instance": float(observed.sum(1).mean()), "conventions": []}
    for gain, unrated, averaging in itertools.product(("exponential", "linear"), ("zero", "floor"),
                                                      ("defined_only", "empty_as_zero")):
        g = (np.exp2(rating) - 1.0) / 31.0 if gain == "exponential" else rating / 5.0
        floor = (1.0 / 31.0) if gain == "exponential" else 0.2
        rel = np.where(observed, g, floor if unrated == "floor" else 0.0) * mask
        row = {"gain": gain, "unrated": unrated, "averaging": averaging, "scores": {}}
        for ranker, order in orders.items():
            per = per_instance_scores(order, rel, relevant, CONVENTION_METRICS)
            row["scores"][ranker] = {k: float(np.nanmean(v) if averaging == "defined_only" else np.nan_to_num(v).mean())
                                     for k, v in per.items()}
        star = row["scores"]["star"]
        ratios = {k: star[k] / paper[k] for k in CONVENTION_METRICS if paper.get(k)}
        row["star_over_paper"] = ratios
        row["max_relative_distance"] = max(abs(r - 1.0) for r in ratios.values())
        out["conventions"].append(row)
    best = min(out["conventions"], key=lambda r: r["max_relative_distance"])
    out["closest"] = {k: best[k] for k in ("gain", "unrated", "averaging", "max_relative_distance")}
    out["within_10_percent"] = best["max_relative_distance"] <= 0.10
    return out


def _ci(v: dict) -> str:
    return f"{v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"


def markdown(res: dict) -> str:
    lines = []
    for reading, r in res["readings"].items():
        lines += [f"**{reading} reading** (build {r['fingerprint']}, candidate recall {r['candidate_recall']:.3f}), "
                  f"NDCG@10 on test, 95% CI:", "",
                  "| need | random | popularity | STAR | formula ceiling | oracle | ceiling / oracle | top-10 differs from interest |",
                  "|---|---|---|---|---|---|---|---|"]
        for need, row in r["needs"].items():
            d = row.get("top10_differs_from_interest")
            lines.append(f"| {need} | {_ci(row['random'])} | {_ci(row['popularity'])} | {_ci(row['star'])} | "
                         f"{row['formula_ceiling']:.3f} ({row['ceiling_model']}) | {row['oracle']['mean']:.3f} | "
                         f"{row['share_of_oracle']:.3f}{' solvable' if row['solvable'] else ''} | "
                         + (f"{d['share']:.3f} of {d['instances']}" if d else "-") + " |")
        lines.append("")
    c = res["conventions"]
    lines += [f"**Interest conventions** (rated candidates per instance {c['rated_per_instance']:.2f}); STAR / the paper's "
              f"ML-1M STAR row:", "", "| gain | unrated | averaging | " + " | ".join(CONVENTION_METRICS)
              + " | max distance | random N@10 | popularity N@10 |", "|---" * (6 + len(CONVENTION_METRICS)) + "|"]
    for row in sorted(c["conventions"], key=lambda r: r["max_relative_distance"]):
        lines.append(f"| {row['gain']} | {row['unrated']} | {row['averaging']} | "
                     + " | ".join(f"{row['scores']['star'][k]:.3f} ({row['star_over_paper'][k]:.2f}×)"
                                  for k in CONVENTION_METRICS)
                     + f" | {row['max_relative_distance']:.2f} | {row['scores']['random']['ndcg@10']:.3f} | "
                       f"{row['scores']['popularity']['ndcg@10']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--raw-dir", default=None)
    ap.add_argument("--data", default=str(OUT / "needs"))
    a = ap.parse_args()
    data = Path(a.data) / a.dataset
    res = {"dataset": a.dataset, "readings": readings_table(a.dataset, a.raw_dir, data)}
    res["conventions"] = conventions_table(a.dataset, data)
    save(f"needs_readings_{a.dataset}", res)
    print(markdown(res))


if __name__ == "__main__":
    main()
