"""One prompt against sliding windows at K = 100 (issue 38.1).

    python benchmarks/bench_windows.py [--n 20] [--model tiny|smollm2-135m-instruct]

Builds ML-100K with ``--candidates 100`` (benchmarks/out/k100) and ranks the first ``n`` interest
test instances with one model three ways: one prompt of 100 candidates (generation), windows of 20
with stride 10 (generation), and windows with first-token scoring. Reports NDCG@10, wall time, LLM
calls and tokens in and out. ``tiny`` is the random-init 2-layer model (``make-tiny-model``): its
NDCG is random's, the point is the cost; SmolLM2 generation at K = 100 costs minutes per ranking on
2 CPU cores. Writes benchmarks/out/windows.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _util import OUT, save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--data", default=str(OUT / "k100"))
    a = ap.parse_args()
    from flexrec_bench.building.build import build
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.foundation.metrics import per_instance_scores
    from flexrec_bench.ranking.rankers.base import make_ranker
    from flexrec_bench.building.splits import load_split

    if not (Path(a.data) / "ml-100k" / "manifest.json").exists():
        build(BuildConfig(out=a.data, candidates=100), progress=False)
    if a.model == "tiny":
        from flexrec_bench.ranking.tiny import build_tiny_model

        folder = OUT / "tiny-model"
        if not (folder / "config.json").exists():
            build_tiny_model(folder)
    else:
        from flexrec_bench.ranking.models import install

        folder = install(a.model).folder
    split = load_split(a.data, "ml-100k", "interest", "test").head(a.n)
    rows = {}
    runs = {"one prompt, generation": {}, "windows 20/10, generation": {"window": 20, "stride": 10},
            "windows 20/10, first token": {"window": 20, "stride": 10, "scoring": "first_token"}}
    for name, opts in runs.items():
        ranker = make_ranker(f"hf:{folder}", progress=False, batch_size=8, **opts)
        t = time.perf_counter()
        res = ranker.rank(split)
        secs = time.perf_counter() - t
        nd = per_instance_scores(res.order, split.relevance, split.relevant, ("ndcg@10",))["ndcg@10"]
        rows[name] = {"ndcg@10": float(np.nanmean(nd)), "n": int(np.isfinite(nd).sum()), "seconds": secs,
                      **res.usage}
    out = {"model": str(folder), "instances": len(split), "k": split.k, "runs": rows}
    save("windows", out)
    print(f"{a.model}, {len(split)} instances, K = {split.k}")
    print("| run | NDCG@10 | seconds | LLM calls | prompts | tokens in | tokens out |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['ndcg@10']:.3f} | {r['seconds']:.1f} | {r['calls']} | {r['prompts']} | "
              f"{r['prompt_tokens']} | {r['completion_tokens']} |")


if __name__ == "__main__":
    main()
