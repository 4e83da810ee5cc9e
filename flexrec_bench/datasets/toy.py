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

The toy is a family (issue 46), so that a result does not rest on one draw: ``types`` user types
(1 = a fixed target order, the unconditional rung), ``k`` candidates and ``slots_seed`` (the three
slots of each type drawn at random; ``None`` keeps the classic table above, for 4 types and 8
candidates). ``need_conditional`` adds a second need, ``toy-alt``, on the very same instances
(query and candidates alike) whose instruction differs and whose three slots per type are drawn
from the slots the first need leaves at 0: the same query under two need lines wants two different
orders, so only a ranker that reads the need line can score on both.

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

from flexrec_bench.foundation.errors import MissingDataError
from flexrec_bench.datasets.base import RawData

TYPES = ("north", "south", "east", "west")
#: the names of a family member's types, in order (``types`` = n takes the first n)
TYPE_NAMES = TYPES + ("red", "green", "blue", "gold", "oak", "pine", "elm", "ash")
#: per type, the slots (0-based) of its gains 1, 0.5, 0.25; every other slot scores 0
SLOTS = {"north": (1, 6, 3), "south": (4, 0, 7), "east": (2, 5, 0), "west": (7, 3, 5)}
GAINS = (1.0, 0.5, 0.25)
K = 8
MAX_K = 32
NOUNS = ("hat", "cup", "lamp", "sock", "bag", "pen", "mug", "box", "book", "shoe", "ball", "kite", "fork", "drum",
         "vase", "comb")
ADJECTIVES = ("small", "large", "plain", "bright", "soft", "heavy", "round", "tall")
NEED = "toy"
INSTRUCTION = "Rank first the candidates that this type of user likes most."
ALT_NEED = "toy-alt"
ALT_INSTRUCTION = "Rank first the candidates that this type of user would give away as a gift."
SIZES = {"train": 2000, "val": 128, "test": 400}


def type_gains(user_type: str, slots: dict[str, tuple[int, ...]] | None = None, k: int = K) -> np.ndarray:
    """(k,) the true gains of the k slots for a user type (``slots``: a family member's table;
    default the classic one)."""
    rel = np.zeros(k)
    rel[list((slots or SLOTS)[user_type])] = GAINS
    return rel


def toy_slots(types: int = len(TYPES), k: int = K, slots_seed: int | None = None
              ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The slot tables of a family member: (the ``toy`` need's, the ``toy-alt`` need's). Each type
    gets three distinct slots; its alternative three are drawn from the other k - 3. ``slots_seed``
    None: the classic table (4 types, 8 candidates only)."""
    if not 1 <= types <= len(TYPE_NAMES):
        raise ValueError(f"toy: types must be 1..{len(TYPE_NAMES)}, got {types}")
    if not 6 <= k <= MAX_K:
        raise ValueError(f"toy: k (candidates) must be 6..{MAX_K} (3 slots per need, two needs), got {k}")
    names = TYPE_NAMES[:types]
    if slots_seed is None:
        if (types, k) != (len(TYPES), K):
            raise ValueError(f"toy: the classic slot table is for {len(TYPES)} types and {K} candidates; "
                             f"give slots_seed to draw slots for types={types}, k={k}")
        main = dict(SLOTS)
    else:
        rng = np.random.default_rng([slots_seed, 19])
        main = {t: tuple(int(x) for x in rng.choice(k, 3, replace=False)) for t in names}
    alt_rng = np.random.default_rng([0 if slots_seed is None else slots_seed, 23])
    alt = {}
    for t in names:
        free = [j for j in range(k) if j not in main[t]]
        alt[t] = tuple(int(free[x]) for x in alt_rng.choice(len(free), 3, replace=False))
    return main, alt


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
                    observed_fraction: float = 1.0, types: int = len(TYPES), k: int = K,
                    slots_seed: int | None = None, need_conditional: bool = False) -> Path:
    """Write ``<out>/toy/`` (a build folder that ``load_split`` reads) and return it.
    ``observed_fraction`` < 1: each training candidate is observed with that probability (the
    prompts are the same as the dense build's). ``types``, ``k``, ``slots_seed`` pick a member of
    the family (:func:`toy_slots`); ``need_conditional`` also writes the ``toy-alt`` need on the
    same instances. The defaults are the classic toy, byte for byte."""
    from flexrec_bench.foundation.digests import label_digest
    from flexrec_bench.foundation.io import sha256_file, write_json_atomic, write_parquet_atomic

    if not 0.0 < observed_fraction <= 1.0:
        raise ValueError(f"observed_fraction must be in (0, 1], got {observed_fraction}")
    sizes = {**SIZES, **(sizes or {})}
    slots, alt_slots = toy_slots(types, k, slots_seed)
    names = TYPE_NAMES[:types]
    classic = (types, k, slots_seed) == (len(TYPES), K, None)
    rng = np.random.default_rng([seed, 7])
    seen_rng = np.random.default_rng([seed, 11])  # apart from rng, so the prompts match the dense build's
    items = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
    root = Path(out) / "toy"
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    needs = {NEED: slots, **({ALT_NEED: alt_slots} if need_conditional else {})}
    for split, n in sizes.items():
        rows: dict[str, list[dict]] = {need: [] for need in needs}
        for i in range(n):
            t = names[int(rng.integers(types))]
            cands = [items[j] for j in rng.choice(len(items), k, replace=False)]
            seen = np.ones(k, bool)
            if split == "train" and observed_fraction < 1.0:
                seen = seen_rng.random(k) < observed_fraction
            for need, table_slots in needs.items():
                rel = np.where(seen, type_gains(t, table_slots, k), 0.0)
                rows[need].append({"instance_id": f"{split}{i}", "user_id": "", "query": f"user type {t}",
                                   "history": [], "history_signals": [], "history_times": [], "query_time": 0,
                                   "candidates": [c.replace(" ", "-") for c in cands], "retrieval_scores": [0.0] * k,
                                   "relevance": rel.tolist(), "relevant": (rel >= 0.5).tolist(),
                                   "observed": seen.tolist()})
        for need in needs:
            table = _table(rows[need])
            write_parquet_atomic(root / need / f"{split}.parquet", table)
            digest.update(f"{split}\n{label_digest(table)}".encode() if need == NEED else
                          f"{need}/{split}\n{label_digest(table)}".encode())
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
    config = {"dataset": "toy", "candidates": k, "sizes": sizes, "seed": seed,
              **({"observed_fraction": observed_fraction} if observed_fraction < 1.0 else {}),
              **({} if classic else {"types": types, "slots_seed": slots_seed}),
              **({"need_conditional": True} if need_conditional else {})}
    label = "synthetic: the query's user type decides the gains of three slots" + (
        "" if observed_fraction == 1.0 else f"; training candidates observed with probability {observed_fraction}")
    need_meta = {NEED: {"instruction": INSTRUCTION, "config": {"slots": slots, "gains": GAINS}, "prompt": {},
                        "label_source": label}}
    if need_conditional:
        need_meta[ALT_NEED] = {"instruction": ALT_INSTRUCTION, "config": {"slots": alt_slots, "gains": GAINS},
                               "prompt": {}, "label_source": label + "; the same instances as toy, other slots"}
    write_json_atomic(root / "manifest.json", {
        "schema_version": 3, "dataset": "toy",
        "fingerprint": hashlib.sha256(json.dumps({"config": config, "labels": digest.hexdigest()},
                                                 sort_keys=True).encode()).hexdigest()[:16],
        "config": config, "outputs": outputs, "embedder": {"name": "none", "dim": 1, "machine_specific": False},
        "counts": {"items": len(items), "instances": {need: sizes for need in needs}},
        "needs": need_meta})
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
    from flexrec_bench.foundation.io import write_json_atomic, write_parquet_atomic

    noise = noise or ToyCriticNoise()
    if noise.unreliable not in ("gaussian", "uniform"):
        raise ValueError(f"ToyCriticNoise.unreliable must be gaussian or uniform, got {noise.unreliable!r}")
    root = Path(data) / dataset_dir
    manifest = json.loads((root / "manifest.json").read_text())
    slots = {t: tuple(v) for t, v in manifest["needs"][NEED]["config"]["slots"].items()}
    k = int(manifest["config"]["candidates"])
    rng = np.random.default_rng([noise.seed, 13])
    rows = {"need": [], "split": [], "instance_id": [], "mean": [], "variance": []}
    for split in ("train", "val"):
        table = pq.read_table(root / NEED / f"{split}.parquet", columns=["instance_id", "query"])
        for iid, query in zip(table["instance_id"].to_pylist(), table["query"].to_pylist()):
            truth = type_gains(query.rsplit(" ", 1)[-1], slots, k)
            bad = rng.random(k) < noise.unreliable_fraction
            sd = np.where(bad, noise.unreliable_sd, noise.reliable_sd)
            mean = np.clip(truth + rng.normal(0.0, 1.0, k) * sd, 0.0, 1.0)
            if noise.unreliable == "uniform":
                mean = np.where(bad, rng.random(k), mean)
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
