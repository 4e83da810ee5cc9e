"""The hf ranker against a bare transformers ``generate`` on the same batch (issue 37.2).

    python benchmarks/bench_hf_ranker.py [--model smollm2-135m-instruct] [--n 8] [--data DIR]

Installs the model (``flexrec-bench models install``), takes the first ``n`` test instances of the
registered ML-100K interest split, and times, in one process and one run:

- bare: the same chat prompts through ``tokenizer.apply_chat_template`` and one greedy
  ``model.generate`` with the ranker's token cap (what a user would write by hand);
- ours, ``stop_at_k=false``: ``HFRanker.rank`` on the same instances (prompt building, batching,
  parsing, padding): the overhead over bare;
- ours, default (``stop_at_k=true``): sequences stop once they named every candidate.

Reports rankings per second, the ratios to bare (target: ours within 1.3x of bare), and the tokens
generated. Writes benchmarks/out/hf_ranker.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _util import OUT, save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--data", default=str(OUT / "needs" / "ml-100k" / "paper"))
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flexrec_bench.building.build import build
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.ranking.models import install
    from flexrec_bench.ranking.prompts import split_messages
    from flexrec_bench.ranking.rankers.hf import HFRanker
    from flexrec_bench.building.splits import load_split

    if a.threads:
        torch.set_num_threads(a.threads)
    if not (Path(a.data) / "ml-100k" / "manifest.json").exists():
        build(BuildConfig(out=a.data), progress=False)
    folder = install(a.model).folder
    split = load_split(a.data, "ml-100k", "interest", "test").head(a.n)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ranker = HFRanker(str(folder), batch_size=a.n, progress=False, stop_at_k=False)
    ranker._model, ranker._tok, ranker._device = model, tok, torch.device("cpu")  # one copy of the weights
    cap = ranker.new_tokens(split.k)
    msgs = [split_messages(split, i, ranker.prompt, ranker.count_tokens) for i in range(len(split))]
    texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out: dict = {"model": str(folder), "instances": len(split), "prompt_tokens": int(enc["attention_mask"].sum()),
                 "max_new_tokens": cap, "threads": torch.get_num_threads()}
    t = time.perf_counter()
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=cap, do_sample=False, pad_token_id=tok.pad_token_id)
    out["bare_s"] = time.perf_counter() - t
    out["bare_new_tokens"] = int((gen[:, enc["input_ids"].shape[1]:] != tok.pad_token_id).sum())
    t = time.perf_counter()
    res = ranker.rank(split)
    out["ours_s"] = time.perf_counter() - t
    ranker.stop_at_k = True
    t = time.perf_counter()
    res_stop = ranker.rank(split)
    out["ours_stop_s"] = time.perf_counter() - t
    out["ours_new_tokens_stop"] = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in res_stop.outputs)
    out["ratio_ours_over_bare"] = out["ours_s"] / out["bare_s"]
    out["ratio_ours_stop_over_bare"] = out["ours_stop_s"] / out["bare_s"]
    for key in ("bare", "ours", "ours_stop"):
        out[f"{key}_rankings_per_s"] = len(split) / out[f"{key}_s"]
    out["echoed"] = res.parse.echoed
    out["same_rankings_with_stop"] = bool((res.order == res_stop.order).all())
    save("hf_ranker", out)
    for k, v in out.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")


if __name__ == "__main__":
    main()
