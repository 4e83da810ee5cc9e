from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from flexrec_bench.building.labeling import OMIT_DEFAULT, LabelContext, Labels, Need, minmax

from .interest import check_mix, check_reading, heldout_gain, mixed_relevance


@dataclass
class TrendNeed(Need):
    """Trend promotion (the paper, Appendix B.3): rel = alpha * minmax(similarity) + (1 - alpha) *
    minmax(recent count), where the count is the number of interactions (all users) with the
    candidate in the ``window_seconds`` before the instance's query time (the paper: one day).
    Relevant: rel >= ``relevant_threshold`` (ours). The prompt shows each candidate's count, with
    the window named (the count is stored as the label table's ``recent_count`` column).

    ``relevance="heldout"`` (ours, beside the paper's reading): the similarity term is replaced by
    what the user did after the query time, the interest need's gain (unrated candidates 0,
    unobserved), and the count keeps its role as a weight: rel = gain * (alpha + (1 - alpha) *
    minmax(recent count)); relevant: the user's held-out positives whose trend weight alpha + (1 -
    alpha) * minmax(count) reaches ``relevant_threshold``. (Multiplying, not adding: an added count
    term would rank the many unrated candidates by the shown count alone, a formula again.) Under the
    paper's reading the label is a formula of what a ranker receives (the retrieval score and the
    shown count).

    ``relevance="mixed"`` (ours, issue 47): rel = mix * minmax(held-out gain) + (1 - mix) *
    minmax(recent count), within the instance; relevant: as under ``heldout``. The count alone (a
    formula of what is shown) gets the second term, a need-blind ranker that knows what the user likes
    the first; ``mix`` (ours, chosen from a sweep: benchmarks/README.md) sets the balance."""

    name: ClassVar[str] = "trend"
    instruction: ClassVar[str] = (
        "Promote what is trending: rank first the candidates that many people interacted with recently "
        "and that still suit this user.")
    label_source: ClassVar[str] = "derived: alpha * minmax(similarity) + (1 - alpha) * minmax(recent count)"
    signal_kinds: ClassVar[tuple[str, ...]] = ("rating", "watch_ratio")

    alpha: float = 0.5
    window_seconds: int = 86_400
    relevant_threshold: float = 0.6
    #: "paper": the similarity term; "heldout": the user's later signal as the relevance term (ours)
    relevance: str = field(default="paper", metadata={OMIT_DEFAULT: True})
    #: the held-out gain's weight under relevance=mixed (ours; the count's is 1 - mix)
    mix: float = field(default=0.8, metadata={OMIT_DEFAULT: True})

    heldout_label_source: ClassVar[str] = ("held-out (ours): the user's later signal (interest gain, unrated 0) x "
                                           "(alpha + (1 - alpha) * minmax(recent count))")
    mixed_label_source: ClassVar[str] = ("mixed (ours): mix * minmax(the user's later signal, unrated 0) + (1 - mix) * "
                                         "minmax(recent count)")

    def __post_init__(self) -> None:
        check_reading("trend", self.relevance)
        check_mix("trend", self.mix)
        for name in ("alpha", "relevant_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:  # also refuses nan
                raise ValueError(f"trend {name} must be a number in [0, 1], got {v!r}")
        if isinstance(self.window_seconds, bool) or not isinstance(self.window_seconds, int) or self.window_seconds < 1:
            raise ValueError(f"trend window_seconds must be an integer >= 1, got {self.window_seconds!r}")

    def describe(self) -> str:
        return {"heldout": self.heldout_label_source, "mixed": self.mixed_label_source}.get(self.relevance,
                                                                                               self.label_source)

    def label_inputs(self) -> tuple[str, ...]:
        return ("retrieval_scores", "recent_count") if self.relevance == "paper" else ()

    def label(self, ctx: LabelContext) -> Labels:
        counts = ctx.window_counts(self.window_seconds).astype(np.float64)
        shown = {"recent_count": np.where(ctx.mask, counts, 0.0)}
        if self.relevance in ("heldout", "mixed"):
            held = heldout_gain(ctx)
            weight = self.alpha + (1.0 - self.alpha) * minmax(counts, ctx.mask)
            rel = (np.where(ctx.mask, held.relevance * weight, 0.0) if self.relevance == "heldout" else
                   mixed_relevance(held.relevance, counts, self.mix, ctx.mask))
            return Labels(rel, held.relevant & (weight >= self.relevant_threshold), held.observed, shown=shown)
        rel = self.alpha * minmax(ctx.similarity.astype(np.float64), ctx.mask) + (1.0 - self.alpha) * minmax(counts, ctx.mask)
        rel = np.where(ctx.mask, rel, 0.0)
        return Labels(rel, ctx.mask & (rel >= self.relevant_threshold), ctx.mask.copy(), shown=shown)

    def prompt_spec(self, topic_name: str) -> dict:
        return {"candidate_columns": {"recent_count": "interactions by all users in the " + window_text(
            self.window_seconds) + " before this request: {}"}}


def window_text(seconds: int) -> str:
    """'1 day', '7 days', '6 hours', '90 seconds': the window as a prompt names it."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"
