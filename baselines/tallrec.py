"""TALLRec: LoRA SFT (r 8, alpha 16, dropout 0.05, q_proj/v_proj) on the ideal ranked list, with
the same prompt builder as eval. The checkpoint is a LoRA adapter directory that
``eval --model hf:<dir>`` loads through peft."""

from __future__ import annotations

from pathlib import Path

import yaml

from flexrec_bench.building.splits import load_split
from flexrec_bench.foundation.errors import FlexRecError
from training.sft import SFTSettings, sft_train

CONFIG = Path(__file__).with_name("tallrec.yaml")


def tallrec_settings(path: Path = CONFIG, **overrides) -> SFTSettings:
    """SFT settings from TALLRec's YAML (the paper's defaults) with ``overrides`` (``--set``
    strings or values) on top, each converted to its field's type by the one converter."""
    import typing

    from flexrec_bench.foundation.options import convert

    raw = {**(yaml.safe_load(Path(path).read_text()) or {}), **overrides}
    bad = sorted(set(raw) - set(SFTSettings.__dataclass_fields__))
    if bad:
        from flexrec_bench.foundation.registry import did_you_mean

        raise FlexRecError(f"unknown SFT setting {bad[0]!r}; {did_you_mean(bad[0], sorted(SFTSettings.__dataclass_fields__))}")
    hints = typing.get_type_hints(SFTSettings)
    return SFTSettings(**{k: convert(v, hints[k], "--set" if k in overrides else str(path), k) for k, v in raw.items()})


def train_tallrec(model: str, data_dir: str | Path, dataset: str, needs: list[str], out_dir: str | Path,
                  settings: SFTSettings | None = None, limit: int | None = None, progress: bool = True) -> Path:
    settings = settings or tallrec_settings()
    splits = [load_split(data_dir, dataset, n, "train").head(limit) for n in needs]
    return sft_train(model, splits, out_dir, settings, progress=progress)
