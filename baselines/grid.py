"""Table 1's baselines for ``flexrec-bench reproduce``: train BERT4Rec or TALLRec for a grid cell
(reusing a finished checkpoint) and name the ranker that evaluates it."""

from __future__ import annotations

from pathlib import Path

from training.reproduce import ReproduceConfig

#: the --miniature BERT4Rec (ours): one small layer, one epoch
TINY_BERT4REC = {"epochs": 1, "n_layers": 1, "hidden_size": 16, "inner_size": 32, "MAX_ITEM_LIST_LENGTH": 10}


def train_for_grid(name: str, cfg: ReproduceConfig, run_dir: Path, progress: bool = True) -> str:
    if name == "bert4rec":
        from .bert4rec.runner import Bert4RecSettings, train_bert4rec

        if not (run_dir / "bert4rec.json").exists():
            train_bert4rec(cfg.data, cfg.dataset, run_dir, Bert4RecSettings(overrides=TINY_BERT4REC if cfg.miniature else {}))
        return f"bert4rec:{run_dir}"
    if name == "tallrec":
        from .tallrec import tallrec_settings, train_tallrec

        final = run_dir / "final"
        if not (final / "adapter_config.json").exists() and not (final / "config.json").exists():
            train_tallrec(cfg.model, cfg.data, cfg.dataset, [cfg.need], run_dir,
                          tallrec_settings(**({"max_steps": 2} if cfg.miniature else {})),
                          limit=8 if cfg.miniature else None, progress=progress)
        return f"hf:{final}"
    raise ValueError(f"no grid trainer for baseline {name!r}: bert4rec or tallrec")
