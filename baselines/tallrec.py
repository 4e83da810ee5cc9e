"""TALLRec: LoRA SFT (r 8, alpha 16, dropout 0.05, q_proj/v_proj) on the ideal ranked list, with
the same prompt builder as eval. The checkpoint is a LoRA adapter directory that
``eval --model hf:<dir>`` loads through peft."""

from __future__ import annotations

from pathlib import Path

from flexrec_bench.data import load_split
from training.sft import SFTSettings, sft_train


def train_tallrec(model: str, data_dir: str | Path, dataset: str, needs: list[str], out_dir: str | Path,
                  settings: SFTSettings | None = None, limit: int | None = None, progress: bool = True) -> Path:
    settings = settings or SFTSettings()
    splits = [load_split(data_dir, dataset, n, "train").head(limit) for n in needs]
    return sft_train(model, splits, out_dir, settings, progress=progress)
