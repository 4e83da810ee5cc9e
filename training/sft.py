"""Supervised fine-tuning on ideal ranked lists with TRL's SFTTrainer: the TALLRec baseline and
the Rec-R1 warm-up. Prompts come from the same builder as eval; the target is the oracle order."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from flexrec_bench.building.splits import DatasetSplit
from flexrec_bench.foundation.errors import require
from flexrec_bench.foundation.io import write_json_atomic
from flexrec_bench.ranking.prompts import PromptConfig, split_messages, target_completion
from flexrec_bench.ranking.permutations import scores_to_order


@dataclass
class SFTSettings:
    """SFT hyper-parameters; TALLRec's LoRA defaults (r 8, alpha 16, dropout 0.05, q_proj/v_proj)."""

    max_steps: int = 200
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 4
    lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    max_prompt_tokens: int = 3072
    seed: int = 0
    use_cpu: bool | None = None
    merge_lora: bool = False   #: write merged full weights instead of an adapter
    targets: str = "ideal"     #: ideal (the oracle order: TALLRec, Rec-R1's warm-up), shown (ours: by the numbers the need's prompt prints beside each candidate, ties in the presented order; a target the prompt fully determines) or random (a seeded random permutation: the answer format only)
    save_steps: int = 0        #: also save a checkpoint (resumable, loadable by eval) every N steps; 0: only the final weights
    precision: str = "auto"    #: auto (bf16 where the GPU supports it, else fp32), bf16, fp16 or fp32


def precision_flags(precision: str, use_cpu: bool) -> dict[str, bool]:
    """TrainingArguments' bf16/fp16 flags: ``auto`` follows the hardware (bf16 on a CUDA device
    that supports it, fp32 on CPU or older GPUs); ``bf16``, ``fp16`` and ``fp32`` force a choice."""
    if precision not in PRECISIONS:
        from flexrec_bench.foundation.errors import ConfigError

        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        from flexrec_bench.foundation.device import bf16_ok

        precision = "bf16" if not use_cpu and bf16_ok("cuda") else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


PRECISIONS = ("auto", "bf16", "fp16", "fp32")


SFT_TARGETS = ("ideal", "shown", "random")


def shown_scores(split: DatasetSplit):
    """(n, K) scores whose order is the candidates by the numbers the need's prompt prints beside
    them, highest first (several columns: the manifest's first decides, the next breaks its ties),
    remaining ties in the presented order. A need whose prompt prints no number: a one-line error."""
    import numpy as np

    from flexrec_bench.foundation.errors import ConfigError

    columns = split.shown_columns
    if not columns:
        raise ConfigError(f"SFT targets 'shown': need {split.need!r} prints no number beside its candidates "
                          "(manifest needs.<need>.prompt.candidate_columns is empty); use ideal or random")
    n, k = split.mask.shape
    values = [split.candidate_column(c) for c in columns]
    position = np.arange(k)
    scores = np.zeros((n, k))
    for i in range(n):  # np.lexsort: the last key is the primary one
        order = np.lexsort((position, *(-v[i] for v in reversed(values))))
        scores[i, order] = k - np.arange(k)
    return scores


def sft_rows(splits: list[DatasetSplit], prompt: PromptConfig, seed: int = 0, count_tokens=None,
             targets: str = "ideal") -> list[dict]:
    """(prompt, completion) rows; the completion lists every candidate id, in the ideal order,
    (``targets="shown"``) by the numbers the prompt prints beside the candidates, or
    (``targets="random"``) in a seeded random one, which teaches the format and nothing of the labels."""
    import numpy as np

    if targets not in SFT_TARGETS:
        from flexrec_bench.foundation.errors import ConfigError

        raise ConfigError(f"SFT targets must be one of {', '.join(SFT_TARGETS)}, got {targets!r}")
    rows = []
    for split in splits:
        if targets == "ideal":
            scores = split.relevance
        elif targets == "shown":
            scores = shown_scores(split)
        else:
            scores = np.random.default_rng([seed, 23, len(rows)]).random(split.mask.shape)
        order = scores_to_order(scores, split.mask, seed)
        for i in range(len(split)):
            ideal = [int(p) for p in order[i] if p >= 0]
            rows.append({"prompt": split_messages(split, i, prompt, count_tokens),
                         "completion": [{"role": "assistant", "content": target_completion(ideal)}]})
    return rows


def sft_train(model: str, splits: list[DatasetSplit], out_dir: str | Path, s: SFTSettings, progress: bool = True,
              callbacks: list | None = None) -> Path:
    """SFT on the splits' targets; returns the final weights' folder. ``callbacks``: transformers
    TrainerCallbacks (benchmarks/learnability.py reads a validation curve through one)."""
    trl = require("trl", "train", "SFT")
    datasets = require("datasets", "train", "SFT")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flexrec_bench.ranking.models import hub_access

    out = Path(out_dir)
    with hub_access(model, "model") as hub_kw:  # a hub id with the hub down: fail (or use the cache) at once
        tok = AutoTokenizer.from_pretrained(model, **hub_kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    count = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    ds = datasets.Dataset.from_list(sft_rows(splits, PromptConfig(max_prompt_tokens=s.max_prompt_tokens), s.seed, count,
                                             s.targets))
    use_cpu = (not torch.cuda.is_available()) if s.use_cpu is None else s.use_cpu
    peft_config = None
    if s.lora:
        peft = require("peft", "train", "LoRA")
        peft_config = peft.LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                      target_modules=list(s.target_modules), task_type="CAUSAL_LM")
    args = trl.SFTConfig(output_dir=str(out), max_steps=s.max_steps, learning_rate=s.learning_rate,
                         per_device_train_batch_size=s.per_device_train_batch_size, use_cpu=use_cpu, seed=s.seed,
                         save_strategy="steps" if s.save_steps > 0 else "no", save_steps=s.save_steps or 500, report_to="none", logging_steps=max(1, s.max_steps // 10),
                         disable_tqdm=not progress, completion_only_loss=True,
                         **precision_flags(s.precision, use_cpu),
                         # prompts are already within max_prompt_tokens: never truncate the target away
                         max_length=s.max_prompt_tokens + 1024)
    with hub_access(model, "model") as hub_kw:
        base = AutoModelForCausalLM.from_pretrained(model, **hub_kw)
    trainer = trl.SFTTrainer(model=base, args=args, train_dataset=ds,
                             processing_class=tok, peft_config=peft_config, callbacks=callbacks)
    trainer.train()
    final = out / "final"
    m = trainer.model
    if s.lora and s.merge_lora:
        m = m.merge_and_unload()
    m.save_pretrained(str(final))
    tok.save_pretrained(str(final))
    write_json_atomic(out / "sft_config.json", {"settings": asdict(s), "base_model": model,
                                                 "log": trainer.state.log_history})
    return final
