"""``flexrec-bench build-data``: raw files -> splits -> STAR candidates -> need labels -> Parquet.

Every choice the paper leaves open is a field of :class:`BuildConfig` (documented in
docs/data.md) and is written, resolved, into the manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from flexrec_bench.foundation.version import __version__
from flexrec_bench.datasets import DATASETS, DatasetSpec, RawData
from flexrec_bench.datasets.signals import POSITIVE_SIGNAL
from flexrec_bench.building.config import NOT_IN_FINGERPRINT, BuildConfig
from flexrec_bench.building.embed import Embedder
from flexrec_bench.datasets.pinned import resolve as resolve_pinned
from flexrec_bench.foundation.errors import DataError, FlexRecError, MissingDataError
from flexrec_bench.building.audit import summarize_audit
from flexrec_bench.building.leak_audit import SplitAudit, audit_table, label_arrays
from flexrec_bench.foundation.digests import FINGERPRINT_DECIMALS, label_digest, shown_columns
from flexrec_bench.foundation.io import sha256_file, write_json_atomic, write_parquet_atomic, writing
from flexrec_bench.building.labeling import LabelContext, Need, make_need
from flexrec_bench.foundation.paths import embedding_cache_dir
from flexrec_bench.foundation.publish import fault, locked, new_tmp_dir, publish, recover
from flexrec_bench.foundation.paths import raw_dir as default_raw_dir
from flexrec_bench.building.instance_kinds import Instances, InstanceKind, get_instance_kind
from flexrec_bench.building.instance_kinds.base import in_sorted
from flexrec_bench.building.instance_kinds.sequential import WindowCounter

MANIFEST_SCHEMA_VERSION = 3


@dataclass
class BuildResult:
    path: Path
    manifest: dict
    stage_seconds: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
def _resolve_raw_dir(cfg: BuildConfig, spec: DatasetSpec) -> Path | None:
    if cfg.raw_dir:
        p = Path(cfg.raw_dir)
        if not p.exists():
            raise MissingDataError(f"--raw-dir {p} does not exist")
        return p
    if spec.bundled:
        return None  # the reader finds (or makes) its data itself
    p = default_raw_dir(spec.name)
    if not p.exists():
        if spec.manual_instructions:
            raise MissingDataError(spec.manual_instructions.format(raw_dir=p))
        raise MissingDataError(f"{spec.name} raw files not found in {p}: run `flexrec-bench download --dataset "
                               f"{spec.name}` or pass --raw-dir")
    return p


def _check_raw(raw: RawData, spec: DatasetSpec, task: InstanceKind) -> tuple[pd.DataFrame, pd.DataFrame]:
    items = raw.items
    if items.empty:
        raise DataError(raw.sources[-1] if raw.sources else spec.name, "no items read; expected item metadata rows")
    dup = items.duplicated("item_id")
    raw.count_skip("duplicate item rows", int(dup.sum()))
    items = items[~dup].reset_index(drop=True)
    inter = task.clean_interactions(raw.interactions, items, raw, spec)
    return items, inter.reset_index(drop=True)


def build(cfg: BuildConfig, progress: bool = True, device: str | None = None) -> BuildResult:
    """Build one dataset; the output directory appears only when the whole build succeeded.
    ``device`` runs the embedder (auto: CUDA when present); it changes speed, never the data."""
    # one I/O thread: hashing the raw files and writing the interactions table overlap the build
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="build-io") as background:
        return _build(cfg, progress, device, background)


def _build(cfg: BuildConfig, progress: bool, device: str | None, background: ThreadPoolExecutor) -> BuildResult:
    cfg.validate()
    spec = DATASETS.get(cfg.dataset)
    cfg = cfg.resolved(spec)
    task = get_instance_kind(spec.instance_kind)
    unknown = sorted(set(cfg.need_options) - set(cfg.needs))
    if unknown:
        raise FlexRecError(f"--need-option names need(s) not built: {', '.join(unknown)} (built: {', '.join(cfg.needs)})")
    needs: list[Need] = [make_need(n, cfg.need_options.get(n, {})) for n in cfg.needs]
    for need in needs:
        if spec.signal_kind not in need.signal_kinds:
            reading = cfg.need_options.get(need.name, {}).get("relevance")
            why = (f" (--need-option {need.name}.relevance={reading} reads a held-out user signal, which {spec.name} "
                   f"has none of; allowed there: paper)" if reading in ("heldout", "mixed") else "")
            raise FlexRecError(f"need {need.name!r} cannot label {spec.name} (signal {spec.signal_kind}){why}; "
                               f"{spec.name} supports: {', '.join(spec.default_needs)}")
    timer = _Timer()
    with timer.stage("read"):
        raw = spec.reader(_resolve_raw_dir(cfg, spec), **task.reader_options(cfg))
        items, inter = _check_raw(raw, spec, task)
    source_hashes = background.submit(_hash_sources, raw.sources)  # beside the (one-core) stages that follow
    item_index = {iid: i for i, iid in enumerate(items["item_id"])}
    with timer.stage("embed"):
        pinned_spec, pinned = resolve_pinned(spec.name, spec.embeddings, cfg.embedder, cfg.embeddings)
        embedder = Embedder(cfg.embedder, cache_dir=embedding_cache_dir(), progress=progress, device=device,
                            pinned=pinned)
        emb = embedder.encode(items["text"].tolist())
    with timer.stage("split"):
        splits, inter = task.instances(raw, inter, cfg, spec, item_index, embedder, progress)
    provenance = embedding_provenance(embedder, pinned_spec)
    if cfg.embeddings == "pinned" and provenance["texts_computed_here"]:
        raise DataError(pinned_spec.filename, f"{provenance['texts_computed_here']} of the build's texts have no pinned "
                                              f"vector (are the raw files another release than the artifact's?); "
                                              f"build with --embeddings auto or local")
    final = Path(cfg.out) / spec.name
    # one writer per output folder; a killed build's leftovers are cleaned by the next (publish.py)
    with locked(final, what="build"):
        recover(final)
        tmp = new_tmp_dir(final)
        # the interactions table (the largest file) is converted and written on the I/O thread,
        # beside retrieval and labelling
        written: Future = background.submit(_write_interactions, tmp / "interactions.parquet", inter)
        try:
            with timer.stage("retrieve"):
                injected, quality = {}, {}
                for split, inst in splits.items():
                    injected[split] = task.candidates(split, inst, emb, cfg, spec, raw, item_index)
                    quality[split] = candidate_recall(inst, POSITIVE_SIGNAL[spec.signal_kind])
                    if cfg.candidate_order == "shuffled":
                        _shuffle_presentation(inst, cfg.seed)
            item_topics = [frozenset(t) for t in items["topics"]]
            counter = task.window_counts(inter, item_index)
            counts: dict[str, dict[str, int]] = {}
            audits: dict[str, dict[str, SplitAudit]] = {}
            formulas: dict[str, dict] = {}
            test_labels: dict[str, tuple] = {}  # need -> the test split's (relevance, relevant, mask)
            labelled: dict[str, dict[str, pa.Table]] = {}  # need -> split -> its label table, for the formula audit
            labels = hashlib.sha256()
            contexts = {split: _label_context(inst, spec, item_topics, counter) for split, inst in splits.items()}
            ids = items["item_id"].to_numpy()
            train_counts = _train_counts(items, inter)
            for need in tqdm(needs, desc="label needs", disable=not progress):
                counts[need.name], audits[need.name] = {}, {}
                tables = {}
                for split, inst in splits.items():
                    with timer.stage("label"):
                        table = tables[split] = _label_table(need, inst, contexts[split], ids)
                        labels.update(f"{need.name}/{split}\n".encode())
                        labels.update(label_digest(table).encode())
                    with timer.stage("write"):
                        write_parquet_atomic(tmp / need.name / f"{split}.parquet", table)
                    counts[need.name][split] = table.num_rows
                    with timer.stage("leak audit"):
                        audits[need.name][split] = audit_table(table, cfg.seed,
                                                               ("retrieval_scores", *shown_columns(table)))
                labelled[need.name] = tables
            with timer.stage("write"):
                write_parquet_atomic(tmp / "items.parquet", _items_table(items, train_counts))
                with writing(final):
                    np.save(tmp / "embeddings.npy", emb, allow_pickle=False)
                written.result()  # the I/O thread is idle from here: the audit's fits have both cores
                sources = source_hashes.result()
            if cfg.formula_audit:
                with timer.stage("formula audit"):
                    from flexrec_bench.building.formula_audit import add_need_blind

                    for need in needs:
                        tables = labelled[need.name]
                        formulas[need.name] = _formula_audit(need, tables, ids, item_topics, train_counts, spec,
                                                             cfg.seed, cfg.audit_sample)
                        if "test" in tables:
                            test_labels[need.name] = label_arrays(tables["test"])
                    add_need_blind(formulas, test_labels, cfg.seed)
            with timer.stage("write"):
                manifest = _manifest(cfg, spec, raw, needs, tmp, counts, injected, items, inter, provenance,
                                     emb.shape[1], labels.hexdigest(),
                                     summarize_audit(audits, formulas, formula_skipped=not cfg.formula_audit), quality,
                                     sources)
                write_json_atomic(tmp / "manifest.json", manifest)
            if spec.license:  # the dataset card: the build loads with datasets.load_dataset (flexrec_bench.building.card)
                from flexrec_bench.building.card import write_card

                with timer.stage("card"), writing(final):
                    write_card(tmp, manifest, spec)
            fault("build:written")
            publish(tmp, final)
        finally:
            written.exception()  # a failed build: let the write finish before tmp goes
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(final, manifest, timer.seconds)


def build_texts(cfg: BuildConfig) -> list[str]:
    """Every text a build of ``cfg.dataset`` embeds: the item texts, and for query datasets every
    search query (what a pinned artifact must cover)."""
    cfg.validate()
    spec = DATASETS.get(cfg.dataset)
    cfg = cfg.resolved(spec)
    task = get_instance_kind(spec.instance_kind)
    raw = spec.reader(_resolve_raw_dir(cfg, spec), **task.reader_options(cfg))
    items, _ = _check_raw(raw, spec, task)
    texts = items["text"].tolist()
    if raw.queries is not None:
        texts += sorted(set(raw.queries["query"].astype(str)))
    return list(dict.fromkeys(texts))


def export_embeddings(cfg: BuildConfig, path: str | Path, progress: bool = True, device: str | None = None):
    """Compute the vectors of every text a build embeds on this machine and write them as a pinned
    artifact (flexrec_bench.datasets.pinned); returns the :class:`~flexrec_bench.datasets.pinned.PinnedSpec` to publish."""
    from flexrec_bench.datasets.pinned import PinnedSpec, text_key, write_artifact

    texts = build_texts(cfg)
    name = cfg.embedder or DATASETS.get(cfg.dataset).default_embedder
    vectors = Embedder(name, cache_dir=embedding_cache_dir(), progress=progress, device=device).encode(texts)
    path = Path(path)
    sha, size = write_artifact(path, [text_key(t) for t in texts], vectors)
    return PinnedSpec(embedder=name, filename=path.name, sha256=sha, size=size, texts=len(texts))


# --------------------------------------------------------------------------------------------
MACHINE_SPECIFIC = "embeddings computed on this machine: the fingerprint is machine-specific"
#: model-free embedders: signed hashing of word or character n-gram counts, exact in float32
PORTABLE_EMBEDDERS = ("hashing-", "ngrams-")


def embedding_provenance(embedder: Embedder, spec) -> dict:
    """Where a build's vectors came from (the manifest's ``embedder`` entry, and a fingerprint input).
    Vectors computed here are machine-specific, except those of the model-free embedders, which count
    and hash in exact arithmetic (the same vectors on every machine)."""
    here = int(embedder.computed_here)
    portable = embedder.name.startswith(PORTABLE_EMBEDDERS)
    note = ("pinned embeddings: the fingerprint is the same on every machine" if not here else
            "model-free embedder: the same vectors, and fingerprint, on every machine" if portable else MACHINE_SPECIFIC)
    return {"name": embedder.name, "artifact": ({"file": spec.filename, "sha256": spec.sha256} if spec else None),
            "texts_pinned": int(embedder.pinned_hits), "texts_computed_here": here,
            "machine_specific": bool(here) and not portable, "note": note}


def candidate_recall(inst: Instances, positive: float) -> dict:
    """How good the candidates are: of the positives each instance holds out (its user's interactions
    after the cut, or its query's annotations, with a signal >= ``positive``), the share among its K
    candidates (micro-averaged), and the share of instances with at least one positive retrieved."""
    total = hit = with_hit = with_pos = 0
    for i in range(len(inst)):
        pos = inst.known[i].at_least(positive)
        if not len(pos):
            continue
        row = inst.candidates[i]
        got = int(in_sorted(pos, row[row >= 0])[1].sum())  # pos is sorted; a row's candidates are distinct
        total, hit, with_pos, with_hit = total + len(pos), hit + got, with_pos + 1, with_hit + (got > 0)
    return {"held_out_positives": total, "retrieved": hit, "recall": round(hit / total, 6) if total else None,
            "instances_with_a_positive": with_pos,
            "share_with_one_retrieved": round(with_hit / with_pos, 6) if with_pos else None}


def _shuffle_presentation(inst: Instances, seed: int) -> None:
    """Present each instance's candidates in a seeded random order of its own (keyed by the instance
    id, so an instance keeps its order whatever else is sampled). Scores travel with their items;
    padding stays last."""
    for i, iid in enumerate(inst.instance_id):
        valid = int((inst.candidates[i] >= 0).sum())
        rng = np.random.default_rng([seed, 20, zlib.crc32(iid.encode("utf-8"))])
        perm = rng.permutation(valid)
        inst.candidates[i, :valid] = inst.candidates[i, :valid][perm]
        inst.scores[i, :valid] = inst.scores[i, :valid][perm]


# --------------------------------------------------------------------------------------------
def _label_context(inst: Instances, spec: DatasetSpec, item_topics, counter: WindowCounter | None) -> LabelContext:
    """What every need sees of one split: built once, labelled by each need."""
    cands = inst.candidates
    mask = cands >= 0
    known = np.full(cands.shape, np.nan)
    for i in range(len(inst)):
        known[i, mask[i]] = inst.known[i].lookup(cands[i, mask[i]])
    sim = np.where(mask, inst.scores, 0.0).astype(np.float64)
    return LabelContext(
        signal_kind=spec.signal_kind, candidates=cands, mask=mask, known_signal=known, similarity=sim,
        candidate_topics=[[item_topics[c] for c in row[row >= 0]] for row in cands],
        history_topics=[frozenset().union(*(item_topics[h] for h in hist)) if len(hist) else frozenset()
                        for hist in inst.history],
        query_time=inst.query_time,
        window_counts=(lambda w: counter.counts(cands, inst.query_time, w)) if counter else
        (lambda w: np.zeros(cands.shape)),
        topic_name=spec.topic_name,
    )


def _label_table(need: Need, inst: Instances, ctx: LabelContext, ids: np.ndarray) -> pa.Table:
    labels = need.label(ctx)
    cands = inst.candidates
    nvalid = ctx.mask.sum(1)

    def per_row(arr, cast):
        return [cast(arr[i, : nvalid[i]]) for i in range(len(inst))]

    return pa.table({
        "instance_id": pa.array(inst.instance_id, pa.string()),
        "user_id": pa.array(inst.user_id, pa.string()),
        "query": pa.array(inst.query, pa.string()),
        "history": pa.array([ids[h].tolist() for h in inst.history], pa.list_(pa.string())),
        "history_signals": pa.array([s.astype(float).tolist() for s in inst.history_signals], pa.list_(pa.float64())),
        "history_times": pa.array([t.astype(np.int64).tolist() for t in inst.history_times], pa.list_(pa.int64())),
        "query_time": pa.array(inst.query_time, pa.int64()),
        "candidates": pa.array(per_row(cands, lambda r: ids[r].tolist()), pa.list_(pa.string())),
        "retrieval_scores": pa.array(per_row(inst.scores, lambda r: r.astype(np.float32).tolist()), pa.list_(pa.float32())),
        "relevance": pa.array(per_row(labels.relevance, lambda r: r.astype(np.float32).tolist()), pa.list_(pa.float32())),
        "relevant": pa.array(per_row(labels.relevant, lambda r: r.astype(bool).tolist()), pa.list_(pa.bool_())),
        "observed": pa.array(per_row(labels.observed, lambda r: r.astype(bool).tolist()), pa.list_(pa.bool_())),
        **{name: pa.array(per_row(values, lambda r: r.astype(np.float64).tolist()), pa.list_(pa.float64()))
           for name, values in sorted(labels.shown.items())},
    })


def _formula_audit(need: Need, tables: dict[str, pa.Table], ids: np.ndarray, item_topics, train_counts: np.ndarray,
                   spec: DatasetSpec, seed: int, sample: int) -> dict:
    """The need's formula audit (flexrec_bench.building.formula_audit) on the tables just labelled."""
    from flexrec_bench.building.formula_audit import formula_audit, shown_inputs

    if not {"train", "test"} <= set(tables):
        return {"formula_ceiling": None, "solvable": False, "why": "the build has no train and test split"}
    topics = dict(zip(ids.tolist(), item_topics))
    popularity = dict(zip(ids.tolist(), train_counts.tolist()))
    inputs = {split: shown_inputs(tables[split].select(["candidates", "retrieval_scores", "relevance", "relevant",
                                                        "history", *shown_columns(tables[split])]).to_pydict(),
                                  shown_columns(tables[split]), topics, popularity)
              for split in ("train", "test")}
    return formula_audit(inputs["train"], inputs["test"], need, spec.signal_kind, spec.topic_name, seed, sample)


def _items_table(items: pd.DataFrame, train_counts: np.ndarray) -> pa.Table:
    return pa.table({
        "item_id": pa.array(items["item_id"].tolist(), pa.string()),
        "title": pa.array(items["title"].tolist(), pa.string()),
        "text": pa.array(items["text"].tolist(), pa.string()),
        "topics": pa.array([list(t) for t in items["topics"]], pa.list_(pa.string())),
        "train_count": pa.array(train_counts, pa.int64()),
    })


def _train_counts(items: pd.DataFrame, inter: pd.DataFrame) -> np.ndarray:
    """Each item's number of training interactions (by the rows' item positions where the instance
    kind recorded them: one counting pass, no filtered copy of the table)."""
    if "split" not in inter:
        return np.zeros(len(items), np.int64)
    split = inter["split"]
    if "item_idx" in inter and isinstance(split.dtype, pd.CategoricalDtype):
        if "train" not in split.cat.categories:
            return np.zeros(len(items), np.int64)
        pos = inter["item_idx"].to_numpy(np.int64)[split.cat.codes.to_numpy() == split.cat.categories.get_loc("train")]
        return np.bincount(pos[pos >= 0], minlength=len(items)).astype(np.int64)
    counts = inter.loc[split == "train", "item_id"].value_counts()
    return items["item_id"].map(counts).fillna(0).astype(np.int64).to_numpy()


def _str_column(col: pd.Series) -> pa.Array:
    """A string column without a Python string per row (categoricals are cast from their codes)."""
    return pa.array(col).cast(pa.string())


def _write_interactions(path: Path, inter: pd.DataFrame) -> None:
    write_parquet_atomic(path, _interactions_table(inter))


def _interactions_table(inter: pd.DataFrame) -> pa.Table:
    return pa.table({
        "user_id": _str_column(inter["user_id"]),
        "item_id": _str_column(inter["item_id"]),
        "signal": pa.array(inter["signal"].to_numpy(np.float64), pa.float64()),
        "timestamp": pa.array(inter["timestamp"].to_numpy(np.int64), pa.int64()),
        "observed": pa.array(inter["observed"].to_numpy(bool), pa.bool_()),
        "split": _str_column(inter["split"]) if "split" in inter else pa.array([], pa.string()),
    })


def _hash_sources(paths: list[Path]) -> dict[str, dict]:
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in paths if p.exists()}


def _manifest(cfg, spec, raw, needs, tmp: Path, counts, injected, items, inter, embeddings: dict, dim: int,
              labels_sha256: str, audit: dict, quality: dict, sources: dict[str, dict]) -> dict:
    outputs = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            outputs[p.relative_to(tmp).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    config = asdict(cfg)
    config["raw_dir"] = cfg.raw_dir  # as given; the resolved source files are hashed under 'sources'
    # The fingerprint names the data: raw inputs' content, the pinned embeddings' sha256 (or that the
    # vectors were computed here), the resolved build and need configs, and the label tables (ids,
    # rounded relevance); never paths, and never the float bits of vectors computed here.
    fp_payload = json.dumps({"config": {k: v for k, v in config.items() if k not in NOT_IN_FINGERPRINT},
                             "needs": {n.name: n.config() for n in needs},
                             "labels": labels_sha256,
                             "embeddings": {"artifact_sha256": (embeddings["artifact"] or {}).get("sha256"),
                                            "computed_here": embeddings["machine_specific"]},
                             "sources": {k: v["sha256"] for k, v in sources.items()}}, sort_keys=True)
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "flexrec_bench_version": __version__,
        "dataset": spec.name,
        "fingerprint": hashlib.sha256(fp_payload.encode()).hexdigest()[:16],
        "fingerprint_inputs": {"labels_sha256": labels_sha256, "relevance_decimals": FINGERPRINT_DECIMALS,
                               "covers": f"sources, pinned embeddings, config (without {'/'.join(NOT_IN_FINGERPRINT)}), need "
                                         "configs, label tables"},
        "config": config,
        "embedder": {**embeddings, "dim": int(dim)},
        "sources": sources,
        "outputs": outputs,
        "counts": {"items": int(len(items)), "interactions": int(len(inter)), "users": int(inter["user_id"].nunique()) if len(inter) else 0,
                   "instances": counts, "injected_positive": injected},
        "skipped": dict(sorted(raw.skipped.items())),
        "candidate_quality": quality,
        "audit": audit,
        "needs": {n.name: {"instruction": n.instruction, "label_source": n.describe(), "config": n.config(),
                           "prompt": n.prompt_spec(spec.topic_name)}
                  for n in needs},
    }
