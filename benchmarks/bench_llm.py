"""LLM ranking throughput (instances/s) of a tiny random-init Qwen2 model on CPU through the
`hf:` ranker, with the STAR ranker on the same instances as the in-run reference.

    python benchmarks/bench_llm.py [--data DIR] [--n 32] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _util import save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="a build-data output root (default: build ml-100k in a temp dir)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args()
    import torch

    from flexrec_bench.build import BuildConfig, build
    from flexrec_bench.data import load_split
    from flexrec_bench.rankers import make_ranker
    from flexrec_bench.tiny import build_tiny_model

    tmp = tempfile.mkdtemp()
    data = a.data
    if data is None:
        data = os.path.join(tmp, "data")
        build(BuildConfig(out=data, train_size=100, test_size=a.n, val_size=10), progress=False)
    split = load_split(data, "ml-100k", "interest").head(a.n)
    model = build_tiny_model(os.path.join(tmp, "tiny"))
    ranker = make_ranker(f"hf:{model}", batch_size=a.batch_size, progress=False, max_new_tokens=5 * 30 + 32)
    ranker.rank(split.head(a.batch_size))  # warm-up (load, first forward)
    t0 = time.perf_counter()
    ranker.rank(split)
    llm = time.perf_counter() - t0
    t0 = time.perf_counter()
    make_ranker("star").rank(split)
    star = time.perf_counter() - t0
    print(f"hf tiny (2 layers, hidden 64, {torch.get_num_threads()} threads): {a.n / llm:.1f} instances/s "
          f"(batch {a.batch_size}, {5 * 30 + 32} new tokens)")
    print(f"star on the same instances: {a.n / star:.0f} instances/s -> LLM/STAR time ratio {llm / star:.0f}x")
    save("llm_throughput", {"n": a.n, "batch_size": a.batch_size, "hf_instances_per_s": round(a.n / llm, 2),
                            "star_instances_per_s": round(a.n / star, 1), "ratio": round(llm / star, 1)})


if __name__ == "__main__":
    main()
