"""A GPU run of the trainers, scripted and timed: step time, tokens/s and peak memory to JSON.

    python benchmarks/gpu_smoke.py [--out benchmarks/out/gpu_smoke.json] [--steps 4]
    python benchmarks/gpu_smoke.py --cpu-check     # no GPU: every part up to the point CUDA is needed
    python benchmarks/gpu_smoke.py --parts tiny,qwen2.5-3b-shape   # some parts, in this order

Parts (each records its figures or why it did not run):

1. ``tiny``: FlexRec GRPO through the local TRL trainer on the `toy` build, with a 2-layer model
   built from a config (the miniature preset, ``--steps`` steps);
2. ``qwen2.5-0.5b-shape``: the same trainer on a random-init model with Qwen2.5-0.5B's architecture
   (hidden 896, 24 layers, 14 heads / 2 KV heads, MLP 4864, 151,936-token vocabulary; built from a
   config, no download), bf16, full-parameter;
3. ``qwen2.5-3b-shape``: the paper's model's architecture (Qwen2.5-3B: hidden 2048, 36 layers, 16
   heads / 2 KV heads, MLP 11008), random init, bf16, full-parameter, with the ``gpu`` preset's
   activation checkpointing: the paper's run's memory and step time on this GPU. Its report also
   holds the memory estimated from the parameter count (policy, gradients, AdamW's fp32 moments,
   the frozen reference) and, from the measured tokens/s, a rough time per step of the paper's run
   (KuaiRec prompts of about 1,300 tokens and 182 new tokens, G = 8; an estimate, said as one);
4. ``verl``: `flexrec-bench train --backend verl` for ``--steps`` steps on the tiny model, where verl
   and vLLM are installed (vLLM does not install on this project's machines: then it says so).

The whole run stays under 5 minutes on one H200 (4 steps each). ``--cpu-check`` runs part 1 on the
CPU for 1 step, builds part 2's config and counts its parameters without allocating it, checks
part 3's pieces, and records where each part needs CUDA.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Qwen2.5-0.5B's architecture (its config.json), so memory and speed are the real model's
QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151_936, max_position_embeddings=32_768, tie_word_embeddings=True,
                  rope_theta=1_000_000.0)


PARTS = ("tiny", "qwen2.5-0.5b-shape", "qwen2.5-3b-shape", "verl")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _train(model_dir: Path, data: Path, out: Path, steps: int, cuda: bool, extra: dict | None = None) -> dict:
    """One local FlexRec run on the toy build; its step time, completion tokens/s and peak memory."""
    import torch

    from training.config import algo_config, layered_config
    from training.local import train_local

    sets = {"use_cpu": str(not cuda), "eval_steps": "0", "eval_limit": "8", **(extra or {})}
    cfg, _ = layered_config(algo_config("flexrec"), "miniature", {
        "model": str(model_dir), "dataset": "toy", "data": str(data), "needs": "toy", "output_dir": str(out),
        "max_steps": steps}, sets)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    train_local(cfg, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("kind") == "train" and "step_time" in r]
    step_time = sum(r["step_time"] for r in train) / len(train) if train else None
    tokens = max((r.get("num_tokens", 0) for r in train), default=0)
    return {"steps": steps, "wall_s": round(wall, 2), "step_time_s": step_time,
            "tokens_per_s": round(tokens / sum(r["step_time"] for r in train), 1) if train and tokens else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "device": "cuda" if cuda else "cpu"}


#: Qwen2.5-3B's architecture (the paper's model, Qwen2.5-3B-Instruct; its config.json)
QWEN25_3B = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                 num_key_value_heads=2, vocab_size=151_936, max_position_embeddings=32_768, tie_word_embeddings=True,
                 rope_theta=1_000_000.0)
SHAPES = {"qwen2.5-0.5b": ("Qwen2.5-0.5B", QWEN25_05B, {"precision": "bf16"}),
          "qwen2.5-3b": ("Qwen2.5-3B", QWEN25_3B, {"precision": "bf16", "activation_checkpointing": "true"})}
#: the paper's run per GRPO step, for the rough time estimate (ours: KuaiRec at K = 30, G = 8, one prompt group)
PAPER_STEP_TOKENS = 8 * (1300 + 182)


def memory_estimate_gib(n_params: int) -> dict:
    """Full-parameter GRPO, from the parameter count alone (before activations), as the local trainer
    runs it: the policy loaded in bf16 (the hub's weights, transformers' dtype "auto"), its gradients
    in bf16, AdamW's two moments in the parameters' dtype (torch keeps them so: bf16), the frozen bf16
    reference (beta > 0). A trainer that keeps fp32 master weights and moments (FSDP mixed precision,
    verl's default) needs ``with_fp32_master_and_moments`` instead. Measured on an H200 at stop 43
    (Qwen2.5-3B's shape, 2 steps, activation checkpointing, the toy's short prompts): 31.3 GiB peak
    against 28.7 estimated here before activations."""
    gib = 2**30
    parts = {"policy_bf16": 2 * n_params, "gradients_bf16": 2 * n_params, "adamw_moments_bf16": 4 * n_params,
             "reference_bf16": 2 * n_params}
    master = {"master_fp32": 4 * n_params, "gradients_fp32": 4 * n_params, "adamw_moments_fp32": 8 * n_params,
              "policy_bf16": 2 * n_params, "reference_bf16": 2 * n_params}
    return {**{k: round(v / gib, 1) for k, v in parts.items()}, "total_before_activations": round(sum(parts.values()) / gib, 1),
            "with_fp32_master_and_moments": round(sum(master.values()) / gib, 1)}


def part_qwen_shape(work: Path, data: Path, steps: int, cuda: bool, shape: str = "qwen2.5-0.5b") -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from flexrec_bench.ranking.tiny import build_tokenizer

    name, arch, extra = SHAPES[shape]
    cfg = Qwen2Config(**arch)
    with torch.device("meta"):  # counting needs no memory
        n = sum(p.numel() for p in Qwen2ForCausalLM(cfg).parameters())
    info = {"parameters": int(n), "architecture": f"{name} (random init, from a config)",
            "memory_estimate_gib": memory_estimate_gib(int(n))}
    if not cuda:
        return {**info, "ran": False, "why": f"needs CUDA: a {name.split('-')[-1]} full-parameter bf16 run is for the "
                                              f"GPU (stopped here, after building the config)"}
    path = work / shape
    tok = build_tokenizer(path)
    cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id = tok.eos_token_id, tok.pad_token_id, None
    torch.manual_seed(0)
    with torch.device("cuda"):  # a 3B random init on the CPU takes minutes; on the GPU, seconds
        Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(str(path))
    got = _train(path, data, work / f"run-{shape}", steps, cuda, extra)
    if got.get("tokens_per_s"):
        got["paper_step_s_estimate"] = round(PAPER_STEP_TOKENS / got["tokens_per_s"], 1)
    return {**info, "ran": True, **got}


def part_verl(work: Path, data: Path, model: Path, steps: int, cuda: bool) -> dict:
    missing = [m for m in ("verl", "vllm") if importlib.util.find_spec(m) is None]
    if missing:
        return {"ran": False, "why": f"not installed here: {', '.join(missing)} (vLLM does not install on this "
                                     f"project's machines; `pip install -e '.[train,verl,vllm]'` on a GPU machine)"}
    if not cuda:
        return {"ran": False, "why": "needs CUDA: verl's vLLM rollouts run on GPUs"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "flexrec_bench.cli", "train", "--backend", "verl", "--model", str(model),
                        "--dataset", "toy", "--data", str(data), "--need", "toy", "--max-steps", str(steps),
                        "--output-dir", str(work / "verl"), "--quiet"], capture_output=True, text=True)
    return {"ran": r.returncode == 0, "wall_s": round(time.perf_counter() - t0, 1),
            "why": None if r.returncode == 0 else r.stderr[-1500:]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/out/gpu_smoke.json")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cpu-check", action="store_true", help="no GPU: run every part up to where CUDA is needed")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, run in this order: {', '.join(PARTS)}")
    a = ap.parse_args(argv)
    chosen = [p.strip() for p in a.parts.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise SystemExit(f"--parts: unknown {', '.join(unknown) or '(none given)'}; the parts: {', '.join(PARTS)}")
    from flexrec_bench.datasets.toy import write_toy_build
    from flexrec_bench.foundation.io import write_json_atomic
    from flexrec_bench.ranking.tiny import build_tiny_model

    cuda = _cuda()
    if not cuda and not a.cpu_check:
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --cpu-check to check every part up to that point")
    work = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    t0 = time.perf_counter()
    try:
        data = work / "data"
        write_toy_build(data, {"train": 64, "val": 8, "test": 8})
        tiny = build_tiny_model(work / "tiny", hidden_size=128)
        steps = a.steps if cuda else 1
        report: dict = {"cuda": cuda, "device": _device_name(), "parts": {}}
        parts = {"tiny": lambda: {"ran": True, **_train(tiny, data, work / "run-tiny", steps, cuda)},
                 "qwen2.5-0.5b-shape": lambda: part_qwen_shape(work, data, steps, cuda),
                 "qwen2.5-3b-shape": lambda: part_qwen_shape(work, data, steps, cuda, "qwen2.5-3b"),
                 "verl": lambda: part_verl(work, data, tiny, steps, cuda)}
        for name in chosen:  # the report is rewritten after each part: a run cut short keeps them
            t_part = time.perf_counter()
            report["parts"][name] = {**parts[name](), "part_wall_s": round(time.perf_counter() - t_part, 1)}
            write_json_atomic(a.out, {**report, "finished": False})
        report["total_s"] = round(time.perf_counter() - t0, 1)
        report["finished"] = True
        if not cuda:
            report["note"] = "checked on the CPU up to the CUDA boundary; the GPU figures need a GPU machine"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json_atomic(a.out, report)
    print(json.dumps(report, indent=2))
    return report


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()
