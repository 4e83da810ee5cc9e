"""Candidate quality per embedder: which embedder makes the better STAR candidates for a dataset?

    python benchmarks/bench_embedders.py --dataset kuairec [--raw-dir DIR]
        [--embedders all-MiniLM-L6-v2,ngrams-384,hashing-384]

For each embedder, builds the dataset (``--embeddings local``: every vector computed here) and
reports the manifest's ``candidate_quality``: of the positives each val/test instance holds out
(the user's later interactions with a signal at or above the positive threshold: rating >= 4,
watch ratio >= 2), the share among its K candidates, and the share of instances with at least one.
For sentence-transformer embedders it also reports how many of the item texts' word pieces the
model's tokenizer reads as its unknown token (all-MiniLM-L6-v2's vocabulary is English: a Chinese
caption is mostly [UNK]). The embedder with the higher held-out recall makes the better candidates.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _util import save


def unk_share(texts: list[str], embedder: str) -> float | None:
    """Share of the tokenizer's pieces of ``texts`` that are its unknown token (None: no tokenizer)."""
    if embedder.startswith(("hashing-", "ngrams-", "openai:")):
        return None
    from flexrec_bench.building.embed import Embedder

    tok = Embedder(embedder, progress=False, device="cpu")._load().tokenizer
    unk, total = tok.unk_token_id, 0
    n_unk = 0
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        total += len(ids)
        n_unk += sum(1 for i in ids if i == unk)
    return n_unk / total if total else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--raw-dir", default=None)
    ap.add_argument("--embedders", default="all-MiniLM-L6-v2,ngrams-384,hashing-384")
    ap.add_argument("--train-size", type=int, default=200)
    ap.add_argument("--test-size", type=int, default=1000)
    a = ap.parse_args()
    import pyarrow.parquet as pq

    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build

    rows = []
    for name in a.embedders.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = build(BuildConfig(dataset=a.dataset, raw_dir=a.raw_dir, out=tmp, embedder=name, embeddings="local",
                                    train_size=a.train_size, test_size=a.test_size, needs=("interest",)),
                        progress=False)
            texts = pq.read_table(res.path / "items.parquet", columns=["text"]).column("text").to_pylist()
            q = res.manifest["candidate_quality"]
            row = {"embedder": name, "seconds": round(time.perf_counter() - t0, 1),
                   **{f"{s}_recall": q[s]["recall"] for s in ("val", "test")},
                   **{f"{s}_share_with_one": q[s]["share_with_one_retrieved"] for s in ("val", "test")},
                   "held_out_positives_test": q["test"]["held_out_positives"], "unk_share": unk_share(texts, name)}
        rows.append(row)
        print(row, flush=True)
    best = max(rows, key=lambda r: (r["test_recall"] or 0) + (r["val_recall"] or 0))
    print(f"best held-out recall on {a.dataset}: {best['embedder']}")
    save("embedders", {"dataset": a.dataset, "rows": rows, "best": best["embedder"]})


if __name__ == "__main__":
    main()
