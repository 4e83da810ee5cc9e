"""What a ranker gains on trend by reading its prompt (issue 46, part 4): NDCG of four fixed
readings of one build's split, scored by the toolkit's one evaluator (per_instance_scores).

    python benchmarks/trend_readable.py --data benchmarks/out/k10 [--need trend] [--split test] [--limit 100]

- echo: the presented order (what SmolLM2-135M-Instruct writes before training);
- shown count: the candidates by the count the prompt prints beside them (the need's shown
  column), ties in the presented order: the gain a model can take from reading numbers alone;
- retrieval similarity: by the build's retrieval score, which the prompt does not print (a model
  would have to judge it from the texts);
- similarity + count: both; under the paper's reading this is close to the label itself.

Prints one line per reading and writes benchmarks/out/trend_readable_<need>.json.
"""

from __future__ import annotations

import argparse

import numpy as np

from _util import save
from flexrec_bench import load_split
from flexrec_bench.foundation.metrics import per_instance_scores
from flexrec_bench.ranking.permutations import scores_to_order
from training.sft import shown_scores

METRICS = ("ndcg@5", "ndcg@10")


def _order(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Best first, ties in the presented order (not scores_to_order's seeded random), padding (-1) last."""
    return scores_to_order(scores - 1e-9 * np.arange(scores.shape[1]), mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the --out of build-data")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--need", default="trend")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="the first N instances (as eval --limit)")
    a = ap.parse_args()
    s = load_split(a.data, a.dataset, a.need, a.split)
    if a.limit:
        s = s.head(a.limit)
    columns = (s.manifest["needs"][a.need].get("prompt") or {}).get("candidate_columns") or {}
    if not columns:
        raise SystemExit(f"{a.data}: need {a.need!r} shows no per-candidate column in its prompt; nothing to read")
    shown = s.candidate_column(next(iter(columns)))
    position = -np.arange(s.mask.shape[1], dtype=float)[None, :].repeat(len(s.mask), 0)
    readings = {"echo (presented order)": position, "shown count": shown_scores(s),  # = SFT's targets=shown
                "retrieval similarity (not shown)": s.retrieval_scores,
                "similarity + count": s.retrieval_scores + shown}
    out = {"data": a.data, "need": a.need, "split": a.split, "instances": len(s.mask),
           "shown_column": next(iter(columns)), "readings": {}}
    for name, scores in readings.items():
        per = per_instance_scores(_order(scores, s.mask), s.relevance, s.relevant, METRICS)
        out["readings"][name] = {m: round(float(np.nanmean(per[m])), 4) for m in METRICS}
        print(f"{name:34s} " + "  ".join(f"{m} {out['readings'][name][m]:.3f}" for m in METRICS))
    print(f"candidates with a nonzero count: {float((shown > 0).mean()):.3f}; instances with one: "
          f"{float((shown > 0).any(1).mean()):.3f}")
    out["share_nonzero_count"] = round(float((shown > 0).mean()), 4)
    save(f"trend_readable_{a.need}", out)


if __name__ == "__main__":
    main()
