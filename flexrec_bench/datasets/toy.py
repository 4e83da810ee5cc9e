"""``toy``: a synthetic ranking task a tiny model learns on a CPU in minutes, written directly as a
build (label tables, items, manifest), for showing that the trainers learn through the project's
own training path: the prompts, the ranking environment, the advantages and the TRL trainer
(benchmarks/miniature.py).

Each instance's query names a kind of user (``user type north``; four types). The type alone
decides the graded gains of the 8 presented candidates: type t gives gains (1, 0.5, 0.25) to three
fixed slots of its own and 0 to the other five (e.g. north: C2 1.0, C7 0.5, C4 0.25). The item
texts are random product names that say nothing. So a ranker must learn the map from the type
token to the ids, and the order among the three matters (NDCG@3 rewards it): position-aware credit
has something to find. It is the smallest task where a tiny random-init model can be taught by the
rewards alone; it says nothing about recommendation quality. The same on every machine (no float
enters its labels).

The sparse variant (``observed_fraction`` < 1, Table 8 in miniature) has the same prompts; only a
random share of each *training* instance's candidates is observed (the rest count 0, as unobserved
pairs do in the real builds), while validation and test keep every label, so curves and scores
measure the truth. :func:`write_toy_critic` then writes a critic with known noise for it: an
imputation table whose estimates are the true gains plus Gaussian noise of a per-pair standard
deviation (small for reliable pairs, large for unreliable ones; or, for the unreliable ones, a
uniform draw that ignores the truth) and whose reported variance is that noise's variance, so
uncertainty weighting has something true to act on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MissingDataError
from .base import RawData

TYPES = ("north", "south", "east", "west")
#: per type, the slots (0-based) of its gains 1, 0.5, 0.25; every other slot scores 0
SLOTS = {"north": (1, 6, 3), "south": (4, 0, 7), "east": (2, 5, 0), "west": (7, 3, 5)}
GAINS = (1.0, 0.5, 0.25)
K = 8
NOUNS = ("hat", "cup", "lamp", "sock", "bag", "pen", "mug", "box", "book", "shoe", "ball", "kite", "fork", "drum",
         "vase", "comb")
ADJECTIVES = ("small", "large", "plain", "bright", "soft", "heavy", "round", "tall")
NEED = "toy"
INSTRUCTION = "Rank first the candidates that this type of user likes most."
SIZES = {"train": 2000, "val": 128, "test": 400}


def type_gains(user_type: str) -> np.ndarray:
    """(K,) the true gains of the 8 slots for a user type."""
    rel = np.zeros(K)
    rel[list(SLOTS[user_type])] = GAINS
    return rel


def read_toy(raw_dir: Path | None = None, **_options) -> RawData:
    raise MissingDataError("the toy dataset is not built from raw files: `python benchmarks/miniature.py` writes it "
                           "(flexrec_bench.datasets.toy.write_toy_build)")


def _table(rows: list[dict]) -> pa.Table:
    lists = {"history": pa.list_(pa.string()), "history_signals": pa.list_(pa.float64()),
             "history_times": pa.list_(pa.int64()), "candidates": pa.list_(pa.string()),
             "retrieval_scores": pa.list_(pa.float32()), "relevance": pa.list_(pa.float32()),
             "relevant": pa.list_(pa.bool_()), "observed": pa.list_(pa.bool_())}
    cols = {}
    for name in ("instance_id", "user_id", "query", "history", "history_signals", "history_times", "query_time",
                 "candidates", "retrieval_scores", "relevance", "relevant", "observed"):
        typ = lists.get(name, pa.int64() if name == "query_time" else pa.string())
        cols[name] = pa.array([r[name] for r in rows], typ)
    return pa.table(cols)


def write_toy_build(out: str | Path, sizes: dict[str, int] | None = None, seed: int = 0,
                    observed_fraction: float = 1.0) -> Path:
    """Write ``<out>/toy/`` (a build folder that ``load_split`` reads) and return it.
    ``observed_fraction`` < 1: each training candidate is observed with that probability (the
    prompts are the same as the dense build's)."""
    from ..digests import label_digest
    from ..io import sha256_file, write_json_atomic, write_parquet_atomic

    if not 0.0 < observed_fraction <= 1.0:
        raise ValueError(f"observed_fraction must be in (0, 1], got {observed_fraction}")
    sizes = {**SIZES, **(sizes or {})}
    rng = np.random.default_rng([seed, 7])
    seen_rng = np.random.default_rng([seed, 11])  # apart from rng, so the prompts match the dense build's
    items = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
    root = Path(out) / "toy"
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for split, n in sizes.items():
        rows = []
        for i in range(n):
            t = TYPES[int(rng.integers(len(TYPES)))]
            cands = [items[j] for j in rng.choice(len(items), K, replace=False)]
            rel = type_gains(t)
            seen = np.ones(K, bool)
            if split == "train" and observed_fraction < 1.0:
                seen = seen_rng.random(K) < observed_fraction
                rel = np.where(seen, rel, 0.0)
            rows.append({"instance_id": f"{split}{i}", "user_id": "", "query": f"user type {t}", "history": [],
                         "history_signals": [], "history_times": [], "query_time": 0,
                         "candidates": [c.replace(" ", "-") for c in cands], "retrieval_scores": [0.0] * K,
                         "relevance": rel.tolist(), "relevant": (rel >= 0.5).tolist(), "observed": seen.tolist()})
        table = _table(rows)
        write_parquet_atomic(root / NEED / f"{split}.parquet", table)
        digest.update(f"{split}\n{label_digest(table)}".encode())
    write_parquet_atomic(root / "items.parquet", pa.table({
        "item_id": [c.replace(" ", "-") for c in items], "title": items,
        "text": [f"Product title: {c}" for c in items], "topics": pa.array([[]] * len(items), pa.list_(pa.string())),
        "train_count": pa.array([0] * len(items), pa.int64())}))
    write_parquet_atomic(root / "interactions.parquet", pa.table({
        "user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string()), "signal": pa.array([], pa.float64()),
        "timestamp": pa.array([], pa.int64()), "observed": pa.array([], pa.bool_()), "split": pa.array([], pa.string())}))
    np.save(root / "embeddings.npy", np.zeros((len(items), 1), np.float32), allow_pickle=False)
    outputs = {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
               for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    config = {"dataset": "toy", "candidates": K, "sizes": sizes, "seed": seed,
              **({"observed_fraction": observed_fraction} if observed_fraction < 1.0 else {})}
    write_json_atomic(root / "manifest.json", {
        "schema_version": 3, "dataset": "toy",
        "fingerprint": hashlib.sha256(json.dumps({"config": config, "labels": digest.hexdigest()},
                                                 sort_keys=True).encode()).hexdigest()[:16],
        "config": config, "outputs": outputs, "embedder": {"name": "none", "dim": 1, "machine_specific": False},
        "counts": {"items": len(items), "instances": {NEED: sizes}},
        "needs": {NEED: {"instruction": INSTRUCTION, "config": {"slots": SLOTS, "gains": GAINS}, "prompt": {},
                         "label_source": "synthetic: the query's user type decides the gains of three slots"
                                         + ("" if observed_fraction == 1.0 else
                                            f"; training candidates observed with probability {observed_fraction}")}}})
    return root


@dataclass(frozen=True)
class ToyCriticNoise:
    """The toy critic's known noise (every value ours, chosen so that half the estimates mislead)."""

    unreliable_fraction: float = 0.5   #: share of unobserved pairs whose estimate is unreliable
    reliable_sd: float = 0.05          #: noise s.d. of a reliable estimate
    unreliable_sd: float = 0.5         #: noise s.d. of an unreliable estimate (gains lie in [0, 1])
    unreliable: str = "gaussian"       #: gaussian (the truth plus N(0, unreliable_sd²)) or uniform (a draw from [0, 1] that ignores the truth, reported with variance unreliable_sd²: a misleading critic)
    seed: int = 0                      #: seeds which pairs are unreliable and their noise


def write_toy_critic(data: str | Path, noise: ToyCriticNoise | None = None, dataset_dir: str = "toy") -> Path:
    """Write a critic with known noise for the toy build in ``<data>/toy``: ``<data>/critics/toy/
    imputations.parquet`` (one row per training and validation instance: the estimate and the
    reported variance of each candidate) and ``critic.json`` (the noise model and the build's
    fingerprint). Estimates are the true gains (the dense build's) plus N(0, sd²), clipped to
    [0, 1], or for unreliable pairs with ``unreliable="uniform"`` a draw from [0, 1]; the reported
    variance is sd²."""
    from ..io import write_json_atomic, write_parquet_atomic

    noise = noise or ToyCriticNoise()
    if noise.unreliable not in ("gaussian", "uniform"):
        raise ValueError(f"ToyCriticNoise.unreliable must be gaussian or uniform, got {noise.unreliable!r}")
    root = Path(data) / dataset_dir
    manifest = json.loads((root / "manifest.json").read_text())
    rng = np.random.default_rng([noise.seed, 13])
    rows = {"need": [], "split": [], "instance_id": [], "mean": [], "variance": []}
    for split in ("train", "val"):
        table = pq.read_table(root / NEED / f"{split}.parquet", columns=["instance_id", "query"])
        for iid, query in zip(table["instance_id"].to_pylist(), table["query"].to_pylist()):
            truth = type_gains(query.rsplit(" ", 1)[-1])
            bad = rng.random(K) < noise.unreliable_fraction
            sd = np.where(bad, noise.unreliable_sd, noise.reliable_sd)
            mean = np.clip(truth + rng.normal(0.0, 1.0, K) * sd, 0.0, 1.0)
            if noise.unreliable == "uniform":
                mean = np.where(bad, rng.random(K), mean)
            rows["need"].append(NEED)
            rows["split"].append(split)
            rows["instance_id"].append(iid)
            rows["mean"].append(mean.tolist())
            rows["variance"].append((sd * sd).tolist())
    dest = Path(data) / "critics" / dataset_dir
    write_parquet_atomic(dest / "imputations.parquet", pa.table({
        "need": rows["need"], "split": rows["split"], "instance_id": rows["instance_id"],
        "mean": pa.array(rows["mean"], pa.list_(pa.float64())),
        "variance": pa.array(rows["variance"], pa.list_(pa.float64()))}))
    write_json_atomic(dest / "critic.json", {"kind": "imputations", "dataset": "toy",
                                             "fingerprint": manifest["fingerprint"], "noise": asdict(noise)})
    return dest
