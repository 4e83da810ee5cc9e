from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from flexrec_bench.building.labeling import OMIT_DEFAULT, LabelContext, Labels, Need, minmax

from .interest import check_mix, check_reading, heldout_gain, mixed_relevance

#: what ``rule`` may be: when a candidate counts as niche (its topics against the history's)
NICHE_RULES = ("some_unseen", "none_seen", "share_unseen")
#: the base relevance the bonus multiplies
NICHE_BASES = ("cosine", "minmax")
#: which candidates form the relevant set (Recall, Precision, MRR)
NICHE_RELEVANT = ("niche", "above_bound")


@dataclass
class NicheNeed(Need):
    """Explore new topics (the paper, Appendix B.2): a base relevance from embedding retrieval times a
    multiplicative bonus for niche candidates.

    Default reading (ours, argued in docs/data.md):

    - niche (``rule="some_unseen"``): some of the candidate's topics do not appear in the shown
      history (KuaiRec: topic tags; MovieLens: genres). An untagged candidate is never niche (the
      paper). ``"none_seen"``: none of them appears (the literal "its topic does not appear");
      ``"share_unseen"``: graded, the share of its topics the history does not show.
    - base (``base="cosine"``): the raw cosine of user profile and candidate, clipped at 0 (the
      paper's "base relevance score obtained via embedding-based retrieval"); ``"minmax"``: min-max
      scaled within the instance.
    - rel = base * (1 + bonus * niche) / (1 + bonus)  (bonus 1 is ours; dividing by 1 + bonus keeps
      rel in [0, 1] and changes no ranking).
    - relevant (``relevant="niche"``): the niche candidates with a positive base; ``"above_bound"``:
      rel > 1 / (1 + bonus), the most a non-niche candidate can score.

    The earlier default (the paper's literal rule with a min-max base) is
    ``rule=none_seen, base=minmax, bonus=2, relevant=above_bound``.

    ``relevance="heldout"`` (ours, beside the paper's reading): the base is what the user did after
    the query time, the interest need's gain (unrated candidates 0, unobserved), instead of the
    similarity the ranker is shown; the bonus keeps its role: rel = gain * (1 + bonus * niche) /
    (1 + bonus); relevant: the user's held-out positives that are niche. Under the paper's reading
    the label is a formula of what a ranker receives (the retrieval score and the shown topics).

    ``relevance="mixed"`` (ours, issue 47): rel = mix * minmax(held-out gain) + (1 - mix) *
    minmax(niche degree), within the instance; relevant: as under ``heldout``. The shown topics alone
    get the second term, a need-blind ranker that knows what the user likes the first; ``mix`` (ours,
    chosen from a sweep: benchmarks/README.md) sets the balance.
    """

    name: ClassVar[str] = "niche"
    instruction: ClassVar[str] = (
        "Help this user explore new topics: rank first the candidates they would still like but whose "
        "genres or topics do not appear in their history.")
    label_source: ClassVar[str] = ("derived: embedding similarity x a bonus for candidates with a topic the history "
                                   "does not show")
    signal_kinds: ClassVar[tuple[str, ...]] = ("rating", "watch_ratio")

    bonus: float = 1.0
    rule: str = "some_unseen"
    base: str = "cosine"
    relevant: str = "niche"
    #: "paper": base relevance from the retrieval similarity; "heldout": from the user's later signal (ours)
    relevance: str = field(default="paper", metadata={OMIT_DEFAULT: True})
    #: the held-out gain's weight under relevance=mixed (ours; the niche degree's is 1 - mix)
    mix: float = field(default=0.7, metadata={OMIT_DEFAULT: True})

    heldout_label_source: ClassVar[str] = ("held-out (ours): the user's later signal (interest gain, unrated 0) x a "
                                           "bonus for candidates with a topic the history does not show")
    mixed_label_source: ClassVar[str] = ("mixed (ours): mix * minmax(the user's later signal, unrated 0) + (1 - mix) * "
                                         "minmax(niche degree: a topic the history does not show)")

    def __post_init__(self) -> None:
        check_reading("niche", self.relevance)
        check_mix("niche", self.mix)
        for name, allowed in (("rule", NICHE_RULES), ("base", NICHE_BASES), ("relevant", NICHE_RELEVANT)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"niche {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not (isinstance(self.bonus, (int, float)) and np.isfinite(self.bonus) and self.bonus > 0):
            raise ValueError(f"niche bonus must be a finite number > 0, got {self.bonus!r}")

    def niche_degree(self, ctx: LabelContext) -> np.ndarray:
        """(n, K) in [0, 1]: how niche each candidate is under ``rule`` (0 on padding)."""
        out = np.zeros(ctx.mask.shape, dtype=np.float64)
        for i, (topics, hist) in enumerate(zip(ctx.candidate_topics, ctx.history_topics)):
            for j, t in enumerate(topics):
                if not t:
                    continue  # untagged: never niche
                unseen = len(t - hist)
                if self.rule == "some_unseen":
                    out[i, j] = float(unseen > 0)
                elif self.rule == "none_seen":
                    out[i, j] = float(unseen == len(t))
                else:
                    out[i, j] = unseen / len(t)
        return out

    def describe(self) -> str:
        return {"heldout": self.heldout_label_source, "mixed": self.mixed_label_source}.get(self.relevance,
                                                                                               self.label_source)

    def label_inputs(self) -> tuple[str, ...]:
        return ("retrieval_scores", "topics") if self.relevance == "paper" else ()

    def label(self, ctx: LabelContext) -> Labels:
        niche = self.niche_degree(ctx)
        if self.relevance in ("heldout", "mixed"):
            held = heldout_gain(ctx)
            rel = (np.where(ctx.mask, held.relevance * (1.0 + self.bonus * niche) / (1.0 + self.bonus), 0.0)
                   if self.relevance == "heldout" else mixed_relevance(held.relevance, niche, self.mix, ctx.mask))
            return Labels(rel, held.relevant & (niche > 0), held.observed)
        sim = ctx.similarity.astype(np.float64)
        base = minmax(sim, ctx.mask) if self.base == "minmax" else np.clip(sim, 0.0, None)
        rel = np.where(ctx.mask, base * (1.0 + self.bonus * niche) / (1.0 + self.bonus), 0.0)
        if self.relevant == "niche":
            relevant = ctx.mask & (niche > 0) & (base > 0)
        else:
            relevant = ctx.mask & (rel > 1.0 / (1.0 + self.bonus) + 1e-9)
        return Labels(rel, relevant, ctx.mask.copy())

    def prompt_spec(self, topic_name: str) -> dict:
        return {"history_topics": topic_name}
