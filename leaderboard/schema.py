"""Leaderboard models. An entry *is* a results file (the same pydantic model) plus what the
verification established; the JSON Schema in ``leaderboard.schema.json`` is generated from these
models (``python -m leaderboard.schema`` rewrites it; a test fails when it is stale)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.scoring.results import ResultsFile

#: the board this checkout ships
DEFAULT_PATH = Path(__file__).with_name("leaderboard.json")

LEADERBOARD_SCHEMA_VERSION = 2
#: the metric the page ranks by and tests significance on
PRIMARY_METRIC = "ndcg@10"
SCHEMA_PATH = Path(__file__).with_name("leaderboard.schema.json")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Verification(_Strict):
    rescored: Literal[True] = Field(description="metrics were recomputed from rankings.parquet and matched")
    rankings_sha256: str
    rankings_file: str | None = Field(default=None, description=(
        "the rankings the entry was scored from, kept by the board (relative to the leaderboard file's folder): "
        "`flexrec-bench leaderboard verify` re-scores every entry from them"))
    rerun: bool = Field(default=False, description=(
        "the named model is a built-in, offline ranker and submit reran it: these rankings are its own"))
    instances: int = Field(ge=1)
    submitted_at: str = Field(description="UTC, ISO 8601")
    flexrec_bench_version: str = Field(description="version that verified the entry")
    per_instance: dict[str, list[float | None]] = Field(
        default_factory=dict, description=(
            "re-scored per-instance values of the page's primary metric (PRIMARY_METRIC), in the split's instance "
            "order, null where undefined: the page's paired tests against the best entry use them"))


class Entry(_Strict):
    results: ResultsFile
    verification: Verification

    @property
    def key(self) -> tuple:
        """What makes two entries the same run: model, display name, revision, options, eval seed, build,
        need and split (another seed or another name of the same model is another entry)."""
        r = self.results
        return (r.model.name, r.model.display_name, r.model.revision, r.model.variant, int(r.config.get("seed") or 0),
                r.dataset.fingerprint, r.dataset.need, r.dataset.split)

    def options_text(self) -> str:
        """The options that make the variant, as ``a=0.7, window=20`` (secrets and transport left out)."""
        from flexrec_bench.scoring.eval_config import variant_options

        return ", ".join(f"{k}={v}" for k, v in sorted(variant_options(self.results.config.get("options") or {}).items()))

    def label(self) -> str:
        """How the entry is named to people: display name (else the model card's name, for a local
        model folder that carries one; else the model), revision, options and seed when set."""
        m = self.results.model
        card = m.config.get("model_card")
        seed = int(self.results.config.get("seed") or 0)
        extra = [f"revision {m.revision}" if m.revision else "", self.options_text() if m.variant else "",
                 f"seed {seed}" if seed else ""]
        more = ", ".join(x for x in extra if x)
        name = m.display_name or (card.get("name") if isinstance(card, dict) else None) or m.name
        return name + (f" ({more})" if more else "")


class ReportedResult(_Strict):
    """A number reported in a paper: shown apart, labelled, never verified or ranked with entries."""

    source: str = Field(description="citation, e.g. 'Pan et al. (FlexRec), Table 2'")
    method: str
    dataset: str
    need: str
    metric: str
    value: float


class ReportedCritic(_Strict):
    """The paper's critic quality (Table 4): test MSE, MAE and Pearson correlations, one per row."""

    source: str
    method: str
    dataset: str
    metric: Literal["mse", "mae", "pearson_mean", "pearson_var"] = Field(
        description="pearson_var: Pearson correlation of the predicted variance with the squared error")
    value: float


class NeedReference(_Strict):
    """What the registered build's audit says of one need: reference rows on the page, not rankers."""

    formula_ceiling: float | None = Field(description=(
        "NDCG@10 on test of the best ranker of what a ranker is shown, fitted on train (flexrec_bench.building.formula_audit)"))
    ceiling_model: str | None = Field(default=None, description="which shown-input ranker reached the ceiling")
    oracle: float | None = Field(default=None, description="NDCG@10 on test of the labels themselves")
    solvable: bool = Field(description="the ceiling reaches the audit's share of the oracle: solvable from what the "
                                       "ranker is shown")
    label_inputs: list[str] = Field(default_factory=list, description=(
        "the shown inputs the label is a formula of (empty: the label reads what no ranker is shown)"))
    candidate_recall: float | None = Field(default=None, description=(
        "share of the test instances' held-out positives among their candidates (caps every interest metric)"))
    need_blind_ceiling: float | None = Field(default=None, description=(
        "NDCG@10 on test of ranking by the interest labels, scored under this need's: a ranker that ignores the "
        "need line (flexrec_bench.building.formula_audit.need_blind_audit)"))
    need_blind: bool = Field(default=False, description="the need-blind ceiling reaches the audit's bar: a need-blind "
                                                        "ranker solves this reading")


class RegisteredBuild(_Strict):
    """The build of one dataset that every entry must be scored on (a reviewed edit, never a submit)."""

    fingerprint: str = Field(description="manifest.fingerprint of the registered build")
    digests: str = Field(description="per-instance digests of the build, a file under leaderboard/ "
                                     "(python -m leaderboard.builds register writes it)")
    digests_sha256: str = Field(description="sha256 of that file (a hand edit of the digests is refused)")
    command: str = Field(description="the command that makes this build on any machine")
    references: dict[str, NeedReference] = Field(default_factory=dict, description=(
        "need -> the build's formula ceiling, oracle and candidate recall (from its manifest's audit), shown as "
        "reference rows"))


class Leaderboard(_Strict):
    schema_version: Literal[2] = LEADERBOARD_SCHEMA_VERSION
    registered_builds: dict[str, RegisteredBuild] = Field(
        default_factory=dict, description="dataset -> the build every entry must be scored on")
    entries: list[Entry] = Field(default_factory=list)


class PaperResults(_Strict):
    """Numbers reported in the FlexRec paper, in their own file (leaderboard/paper_results.json):
    reference values shown beside the verified entries, never verified or ranked with them."""

    reported_in_paper: list[ReportedResult] = Field(
        default_factory=list, description="reference numbers from papers, unverified, shown in a separate table")
    reported_critic_in_paper: list[ReportedCritic] = Field(
        default_factory=list, description="the paper's critic quality (Table 4), unverified")


PAPER_PATH = Path(__file__).with_name("paper_results.json")


def load_paper(path: Path = PAPER_PATH) -> PaperResults:
    return PaperResults.model_validate_json(path.read_text(encoding="utf-8"))


def json_schema() -> dict:
    return Leaderboard.model_json_schema()


def paper_json_schema() -> dict:
    return PaperResults.model_json_schema()


def write_schema(path: Path = SCHEMA_PATH) -> None:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")


def load(path: str | Path) -> Leaderboard:
    p = Path(path)
    if p.is_dir():
        raise FlexRecError(f"{p}: is a folder; --leaderboard names the leaderboard's JSON file")
    if not p.exists():
        return Leaderboard()
    try:
        return Leaderboard.model_validate_json(p.read_text(encoding="utf-8"))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise FlexRecError(f"{p}: invalid leaderboard at {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    except UnicodeDecodeError as exc:
        raise FlexRecError(f"{p}: not UTF-8 text (byte {exc.start}); expected the leaderboard's JSON") from None
    except OSError as exc:
        raise FlexRecError(f"{p}: cannot read ({exc.strerror or exc})") from None


if __name__ == "__main__":
    write_schema()
    print(f"wrote {SCHEMA_PATH}")
