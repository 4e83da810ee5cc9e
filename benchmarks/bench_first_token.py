"""First-token ranking against generation and against one prefill (issue 38.3).

    python benchmarks/bench_first_token.py [--model smollm2-135m-instruct] [--n 200] [--gen-n 8]

On the registered ML-100K build (test split, K = 30), with SmolLM2-135M-Instruct (installed by
``flexrec-bench models install``):

- speed: first-token ranking of ``--speed-n`` interest instances against one bare forward pass
  (prefill) of the same prompts (target: within 1.2x), and generation's seconds per ranking;
- quality: first-token NDCG@5/@10 on the first ``--n`` test instances of interest, niche and trend,
  and generation's on the first ``--gen-n`` (generation costs about 40 s per ranking on 2 CPU
  cores), each against random on the same instances with a paired bootstrap
  (flexrec_bench.scoring.compare).

Writes benchmarks/out/first_token.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _util import OUT, save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--gen-n", type=int, default=0)
    ap.add_argument("--speed-n", type=int, default=8)
    ap.add_argument("--data", default=str(OUT / "needs" / "ml-100k" / "paper"))
    a = ap.parse_args()
    import torch

    from flexrec_bench.building.build import build
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.scoring.compare import paired_bootstrap, paired_test
    from flexrec_bench.ranking.first_token import ANSWER_OPEN, id_scheme
    from flexrec_bench.foundation.metrics import per_instance_scores
    from flexrec_bench.ranking.models import install
    from flexrec_bench.ranking.prompts import split_messages
    from flexrec_bench.ranking.rankers.base import make_ranker
    from flexrec_bench.building.splits import load_split

    if not (Path(a.data) / "ml-100k" / "manifest.json").exists():
        build(BuildConfig(out=a.data), progress=False)
    folder = install(a.model).folder
    first = make_ranker(f"hf:{folder}", scoring="first_token", progress=False, batch_size=8)
    first._load()
    tok, model = first._tok, first._model
    out: dict = {"model": str(folder), "threads": torch.get_num_threads()}
    # speed: first-token ranking against one bare prefill of the same prompts
    split = load_split(a.data, "ml-100k", "interest", "test").head(a.speed_n)
    scheme, labels, _ = id_scheme(tok, split.k)
    count = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    texts = [tok.apply_chat_template(split_messages(split, i, first.prompt, count, labels), add_generation_prompt=True,
                                     tokenize=False) + ANSWER_OPEN for i in range(len(split))]
    t = time.perf_counter()
    for s in range(0, len(texts), 8):
        enc = tok(texts[s:s + 8], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            model(**enc, logits_to_keep=1)  # a prefill: the last position's logits, as generate's first step
    out["prefill_s"] = time.perf_counter() - t
    t = time.perf_counter()
    first.rank(split)
    out["first_token_s"] = time.perf_counter() - t
    out["first_token_over_prefill"] = out["first_token_s"] / out["prefill_s"]
    out["speed_instances"] = len(split)
    out["id_scheme"] = scheme
    # quality, each need, against random on the same instances
    random = make_ranker("random")
    out["needs"] = {}
    rows = []
    for need in ("interest", "niche", "trend"):
        sp = load_split(a.data, "ml-100k", need, "test").head(a.n)
        t = time.perf_counter()
        res = first.rank(sp)
        secs = time.perf_counter() - t
        metrics = ("ndcg@5", "ndcg@10")
        ft = per_instance_scores(res.order, sp.relevance, sp.relevant, metrics)
        rd = per_instance_scores(random.rank(sp).order, sp.relevance, sp.relevant, metrics)
        row = {"instances": len(sp), "seconds_per_ranking": secs / len(sp), "echoed": res.parse.echoed,
               "first_shown_first": res.parse.first_shown_first}
        for m in metrics:
            ok = np.isfinite(ft[m]) & np.isfinite(rd[m])
            row[m] = {"first_token": float(ft[m][ok].mean()), "random": float(rd[m][ok].mean()), "n": int(ok.sum()),
                      "diff_ci95": paired_bootstrap(rd[m][ok], ft[m][ok], 1000, 0),
                      "p_t": paired_test(rd[m][ok], ft[m][ok], "t")}
        if a.gen_n:
            gen = make_ranker(f"hf:{folder}", progress=False, batch_size=8)
            gen._model, gen._tok, gen._device = model, tok, first._device
            gsp = sp.head(a.gen_n)
            t = time.perf_counter()
            gres = gen.rank(gsp)
            row["generation_seconds_per_ranking"] = (time.perf_counter() - t) / len(gsp)
            g = per_instance_scores(gres.order, gsp.relevance, gsp.relevant, metrics)
            f2 = {m: v[: len(gsp)] for m, v in ft.items()}
            for m in metrics:
                ok = np.isfinite(g[m]) & np.isfinite(f2[m])
                row[m]["generation_first_n"] = float(g[m][ok].mean()) if ok.any() else None
                row[m]["first_token_first_n"] = float(f2[m][ok].mean()) if ok.any() else None
                row[m]["gen_vs_first_diff_ci95"] = paired_bootstrap(g[m][ok], f2[m][ok], 1000, 0) if ok.any() else None
            row["generation_echoed"] = gres.parse.echoed
        out["needs"][need] = row
        rows.append(f"| {need} | {len(sp)} | {row['ndcg@5']['first_token']:.3f} | {row['ndcg@5']['random']:.3f} | "
                    f"{row['ndcg@10']['first_token']:.3f} | {row['ndcg@10']['random']:.3f} | "
                    f"[{row['ndcg@10']['diff_ci95'][0]:+.3f}, {row['ndcg@10']['diff_ci95'][1]:+.3f}] | "
                    f"{row['ndcg@10']['p_t']:.2g} | {row['seconds_per_ranking']:.2f} | {row['first_shown_first']} |")
    save("first_token", out)
    print(f"first-token {out['first_token_s']:.1f} s vs prefill {out['prefill_s']:.1f} s for {len(split)} rankings: "
          f"{out['first_token_over_prefill']:.2f}x; id scheme {scheme}")
    print("| need | n | N@5 first-token | N@5 random | N@10 first-token | N@10 random | CI of the N@10 difference | p (t) | s/ranking | first shown first |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
