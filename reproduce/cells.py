"""The cells of each table and figure of the paper: which rows a grid has (training runs, baselines,
evaluation-only rankers), the metrics it reports, and the ``--rows`` selection. Running them is
:mod:`reproduce.grid`; the table, its statistics and its plot are :mod:`reproduce.report`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexrec_bench.foundation.errors import FlexRecError

from .config import JOINT_NEEDS, ReproduceConfig

_FIVE = ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "mrr@5")
METRICS = {("table", 1): (*_FIVE, "precision@5"), ("table", 2): _FIVE, ("table", 6): _FIVE,
           ("table", 3): ("ndcg@5", "ndcg@10", "ndcg@30", "precision@5", "recall@5"),
           ("table", 7): _FIVE, ("table", 8): _FIVE, ("table", 9): _FIVE,
           ("figure", 2): ("ndcg@5", "ndcg@10"), ("figure", 3): ("ndcg@5", "ndcg@10"),
           ("figure", 4): ("ndcg@5", "ndcg@10")}
HEADERS = {"ndcg@5": "N@5", "ndcg@10": "N@10", "ndcg@30": "N@30", "recall@5": "R@5", "precision@5": "P@5",
         "mrr@5": "MRR@5"}
#: the paper's dataset names, for looking its numbers up
PAPER_DATASET = {"kuairec": "KuaiRec", "ml-1m": "MovieLens-1M", "esci": "ESCI"}
PPO_MISSING = "PPO runs on the verl backend only (GPUs; TRL 1.x has no PPO trainer)"
#: --miniature trains each cell with the smoke preset for this many steps (which also caps validation)
MINIATURE_STEPS = 2


@dataclass
class Cell:
    """One row of a table or one line of a figure: how to get a ranker for it."""

    label: str                                  #: the row as the paper prints it
    algo: str | None = None                     #: a training run of this algorithm...
    sets: dict[str, Any] = field(default_factory=dict)
    ranker: str | None = None                   #: ...or an evaluation-only ranker ("star", "hf:<model>", ...)
    baseline: str | None = None                 #: ...or a baseline to train first (bert4rec, tallrec)
    missing: str | None = None                  #: why it cannot run here
    train_needs: tuple[str, ...] | None = None  #: the needs a trained cell learns (default: the grid's)
    base: bool = False                          #: the base model: the step-0 policy trained rows are tested against


def _llm_rows(cfg: ReproduceConfig, base_label: str = "Qwen2.5-3B-Instruct", sft: str = "TALLRec",
              flexrec: bool = True) -> list[Cell]:
    gpt = (Cell("GPT-4o", ranker=f"openai:{cfg.openai_model}") if cfg.openai_model else
           Cell("GPT-4o", missing="needs --openai-model (an OpenAI-compatible endpoint and key)"))
    plus = "Qwen2.5-3B-Instruct + " if base_label == "Qwen2.5-3B-Instruct" else f"{base_label} + "
    rows = [gpt, Cell(base_label, ranker=f"hf:{cfg.model}", base=True), Cell(f"{plus}{sft}", baseline="tallrec")]
    if sft == "SFT":  # Table 9 lists PPO among its post-trained rows
        rows.append(Cell(f"{plus}PPO", "flexrec", {"estimator": "ppo", "item_reward": "sequence"},
                         missing=PPO_MISSING if cfg.backend == "local" else None))
    rows += [Cell(f"{plus}Rec-R1", "rec-r1"), Cell(f"{plus}Rank-GRPO", "rank-grpo")]
    if flexrec:
        rows.append(Cell(f"{plus}FlexRec", "flexrec"))
    return rows


def cells(cfg: ReproduceConfig) -> list[Cell]:
    """The rows of a table or the lines of a figure, as the paper prints them."""
    kind, n = cfg.kind
    if kind == "table" and n in (1, 2, 6):
        return [Cell("BERT4Rec", baseline="bert4rec"), Cell("STAR", ranker="star"), *_llm_rows(cfg)]
    if kind == "table" and n == 3:
        return [Cell("BERT4Rec", missing="the paper's row is empty: BERT4Rec models users' sequences and ESCI has none"),
                Cell("STAR", ranker="star"), *_llm_rows(cfg)]
    if kind == "table" and n == 9:
        return [Cell("BERT4Rec", baseline="bert4rec"), Cell("STAR (retriever)", ranker="star"),
                *_llm_rows(cfg, "Qwen2.5-3B", "SFT", flexrec=False)]
    if kind == "table" and n == 7:
        out = []
        for est in ("GRPO", "PPO"):
            for variant, label in (("independent", "Independent contribution"),
                                   ("noncausal_swap", "Swap-based contribution (non-causal)"),
                                   ("causal_swap", "CausalSwap reward (ours)")):
                missing = PPO_MISSING if est == "PPO" and cfg.backend == "local" else None
                out.append(Cell(f"{est} / {label}", "flexrec", {"item_reward": variant, "estimator": est.lower()},
                                missing=missing))
        return out
    if kind == "table" and n == 8 or kind == "figure" and n == 4:
        no_cf = _no_interactions(cfg)
        rows = [Cell(OBSERVED_ROW, "flexrec", {"reward_signal": "observed", "uncertainty": False}),
                Cell("User-KNN CF", "flexrec", {"reward_signal": "user_knn"}, missing=no_cf),
                Cell("Item-KNN CF", "flexrec", {"reward_signal": "item_knn"}, missing=no_cf),
                Cell("Raw critic", "flexrec", {"reward_signal": "critic", "uncertainty": False}),
                Cell("FlexRec: Uncertainty-aware Critic", "flexrec", {"reward_signal": "critic", "uncertainty": True})]
        return rows + ([Cell("Base model (step 0)", ranker=f"hf:{cfg.model}", base=True)] if kind == "figure" else [])
    if kind == "figure" and n == 3:
        return [Cell("Sequence-level GRPO (Rec-R1)", "rec-r1"),
                Cell("Rank-level (Rank-GRPO)", "rank-grpo"),
                Cell("Independent contribution", "flexrec", {"item_reward": "independent"}),
                Cell("Swap-based (non-causal)", "flexrec", {"item_reward": "noncausal_swap"}),
                Cell("CausalSwap (FlexRec)", "flexrec", {"item_reward": "causal_swap"}),
                Cell("Base model (step 0)", ranker=f"hf:{cfg.model}", base=True)]
    if kind == "figure" and n == 2:
        return [Cell("FlexRec, trained jointly on all needs", "flexrec", train_needs=JOINT_NEEDS),
                *[Cell(f"FlexRec, trained on {need}", "flexrec", train_needs=(need,)) for need in JOINT_NEEDS],
                Cell("Base model (step 0)", ranker=f"hf:{cfg.model}", base=True)]
    raise AssertionError((kind, n))  # pragma: no cover - checked by cfg.kind


#: Table 8's and Figure 4's reference row (ours, not in the paper): no imputation, unobserved pairs count 0
OBSERVED_ROW = "Observed labels only (ours: no imputation)"


def _no_interactions(cfg: ReproduceConfig) -> str | None:
    """Why the KNN rows cannot run on this build (it has no interactions to find neighbours in), or None."""
    import pyarrow.parquet as pq

    path = Path(cfg.data) / cfg.dataset / "interactions.parquet"
    if path.exists() and pq.read_metadata(path).num_rows == 0:
        return f"collaborative filtering needs interactions; {path} has none"
    return None


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def select_rows(grid: list[Cell], spec: str | None) -> list[Cell]:
    """The rows ``--rows`` names, in the grid's order. A name picks the one row whose slug is it or
    holds it as whole words (``rec-r1`` → "Sequence-level GRPO (Rec-R1)", ``causalswap`` → "CausalSwap
    (FlexRec)"); the base model is kept whenever a trained row runs, since trained rows are tested
    against it. A name that picks no row or several is an error that lists the rows."""
    if not spec:
        return grid
    slugs = [slug(c.label) for c in grid]
    chosen: set[int] = set()
    for name in (n.strip() for n in spec.split(",")):
        key = slug(name)
        if not key:
            continue
        hits = [i for i, s in enumerate(slugs) if s == key] or \
            [i for i, s in enumerate(slugs) if re.search(rf"(^|-){re.escape(key)}(-|$)", s)]
        if len(hits) != 1:
            import difflib

            words = {"-".join(w[i:j]) for w in (s.split("-") for s in slugs)
                     for i in range(len(w)) for j in range(i + 1, len(w) + 1)}
            near = difflib.get_close_matches(key, sorted(words), n=1, cutoff=0.6) if not hits else []
            what = (f"matches {len(hits)} rows ({', '.join(slugs[i] for i in hits)}); name one" if hits else
                    "matches no row" + (f" (did you mean {near[0]!r}?)" if near else ""))
            raise FlexRecError(f"--rows {name!r} {what}. The rows: {', '.join(slugs)}")
        chosen |= set(hits)
    if any(grid[i].algo or grid[i].baseline for i in chosen):
        chosen |= {i for i, c in enumerate(grid) if c.base}
    return [c for i, c in enumerate(grid) if i in chosen]
