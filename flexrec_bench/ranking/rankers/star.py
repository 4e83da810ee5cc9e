"""STAR (Lee et al. 2025), training-free: the score of candidate x given history (s_1..s_n) is

    score(x) = sum_j w_j * [a * R_s(x, s_j) + (1 - a) * R_c(x, s_j)] / sum_j w_j,
    w_j = (signal_j / scale) * lambda^(n - j)

with R_s the cosine similarity of item-text embeddings and R_c the cosine similarity of the items'
co-occurrence vectors over training users. Search instances (no history) use the query similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from flexrec_bench.ranking.permutations import RankResult, scores_to_order
from flexrec_bench.building.retrieval import STAR_LAMBDA, history_weights
from flexrec_bench.ranking.rankers.base import Ranker


@dataclass
class StarConfig:
    lam: float = STAR_LAMBDA   #: temporal discount per step back in the history
    a: float = 0.5     #: weight of the semantic term (1 - a: collaborative)


class StarRanker(Ranker):
    kind = "star"
    deterministic = True
    #: the history's item embeddings and co-occurrence; the retrieval score where the history is empty
    reads = ("history", "item_embeddings", "retrieval_scores", "train_interactions")
    order_invariant = True

    def __init__(self, arg=None, seed: int = 0, lam: float = STAR_LAMBDA, a: float = 0.5):
        from flexrec_bench.foundation.options import check_range

        super().__init__(arg, seed)
        check_range("lam", float(lam), "-o", 1e-6, 1.0)
        check_range("a", float(a), "-o", 0.0, 1.0)
        self.cfg = StarConfig(float(lam), float(a))

    def info(self) -> dict:
        d = super().info()
        d["config"].update(lam=self.cfg.lam, a=self.cfg.a)
        return d

    @staticmethod
    def cooccurrence(split) -> sp.csr_matrix:
        inter = split.interactions
        train = inter[inter["split"] == "train"]
        index = {iid: i for i, iid in enumerate(split.items["item_id"])}
        rows = train["item_id"].map(index).to_numpy()
        users, cols = np.unique(train["user_id"].to_numpy(), return_inverse=True)
        x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(index), len(users)))
        x.data[:] = 1.0  # binary, duplicates collapsed
        x.sum_duplicates()
        x.data[:] = 1.0
        norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
        return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ x

    def rank(self, split) -> RankResult:
        from flexrec_bench.datasets import DATASETS

        scale = DATASETS.get(split.dataset).signal_scale
        emb = split.embeddings
        index = {iid: i for i, iid in enumerate(split.items["item_id"])}
        x = self.cooccurrence(split) if len(split.interactions) else None
        scores = np.where(split.mask, split.retrieval_scores, 0.0)
        for i, row in enumerate(split.frame.itertuples()):
            if len(row.history) == 0:
                continue
            c = np.array([index[v] for v in row.candidates])
            h = np.array([index[v] for v in row.history])
            w = history_weights(np.asarray(row.history_signals, np.float64), self.cfg.lam, scale)
            if w.sum() <= 0:
                w = np.ones_like(w)
            sem = emb[c] @ emb[h].T
            col = (x[c] @ x[h].T).toarray() if x is not None else np.zeros_like(sem)
            scores[i, : len(c)] = (self.cfg.a * sem + (1 - self.cfg.a) * col) @ w / w.sum()
        return RankResult(scores_to_order(scores, split.mask, self.seed))
