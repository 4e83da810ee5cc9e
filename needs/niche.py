from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flexrec_bench.need import LabelContext, Labels, Need, minmax


@dataclass
class NicheNeed(Need):
    """Explore new topics: embedding relevance with a multiplicative bonus for novel topics.

    base = minmax over the instance of cosine(user profile, candidate);
    novelty = share of the candidate's topics that occur nowhere in the shown history (0 when it has none);
    rel = base * (1 + bonus * novelty) / (1 + bonus)   (in [0, 1]);
    relevant: rel > 1 / (1 + bonus), the most any candidate without a new topic can score; so every
    relevant item has a new topic and beats every familiar one, and the relevant set is a superlevel
    set of the graded relevance (the ideal ranking puts all relevant items first, as for every need).
    """

    name: ClassVar[str] = "niche"
    instruction: ClassVar[str] = (
        "Help this user explore new topics: rank first the candidates they would still like but whose "
        "genres or topics do not appear in their history.")
    label_source: ClassVar[str] = "derived: minmax embedding similarity x novelty bonus for unseen topics"
    signal_kinds: ClassVar[tuple[str, ...]] = ("rating", "watch_ratio")

    bonus: float = 2.0

    def label(self, ctx: LabelContext) -> Labels:
        base = minmax(ctx.similarity.astype(np.float64), ctx.mask)
        novelty = np.zeros(ctx.mask.shape, dtype=np.float64)
        for i, (topics, hist) in enumerate(zip(ctx.candidate_topics, ctx.history_topics)):
            for j, t in enumerate(topics):
                if t:
                    novelty[i, j] = len(t - hist) / len(t)
        rel = base * (1.0 + self.bonus * novelty) / (1.0 + self.bonus)
        rel = np.where(ctx.mask, rel, 0.0).astype(np.float32)
        relevant = ctx.mask & (rel > 1.0 / (1.0 + self.bonus) + 1e-9)
        return Labels(rel, relevant, ctx.mask.copy())
