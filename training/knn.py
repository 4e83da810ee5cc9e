"""Collaborative-filtering reward signals for unobserved user-item pairs (the CF rows of the paper's
Table 8): Item-KNN and User-KNN over the observed training interactions, cosine similarity on the
binary user-item matrix (scipy sparse).

- Item-KNN: the label of candidate i for a user is the similarity-weighted mean of the user's own
  history labels, over the ``k`` history items most similar to i.
- User-KNN: the user's history (from the instance, so held-out users work too) is compared with
  every training user; the label is the similarity-weighted mean of the ``k`` nearest users'
  labels for i, over those of them who rated i. The instance's own user is never a neighbour.

Labels are the interest need's relevance (the critic's targets). Neither gives a variance (0), as
the paper notes of CF signals. Pairs with no similar evidence get 0, the evaluation label of an
unobserved pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from flexrec_bench.building.splits import DatasetSplit
from flexrec_bench.datasets import DATASETS
from flexrec_bench.foundation.errors import FlexRecError, MissingDataError
from flexrec_bench.foundation.paths import data_flag

from .config import default

KNN_KINDS = ("item_knn", "user_knn")


class KNNImputer:
    """``fill(split) -> (gains, variances)``, the interface of :class:`training.critic.Critic`."""

    def __init__(self, kind: str, data_dir: str | Path, dataset: str, k: int = default("knn_neighbors")):
        from flexrec_bench.building.splits import load_manifest

        from .critic import build_interest_options, interest_targets

        if kind not in KNN_KINDS:
            raise FlexRecError(f"unknown KNN signal {kind!r}: {' or '.join(KNN_KINDS)}")
        spec = DATASETS.get(dataset)
        if spec.signal_kind == "esci":
            raise FlexRecError("KNN reward signals need users; esci has none (its labels are all observed)")
        self.kind, self.k, self.signal_kind = kind, int(k), spec.signal_kind
        root = Path(data_dir) / dataset
        path = root / "interactions.parquet"
        if not path.exists():
            raise MissingDataError(f"{path} not found: run `flexrec-bench build-data --dataset {dataset}{data_flag(data_dir, '--out')}`")
        inter = pq.read_table(path, columns=["user_id", "item_id", "signal", "split", "observed"]).to_pandas()
        items = pq.read_table(root / "items.parquet", columns=["item_id"]).column("item_id").to_pylist()
        self.index = {iid: i for i, iid in enumerate(items)}
        inter = inter[(inter["split"] == "train") & inter["observed"]]
        if inter.empty:
            raise MissingDataError(f"{path}: no observed training interactions to impute from")
        inter = inter.groupby(["user_id", "item_id"], sort=True, observed=True)["signal"].mean().reset_index()
        ucodes, users = inter["user_id"].factorize()
        self.user_index = {str(u): i for i, u in enumerate(users)}
        cols = inter["item_id"].map(self.index).to_numpy(np.int64)
        options = build_interest_options(load_manifest(data_dir, dataset))
        self._targets = lambda signals, kind: interest_targets(signals, kind, options)
        y = self._targets(inter["signal"].to_numpy(np.float64), spec.signal_kind).astype(np.float64)
        shape = (len(users), len(items))
        self.R = sp.csr_matrix((y, (ucodes, cols)), shape=shape)                    # labels
        B = sp.csr_matrix((np.ones(len(y)), (ucodes, cols)), shape=shape)           # who rated what
        self.B = B
        self.Bt_norm = sp.csr_matrix(_col_normalised(B).T)                          # items x users, unit rows
        self.B_user_norm = _row_normalised(B)                                       # users x items, unit rows

    def fill(self, split: DatasetSplit) -> tuple[np.ndarray, np.ndarray]:
        gains = split.relevance.astype(np.float64).copy()
        var = np.zeros_like(gains)
        todo = split.mask & ~split.observed
        cands = split.frame["candidates"].tolist()
        hists = split.frame["history"].tolist()
        sigs = split.frame["history_signals"].tolist()
        users = split.frame["user_id"].tolist() if "user_id" in split.frame else [None] * len(split)
        for r in np.flatnonzero(todo.any(1)):
            cols = np.flatnonzero(todo[r])
            cand = np.array([self.index[cands[r][c]] for c in cols], np.int64)
            known = [i for i, h in enumerate(hists[r]) if h in self.index]
            if not known:
                continue
            hist = np.array([self.index[hists[r][i]] for i in known], np.int64)
            if self.kind == "item_knn":
                labels = self._targets(np.asarray(sigs[r], np.float64)[known], self.signal_kind)
                gains[r, cols] = self._item_knn(cand, hist, labels.astype(np.float64))
            else:
                gains[r, cols] = self._user_knn(cand, hist, self.user_index.get(str(users[r])))
        return gains.astype(np.float32), var.astype(np.float32)

    def _item_knn(self, cand: np.ndarray, hist: np.ndarray, labels: np.ndarray) -> np.ndarray:
        sim = (self.Bt_norm[cand] @ self.Bt_norm[hist].T).toarray()            # (C, H) cosine
        if self.k < sim.shape[1]:
            cut = np.partition(sim, -self.k, axis=1)[:, -self.k][:, None]
            sim = np.where(sim >= cut, sim, 0.0)
        den = sim.sum(1)
        return np.divide(sim @ labels, den, out=np.zeros(len(cand)), where=den > 0)

    def _user_knn(self, cand: np.ndarray, hist: np.ndarray, own: int | None) -> np.ndarray:
        h = np.zeros(self.B.shape[1])
        h[np.unique(hist)] = 1.0
        h /= np.linalg.norm(h)
        sim = self.B_user_norm @ h                                             # (users,) cosine
        if own is not None:
            sim[own] = 0.0
        top = np.argsort(-sim, kind="stable")[: self.k]
        top = top[sim[top] > 0]
        if len(top) == 0:
            return np.zeros(len(cand))
        w = sim[top]
        num = w @ self.R[top][:, cand].toarray()
        den = w @ self.B[top][:, cand].toarray()
        return np.divide(num, den, out=np.zeros(len(cand)), where=den > 0)


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    n = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(n, 1e-12)) @ m)


def _col_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    n = np.sqrt(np.asarray(m.multiply(m).sum(0)).ravel())
    return sp.csr_matrix(m @ sp.diags(1.0 / np.maximum(n, 1e-12)))
