"""Query tasks (ESCI product search): an instance is a search query; its candidates are the
query's annotated products, the top K by similarity to the query."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flexrec_bench.building.splits import SPLITS
from flexrec_bench.datasets.signals import ESCI_CODE
from flexrec_bench.foundation.errors import DataError
from flexrec_bench.building.retrieval import exact_scores
from flexrec_bench.building.instance_kinds.base import Instances, InstanceKind, Known, rng

if TYPE_CHECKING:
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.datasets import RawData
    from flexrec_bench.building.embed import Embedder


class QueryTask(InstanceKind):
    name = "query"

    def reader_options(self, cfg):
        return {"locale": cfg.esci_locale, "version": cfg.esci_version}

    def instances(self, raw, inter, cfg, spec, item_index, embedder, progress):
        return query_instances(raw, cfg, item_index, embedder)

    def candidates(self, split, inst, emb, cfg, spec, raw, item_index):
        query_candidates(inst, emb, cfg)
        return 0


def query_instances(raw: RawData, cfg: BuildConfig, item_index: dict[str, int], embedder: Embedder):
    q = raw.queries
    q = q[q["item_id"].isin(item_index)]
    groups = {qid: g for qid, g in q.groupby("query_id", sort=True)}
    train_q = sorted(qid for qid, g in groups.items() if g["split"].iloc[0] == "train")
    test_q = sorted(qid for qid, g in groups.items() if g["split"].iloc[0] == "test")
    perm = rng(cfg.seed, 1).permutation(len(train_q))
    n_val = int(round(cfg.esci_val_fraction * len(train_q)))
    val_set = {train_q[i] for i in perm[:n_val]}
    by_split = {"train": [x for x in train_q if x not in val_set], "val": sorted(val_set), "test": test_q}
    sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}
    out = {}
    for s_i, split in enumerate(SPLITS):
        qids = by_split[split]
        if not qids:
            raise DataError(raw.sources[0], f"empty {split} split: no {split} queries with known products")
        if len(qids) > sizes[split]:
            pick = np.sort(rng(cfg.seed, 10 + s_i).choice(len(qids), sizes[split], replace=False))
            qids = [qids[i] for i in pick]
        n = len(qids)
        inst = Instances(
            instance_id=[f"q{qid}" for qid in qids], user_id=[""] * n,
            query=[groups[qid]["query"].iloc[0] for qid in qids],
            history=[np.zeros(0, np.int64)] * n, history_signals=[np.zeros(0)] * n, history_times=[np.zeros(0, np.int64)] * n,
            query_time=np.zeros(n, np.int64), exclude=[np.zeros(0, np.int64)] * n,
            known=[Known(groups[qid]["item_id"].map(item_index).to_numpy(np.int64),
                         groups[qid]["label"].map(ESCI_CODE).to_numpy(np.float64)) for qid in qids])
        inst.profiles = embedder.encode(inst.query)
        out[split] = inst
    return out, raw.interactions.assign(split=pd.Series([], dtype=str), item_idx=pd.Series([], dtype="int64"))


def query_candidates(inst: Instances, emb: np.ndarray, cfg: BuildConfig) -> None:
    """ESCI: the candidates are the query's annotated products, ordered by retrieval score (top K)."""
    k = cfg.candidates
    inst.candidates = np.full((len(inst), k), -1, np.int64)
    inst.scores = np.full((len(inst), k), -np.inf, np.float64)
    for i in range(len(inst)):
        items = inst.known[i].items  # sorted, one per product
        sc = exact_scores(emb[items], inst.profiles[i])
        order = np.lexsort((items, -sc))[:k]
        inst.candidates[i, : len(order)] = items[order]
        inst.scores[i, : len(order)] = sc[order]
