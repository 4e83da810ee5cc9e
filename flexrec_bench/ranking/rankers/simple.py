"""Reference rankers: random (floor), popularity (training counts), oracle (ceiling)."""

from __future__ import annotations

import numpy as np

from flexrec_bench.ranking.permutations import RankResult, scores_to_order
from flexrec_bench.ranking.rankers.base import Ranker


class RandomRanker(Ranker):
    kind = "random"
    deterministic = True

    def rank(self, split) -> RankResult:
        rng = np.random.default_rng([self.seed, 11])
        return RankResult(scores_to_order(rng.random(split.mask.shape), split.mask, self.seed))


class PopularityRanker(Ranker):
    """Candidates by their number of interactions among training users; ties in seeded random order."""

    kind = "popularity"
    deterministic = True
    reads = ("train_count",)
    order_invariant = True

    def rank(self, split) -> RankResult:
        counts = split.items["train_count"]
        scores = np.zeros(split.mask.shape)
        for i, cands in enumerate(split.frame["candidates"]):
            scores[i, : len(cands)] = counts.reindex(cands).fillna(0).to_numpy()
        return RankResult(scores_to_order(scores, split.mask, self.seed))


class OracleRanker(Ranker):
    """The ideal ranking from the labels themselves: a sanity upper bound, not a method."""

    kind = "oracle"
    deterministic = True
    reads = ("labels",)
    order_invariant = True

    def rank(self, split) -> RankResult:
        return RankResult(scores_to_order(split.relevance, split.mask, self.seed))
