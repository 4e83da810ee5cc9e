"""Evaluator throughput on N instances x 30 candidates against pytrec-eval-terrier, same data,
same run; reports the ratio. pytrec_eval is run on a slice (default 100,000 instances) and its time
scaled linearly to N, since building its dict input for 1M queries costs minutes and GBs.

    python benchmarks/bench_evaluator.py [--n 1000000] [--ref-n 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _util import save

METRICS_OURS = ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "precision@5", "mrr@5")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--ref-n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=30)
    a = ap.parse_args()
    from flexrec_bench.foundation.metrics import per_instance_scores
    from flexrec_bench.scoring.summary import summarize

    rng = np.random.default_rng(0)
    rel = (rng.integers(0, 4, size=(a.n, a.k)) * (rng.random((a.n, a.k)) < 0.3)).astype(np.float64)
    relevant = rel >= 2
    order = np.argsort(rng.random((a.n, a.k)), axis=1)
    per_instance_scores(order[:1000], rel[:1000], relevant[:1000])  # warm-up
    best = []
    for _ in range(3):
        t0 = time.perf_counter()
        per = per_instance_scores(order, rel, relevant, METRICS_OURS)
        best.append(time.perf_counter() - t0)
    ours = min(best)
    t0 = time.perf_counter()
    summarize(per, relevant, samples=1000, seed=0) if a.n <= 100_000 else None
    boot = time.perf_counter() - t0 if a.n <= 100_000 else None
    print(f"flexrec-bench: {a.n:,} x {a.k} in {ours:.3f}s ({a.n / ours:,.0f} instances/s), 6 metrics")

    import pytrec_eval

    m = a.ref_n
    qrel = {f"q{i}": {f"d{j}": int(rel[i, j]) for j in range(a.k)} for i in range(m)}
    ranks = np.argsort(order[:m], axis=1)  # rank of each candidate position
    run = {f"q{i}": {f"d{j}": float(a.k - ranks[i, j]) for j in range(a.k)} for i in range(m)}
    ev = pytrec_eval.RelevanceEvaluator(qrel, {"ndcg_cut.5,10,30", "recall.5", "P.5", "recip_rank"})
    t0 = time.perf_counter()
    ev.evaluate(run)
    ref = (time.perf_counter() - t0) * a.n / m
    print(f"pytrec-eval-terrier: {m:,} instances in {ref * m / a.n:.2f}s -> {ref:.1f}s scaled to {a.n:,}")
    print(f"ratio: flexrec-bench is {ref / ours:.1f}x faster")
    save("evaluator", {"n": a.n, "k": a.k, "ours_seconds": round(ours, 4), "pytrec_ref_n": m,
                       "pytrec_seconds_scaled": round(ref, 2), "speedup": round(ref / ours, 1),
                       "bootstrap_1000_seconds": boot})


if __name__ == "__main__":
    main()
