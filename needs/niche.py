from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flexrec_bench.need import LabelContext, Labels, Need, minmax


@dataclass
class NicheNeed(Need):
    """Explore new topics (the paper, Appendix B): retrieval relevance times a multiplicative bonus
    for niche candidates.

    niche = the candidate has topics and none of them appears in the shown history (KuaiRec: topic
    tags; MovieLens: genres; an untagged candidate is never niche);
    base = minmax over the instance of cosine(user profile, candidate);
    rel = base * (1 + bonus * niche) / (1 + bonus)   (in [0, 1]; bonus 2 is ours);
    relevant: rel > 1 / (1 + bonus), the most any non-niche candidate can score; so every relevant
    item is niche and beats every familiar one, and the relevant set is a superlevel set of the
    graded relevance (the ideal ranking puts all relevant items first, as for every need).
    """

    name: ClassVar[str] = "niche"
    instruction: ClassVar[str] = (
        "Help this user explore new topics: rank first the candidates they would still like but whose "
        "genres or topics do not appear in their history.")
    label_source: ClassVar[str] = "derived: minmax embedding similarity x bonus for candidates none of whose topics the history shows"
    signal_kinds: ClassVar[tuple[str, ...]] = ("rating", "watch_ratio")

    bonus: float = 2.0
    #: "none_seen" (the paper): niche when none of the candidate's topics is in the history;
    #: "share_unseen" (ours): graded, niche = the share of its topics the history does not show
    rule: str = "none_seen"

    def __post_init__(self) -> None:
        if self.rule not in ("none_seen", "share_unseen"):
            raise ValueError(f"niche rule must be none_seen or share_unseen, got {self.rule!r}")

    def label(self, ctx: LabelContext) -> Labels:
        base = minmax(ctx.similarity.astype(np.float64), ctx.mask)
        niche = np.zeros(ctx.mask.shape, dtype=np.float64)
        for i, (topics, hist) in enumerate(zip(ctx.candidate_topics, ctx.history_topics)):
            for j, t in enumerate(topics):
                if not t:
                    continue  # untagged: never niche
                if self.rule == "none_seen":
                    niche[i, j] = float(t.isdisjoint(hist))
                else:
                    niche[i, j] = len(t - hist) / len(t)
        rel = base * (1.0 + self.bonus * niche) / (1.0 + self.bonus)
        rel = np.where(ctx.mask, rel, 0.0).astype(np.float32)
        relevant = ctx.mask & (rel > 1.0 / (1.0 + self.bonus) + 1e-9)
        return Labels(rel, relevant, ctx.mask.copy())
