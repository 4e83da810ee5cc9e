"""Embedding throughput of the default embedder (all-MiniLM-L6-v2 through sentence-transformers)
on this machine, with no cache: N synthetic KuaiRec-like captions (caption, category path, tag),
the length KuaiRec's item texts have. The hashing embedder on the same texts is the in-run
reference.

    python benchmarks/bench_embed.py [--n 10728]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _util import save


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    cats = ["Life", "Food", "Pets", "Sports", "Music", "Travel", "Games", "Beauty"]
    out = []
    for _ in range(n):
        caption = " ".join(rng.choice(words, size=int(rng.integers(5, 30))))
        out.append(f"Video caption: {caption}\nCategory path: {rng.choice(cats)} > {rng.choice(cats)} > "
                   f"{rng.choice(cats)}\nVideo tag: {rng.choice(cats)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_728)
    a = ap.parse_args()
    import torch

    from flexrec_bench.embed import Embedder

    texts = _texts(a.n)
    t0 = time.perf_counter()
    Embedder("hashing-384", progress=False).encode(texts)
    ref = time.perf_counter() - t0
    model = Embedder(progress=False)
    model._load()  # model load is not the throughput
    t0 = time.perf_counter()
    model.encode(texts)
    took = time.perf_counter() - t0
    print(f"all-MiniLM-L6-v2 on {model.device}, {torch.get_num_threads()} threads, {os.cpu_count()} cores: "
          f"{a.n} texts in {took:.1f} s ({a.n / took:.0f} texts/s); hashing reference {ref:.2f} s "
          f"(time ratio {took / ref:.0f}x)")
    save("embed", {"n": a.n, "device": model.device, "seconds": round(took, 2), "texts_per_s": round(a.n / took, 1),
                   "hashing_seconds": round(ref, 3)})


if __name__ == "__main__":
    main()
