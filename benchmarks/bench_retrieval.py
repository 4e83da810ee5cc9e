"""Retrieval of a 100k-item catalogue for 10k queries: the numpy shortlist against FAISS's exact
IndexFlatIP, in the same run, through flexrec_bench.building.retrieval.retrieve (the exact float64
re-scoring included), with a check that both return the same candidates. Also times the crossover
sizes that set FAISS_MIN_ITEMS.

    python benchmarks/bench_retrieval.py [--items 100000] [--queries 10000] [--dim 384] [--k 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _util import save


def _time(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=30)
    a = ap.parse_args()
    from flexrec_bench.building.retrieval import FAISS_MIN_ITEMS, retrieve

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((a.items, a.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    q = rng.standard_normal((a.queries, a.dim)).astype(np.float32)
    excl = [rng.choice(a.items, 20, replace=False) for _ in range(a.queries)]
    t_np, (i_np, _) = _time(lambda: retrieve(q, emb, a.k, excl, backend="numpy"))
    t_fa, (i_fa, _) = _time(lambda: retrieve(q, emb, a.k, excl, backend="faiss"))
    same = bool(np.array_equal(i_np, i_fa))
    print(f"{a.items} items x {a.queries} queries (dim {a.dim}, k {a.k}): numpy {t_np:.1f} s, faiss {t_fa:.1f} s, "
          f"faiss/numpy time ratio {t_fa / t_np:.3f}; identical candidates: {same}")
    cross = {}
    for n in (1000, 2000, 4000, 8000, 16000):
        sub = emb[:n]
        ex = [e[e < n] for e in excl[:2000]]
        tn, _ = _time(lambda: retrieve(q[:2000], sub, a.k, ex, backend="numpy"))
        tf, _ = _time(lambda: retrieve(q[:2000], sub, a.k, ex, backend="faiss"))
        cross[n] = round(tf / tn, 3)
        print(f"  {n:6d} items, 2000 queries: faiss/numpy time ratio {tf / tn:.3f}")
    save("retrieval", {"items": a.items, "queries": a.queries, "dim": a.dim, "numpy_s": round(t_np, 2),
                       "faiss_s": round(t_fa, 2), "ratio_faiss_over_numpy": round(t_fa / t_np, 3), "identical": same,
                       "crossover_ratios": cross, "faiss_min_items": FAISS_MIN_ITEMS})


if __name__ == "__main__":
    main()
