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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from . import __version__
from .data import SPLITS
from .datasets import DATASETS, DatasetSpec, RawData
from .datasets.esci import ESCI_CODE
from .embed import DEFAULT_EMBEDDER, Embedder
from .errors import DataError, FlexRecError, MissingDataError
from .audit import SplitAudit, audit_lists, summarize_audit
from .io import sha256_file, write_json_atomic, write_parquet_atomic
from .need import LabelContext, Need, make_need
from .paths import embedding_cache_dir
from .publish import fault, locked, new_tmp_dir, publish, recover
from .paths import raw_dir as default_raw_dir
from .retrieval import STAR_LAMBDA, exact_scores, profile_vectors, retrieve

MANIFEST_SCHEMA_VERSION = 2
CANDIDATE_ORDERS = ("shuffled", "retrieval")
#: decimals of the graded relevance that enter the fingerprint (ours): coarse enough that float
#: noise of another machine's BLAS does not change it, fine enough that any real relabelling does
FINGERPRINT_DECIMALS = 4


@dataclass
class BuildConfig:
    """Options of ``build-data``; every field is written to the manifest."""

    dataset: str = "ml-100k"            #: registered dataset name (see ``flexrec-bench ls``)
    raw_dir: str | None = None          #: raw files; default: the bundled copy (ml-100k) or $FLEXREC_HOME/raw/<dataset>
    out: str = "data"                   #: output root; the build goes to <out>/<dataset>/
    needs: tuple[str, ...] | None = None  #: needs to label; default: the dataset's default needs
    need_options: dict[str, dict] = field(default_factory=dict)  #: per-need label parameters, e.g. {"niche": {"rule": "share_unseen"}}
    candidates: int = 30                #: K, candidates per instance (STAR top-K)
    history: int = 20                   #: most recent history items shown per instance
    min_history: int = 5                #: fewest past interactions before a cut point
    stride: int = 5                     #: distance between consecutive cut points of one user
    embedder: str = DEFAULT_EMBEDDER    #: sentence-transformers name/path, or hashing-<dim>
    train_size: int = 5000              #: instances sampled per need for train
    val_size: int | None = None         #: instances for val (default: test_size)
    test_size: int = 1000               #: instances for test
    seed: int = 0                       #: seeds the user split, the cut-point sample and the observed subsample
    lam: float = STAR_LAMBDA            #: STAR temporal discount lambda
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  #: user-level train/val/test
    candidate_order: str = "shuffled"   #: order the ranker sees: "shuffled" (seeded per instance, label-free) or "retrieval" (STAR's order; leaks labels, see docs/data.md)
    ensure_positive: bool = False       #: (ours, off as in the paper) where no future positive was retrieved, one replaces the weakest candidate; counted in the manifest
    observed_fraction: float | None = None  #: share of each user's interactions kept as observed training signal (KuaiRec 0.1, else 1.0)
    esci_locale: str = "us"             #: ESCI product locale (us, es, jp)
    esci_version: str = "small"         #: ESCI examples: "small" (the reduced task-1 set, small_version == 1) or "large" (all)
    esci_val_fraction: float = 0.1      #: ESCI: share of the official train queries held out as val

    def validate(self) -> None:
        """One-line errors for values no build can use (checked before anything is read)."""
        def fail(name: str, want: str, got) -> None:
            raise FlexRecError(f"--{name.replace('_', '-')} must be {want}, got {got!r}")

        for name, lo in (("candidates", 2), ("history", 1), ("min_history", 1), ("stride", 1), ("train_size", 1),
                         ("test_size", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                fail(name, f"an integer >= {lo}", v)
        if self.val_size is not None and (not isinstance(self.val_size, int) or self.val_size < 1):
            fail("val_size", "an integer >= 1", self.val_size)
        if not 0.0 < self.lam <= 1.0:
            fail("lam", "in (0, 1]", self.lam)
        if self.observed_fraction is not None and not 0.0 < self.observed_fraction <= 1.0:
            fail("observed_fraction", "in (0, 1]", self.observed_fraction)
        if not 0.0 < self.esci_val_fraction < 1.0:
            fail("esci_val_fraction", "in (0, 1)", self.esci_val_fraction)
        fr = tuple(self.split_fractions)
        if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1.0) > 1e-6:
            fail("split_fractions", "three positive shares that sum to 1", fr)
        if self.candidate_order not in CANDIDATE_ORDERS:
            fail("candidate_order", f"one of {', '.join(CANDIDATE_ORDERS)}", self.candidate_order)
        if self.embedder.startswith("openai:") and not self.embedder.split(":", 1)[1].strip():
            fail("embedder", "openai:<model> with a model name", self.embedder)
        if self.embedder.startswith("hashing-"):
            dim = self.embedder.split("-", 1)[1]
            if not dim.isdigit() or int(dim) < 1:
                fail("embedder", "hashing-<dim> with dim >= 1, or a sentence-transformers name or path", self.embedder)

    def resolved(self, spec: DatasetSpec) -> BuildConfig:
        d = asdict(self)
        d["needs"] = tuple(self.needs or spec.default_needs)
        d["val_size"] = self.test_size if self.val_size is None else self.val_size
        if self.observed_fraction is None:
            d["observed_fraction"] = 0.1 if spec.name == "kuairec" else 1.0
        d["split_fractions"] = tuple(self.split_fractions)
        return BuildConfig(**d)


@dataclass
class BuildResult:
    path: Path
    manifest: dict
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Instances:
    """Ranking instances of one split, before labelling."""

    instance_id: list[str]
    user_id: list[str]
    query: list[str]
    history: list[np.ndarray]
    history_signals: list[np.ndarray]
    history_times: list[np.ndarray]
    query_time: np.ndarray
    exclude: list[np.ndarray]
    known: list[dict[int, float]]
    profiles: np.ndarray | None = None
    candidates: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.instance_id)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def _rng(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose])


# --------------------------------------------------------------------------------------------
def _resolve_raw_dir(cfg: BuildConfig, spec: DatasetSpec) -> Path | None:
    if cfg.raw_dir:
        p = Path(cfg.raw_dir)
        if not p.exists():
            raise MissingDataError(f"--raw-dir {p} does not exist")
        return p
    if spec.name == "ml-100k":
        return None  # the bundled copy
    p = default_raw_dir(spec.name)
    if not p.exists():
        if spec.manual_instructions:
            raise MissingDataError(spec.manual_instructions.format(raw_dir=p))
        raise MissingDataError(f"{spec.name} raw files not found in {p}: run `flexrec-bench download --dataset "
                               f"{spec.name}` or pass --raw-dir")
    return p


def _check_raw(raw: RawData, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    items = raw.items
    if items.empty:
        raise DataError(raw.sources[-1] if raw.sources else spec.name, "no items read; expected item metadata rows")
    dup = items.duplicated("item_id")
    raw.count_skip("duplicate item rows", int(dup.sum()))
    items = items[~dup].reset_index(drop=True)
    inter = raw.interactions
    if spec.signal_kind != "esci":
        src = raw.sources[0] if raw.sources else spec.name
        if inter.empty:
            raise DataError(src, "no interactions read")
        known = inter["item_id"].isin(items["item_id"])
        raw.count_skip("interactions with an item missing from the item file", int((~known).sum()))
        if not known.any():
            raise DataError(src, f"none of the {len(inter)} interactions names an item of the item file "
                                 f"({len(items)} items, e.g. {items['item_id'].iloc[0]!r}); are the files from one release?")
        inter = inter[known]
        inter = _drop_duplicates(inter, raw)
    return items, inter.reset_index(drop=True)


def _drop_duplicates(inter: pd.DataFrame, raw: RawData) -> pd.DataFrame:
    """Duplicates (ours): exact repeats are dropped; for one (user, item, time) with different
    signals the last row in file order wins; both are counted. Rows are first screened with one
    int64 key per (user, item, time), so only the rare candidates go through a full comparison."""
    u, _ = pd.factorize(inter["user_id"])
    i, items = pd.factorize(inter["item_id"])
    t = inter["timestamp"].to_numpy(np.int64)
    if len(t) and (int(u.max()) + 1) * (len(items) + 1) * (int(t.max()) - int(t.min()) + 1) < 2 ** 62:
        key = (u.astype(np.int64) * len(items) + i) * (int(t.max()) - int(t.min()) + 1) + (t - t.min())
        maybe = pd.Series(key).duplicated(keep=False).to_numpy()
    else:
        maybe = np.ones(len(inter), bool)
    sub = inter[maybe]
    exact = sub.duplicated(["user_id", "item_id", "timestamp", "signal"])
    rest = sub[~exact.to_numpy()]
    clash = rest.duplicated(["user_id", "item_id", "timestamp"], keep="last")
    raw.count_skip("duplicate interaction rows (exact repeats)", int(exact.sum()))
    raw.count_skip("interactions repeated with another signal at the same time (the last kept)", int(clash.sum()))
    drop = np.zeros(len(inter), bool)
    idx = np.flatnonzero(maybe)
    drop[idx[exact.to_numpy()]] = True
    drop[idx[~exact.to_numpy()][clash.to_numpy()]] = True
    return inter[~drop] if drop.any() else inter


def build(cfg: BuildConfig, progress: bool = True) -> BuildResult:
    """Build one dataset; the output directory appears only when the whole build succeeded."""
    cfg.validate()
    spec = DATASETS.get(cfg.dataset)
    cfg = cfg.resolved(spec)
    unknown = sorted(set(cfg.need_options) - set(cfg.needs))
    if unknown:
        raise FlexRecError(f"--need-option names need(s) not built: {', '.join(unknown)} (built: {', '.join(cfg.needs)})")
    needs: list[Need] = [make_need(n, cfg.need_options.get(n, {})) for n in cfg.needs]
    for need in needs:
        if spec.signal_kind not in need.signal_kinds:
            raise FlexRecError(f"need {need.name!r} cannot label {spec.name} (signal {spec.signal_kind}); "
                               f"{spec.name} supports: {', '.join(spec.default_needs)}")
    timer = _Timer()
    with timer.stage("read"):
        options = {"locale": cfg.esci_locale, "version": cfg.esci_version} if spec.signal_kind == "esci" else {}
        raw = spec.reader(_resolve_raw_dir(cfg, spec), **options)
        items, inter = _check_raw(raw, spec)
    item_index = {iid: i for i, iid in enumerate(items["item_id"])}
    with timer.stage("embed"):
        embedder = Embedder(cfg.embedder, cache_dir=embedding_cache_dir(), progress=progress)
        emb = embedder.encode(items["text"].tolist())
    with timer.stage("split"):
        if spec.signal_kind == "esci":
            splits, inter = _esci_instances(raw, cfg, item_index, embedder)
        else:
            splits, inter = _sequential_instances(raw, inter, cfg, spec, item_index, progress)
    with timer.stage("retrieve"):
        injected = {}
        for split, inst in splits.items():
            if spec.signal_kind != "esci":
                allowed = None
                if raw.eval_labels is not None and split != "train":
                    allowed = np.unique(raw.eval_labels["item_id"].map(item_index).dropna().astype(np.int64))
                inst.profiles = profile_vectors(inst.history, inst.history_signals, emb, cfg.lam, spec.signal_scale)
                inst.candidates, inst.scores = retrieve(inst.profiles, emb, cfg.candidates, inst.exclude, allowed)
                injected[split] = _ensure_positive(inst, emb, spec) if cfg.ensure_positive else 0
            else:
                _esci_candidates(inst, emb, cfg)
            if cfg.candidate_order == "shuffled":
                _shuffle_presentation(inst, cfg.seed)
    item_topics = [frozenset(t) for t in items["topics"]]
    counter = _WindowCounter(inter, item_index) if spec.signal_kind != "esci" else None
    final = Path(cfg.out) / spec.name
    # one writer per output folder; a killed build's leftovers are cleaned by the next (publish.py)
    with locked(final, what="build"):
        recover(final)
        tmp = new_tmp_dir(final)
        try:
            counts: dict[str, dict[str, int]] = {}
            audits: dict[str, dict[str, SplitAudit]] = {}
            labels = hashlib.sha256()
            with timer.stage("label+write"):
                contexts = {split: _label_context(inst, spec, item_topics, counter) for split, inst in splits.items()}
                ids = items["item_id"].to_numpy()
                for need in tqdm(needs, desc="label needs", disable=not progress):
                    counts[need.name], audits[need.name] = {}, {}
                    for split, inst in splits.items():
                        table = _label_table(need, inst, contexts[split], ids)
                        write_parquet_atomic(tmp / need.name / f"{split}.parquet", table)
                        counts[need.name][split] = table.num_rows
                        labels.update(f"{need.name}/{split}\n".encode())
                        labels.update(label_digest(table).encode())
                        audits[need.name][split] = audit_lists(table.column("relevance").to_pylist(), cfg.seed)
                write_parquet_atomic(tmp / "items.parquet", _items_table(items, inter))
                write_parquet_atomic(tmp / "interactions.parquet", _interactions_table(inter))
                np.save(tmp / "embeddings.npy", emb, allow_pickle=False)
                manifest = _manifest(cfg, spec, raw, needs, tmp, counts, injected, items, inter, embedder, emb.shape[1],
                                     labels.hexdigest(), summarize_audit(audits))
                write_json_atomic(tmp / "manifest.json", manifest)
            fault("build:written")
            publish(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(final, manifest, timer.seconds)


# --------------------------------------------------------------------------------------------
def _sequential_instances(raw: RawData, inter: pd.DataFrame, cfg: BuildConfig, spec: DatasetSpec,
                          item_index: dict[str, int], progress: bool) -> tuple[dict[str, _Instances], pd.DataFrame]:
    """Cut-point instances of every split, columnar: users are integer codes in lexicographic
    order of their ids, and cut points are counted per user and sampled by position, never
    listed one by one (KuaiRec's big matrix has 2.5M of them)."""
    inter = inter.assign(item_idx=inter["item_id"].map(item_index).astype(np.int64))
    ucodes, users = pd.factorize(inter["user_id"], sort=True)
    users = np.asarray(users).astype(str)
    order = np.lexsort((inter["item_idx"].to_numpy(), inter["timestamp"].to_numpy(), ucodes))
    inter = inter.iloc[order].reset_index(drop=True)
    ucodes = ucodes[order]
    # observed subsample (KuaiRec: 10% of each user's interactions), seeded
    if cfg.observed_fraction < 1.0:
        r = _rng(cfg.seed, 3).random(len(inter))
        by_r = np.lexsort((r, ucodes))  # rows are grouped by user already: rank r within each group
        size_u = np.bincount(ucodes, minlength=len(users))
        start_u = np.r_[0, np.cumsum(size_u)[:-1]]
        rank = np.empty(len(inter), np.float64)
        rank[by_r] = np.arange(len(inter)) - start_u[ucodes[by_r]] + 1
        size = size_u[ucodes]
        inter["observed"] = rank <= np.maximum(1, np.round(size * cfg.observed_fraction))
    perm = _rng(cfg.seed, 1).permutation(len(users))
    f_train, f_val, _ = cfg.split_fractions
    n_train, n_val = int(round(f_train * len(users))), int(round(f_val * len(users)))
    split_code = np.empty(len(users), np.int8)  # 0 train, 1 val, 2 test
    split_code[perm] = np.where(np.arange(len(users)) < n_train, 0, np.where(np.arange(len(users)) < n_train + n_val, 1, 2))
    inter["split"] = pd.Categorical.from_codes(split_code[ucodes], categories=list(SPLITS))
    eval_sets: dict[str, dict[int, float]] = {}
    if raw.eval_labels is not None:
        el = raw.eval_labels
        held_out = {u for u, c in zip(users, split_code) if c != 0}
        el = el[el["item_id"].isin(item_index) & el["user_id"].isin(held_out)]
        el_items = el["item_id"].map(item_index).astype(np.int64).to_numpy()
        el_codes, el_users = pd.factorize(el["user_id"])
        el_sig = el["signal"].to_numpy(np.float64)
        grp = np.argsort(el_codes, kind="stable")
        cuts = np.flatnonzero(np.r_[True, np.diff(el_codes[grp]) != 0, True])
        for g in range(len(cuts) - 1):
            rows = grp[cuts[g]: cuts[g + 1]]
            eval_sets[str(el_users[el_codes[rows[0]]])] = dict(zip(el_items[rows].tolist(), el_sig[rows].tolist()))
    bounds = np.flatnonzero(np.r_[True, ucodes[1:] != ucodes[:-1], True])
    block_user = ucodes[bounds[:-1]]
    n_u = np.diff(bounds)
    items_arr = inter["item_idx"].to_numpy()
    sig_arr = inter["signal"].to_numpy(np.float64)
    ts_arr = inter["timestamp"].to_numpy(np.int64)
    obs_arr = inter["observed"].to_numpy(bool)
    block_split = split_code[block_user]
    if raw.eval_labels is not None:  # held-out users need a row in the fully observed matrix
        has_eval = np.array([users[u] in eval_sets for u in block_user])
        eligible = (block_split == 0) | has_eval
    else:
        eligible = np.ones(len(block_user), bool)
    short = eligible & (n_u <= cfg.min_history)
    raw.count_skip(f"users with at most min_history={cfg.min_history} interactions", int(short.sum()))
    n_cuts = np.where(eligible & ~short, (n_u - cfg.min_history + cfg.stride - 1) // cfg.stride, 0)
    sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}
    out: dict[str, _Instances] = {}
    for s_i, split in enumerate(SPLITS):
        blocks = np.flatnonzero((block_split == s_i) & (n_cuts > 0))
        cum = np.cumsum(n_cuts[blocks])
        total = int(cum[-1]) if len(cum) else 0
        if total == 0:
            extra = " and a row in the fully observed matrix" if raw.eval_labels is not None and split != "train" else ""
            raise DataError(raw.sources[0], f"empty {split} split: no user in it has more than "
                                            f"min_history={cfg.min_history} interactions{extra}")
        pos = np.arange(total)
        if total > sizes[split]:
            pos = np.sort(_rng(cfg.seed, 10 + s_i).choice(total, sizes[split], replace=False))
        which = np.searchsorted(cum, pos, side="right")
        cand = list(zip(blocks[which].tolist(), (cfg.min_history + (pos - (cum[which] - n_cuts[blocks[which]]))
                                                 * cfg.stride).tolist()))
        inst = _Instances([], [], [], [], [], [], np.zeros(len(cand), np.int64), [], [])
        for n, (b, c) in enumerate(tqdm(cand, desc=f"instances {split}", disable=not progress, leave=False)):
            lo, hi = bounds[b], bounds[b + 1]
            u = str(users[block_user[b]])
            h0 = max(lo, lo + c - cfg.history)
            inst.instance_id.append(f"{u}@{c}")
            inst.user_id.append(u)
            inst.query.append("")
            inst.history.append(items_arr[h0: lo + c].copy())
            inst.history_signals.append(sig_arr[h0: lo + c].copy())
            inst.history_times.append(ts_arr[h0: lo + c].copy())
            inst.query_time[n] = ts_arr[lo + c]
            inst.exclude.append(np.unique(items_arr[lo: lo + c]))
            if raw.eval_labels is not None and split != "train":
                past = set(inst.exclude[-1].tolist())
                inst.known.append({k: v for k, v in eval_sets[u].items() if k not in past})
            else:
                fut = slice(lo + c, hi)
                keep = obs_arr[fut]
                inst.known.append(dict(zip(items_arr[fut][keep].tolist(), sig_arr[fut][keep].tolist())))
        out[split] = inst
    return out, inter


def _ensure_positive(inst: _Instances, emb: np.ndarray, spec: DatasetSpec) -> int:
    """(Ours, off by default.) Where no retrieved candidate is a known positive, the best-scored
    positive replaces the weakest candidate and takes over its retrieval score, so neither its
    score nor (after the presentation shuffle) its slot marks it. Returns the number replaced."""
    injected = 0
    for i in range(len(inst)):
        pos = [k for k, v in inst.known[i].items() if v >= spec.positive_threshold]
        if not pos:
            continue
        row = inst.candidates[i]
        valid = row >= 0
        if np.isin(row[valid], pos).any():
            continue
        last = int(valid.sum()) - 1
        if last < 0:
            continue
        pos_arr = np.array(sorted(pos), np.int64)
        sc = exact_scores(emb[pos_arr], inst.profiles[i])
        row[last] = pos_arr[int(np.lexsort((pos_arr, -sc))[0])]  # the score in inst.scores[i, last] stays
        injected += 1
    return injected


def _shuffle_presentation(inst: _Instances, seed: int) -> None:
    """Present each instance's candidates in a seeded random order of its own (keyed by the instance
    id, so an instance keeps its order whatever else is sampled). Scores travel with their items;
    padding stays last."""
    for i, iid in enumerate(inst.instance_id):
        valid = int((inst.candidates[i] >= 0).sum())
        rng = np.random.default_rng([seed, 20, zlib.crc32(iid.encode("utf-8"))])
        perm = rng.permutation(valid)
        inst.candidates[i, :valid] = inst.candidates[i, :valid][perm]
        inst.scores[i, :valid] = inst.scores[i, :valid][perm]


def label_digest(table: pa.Table) -> str:
    """sha256 of a label table's content that identifies the data, not the machine: instance ids,
    users, queries, histories and their signals and times, candidates in presented order, relevance
    rounded to FINGERPRINT_DECIMALS, the relevant and observed flags. Retrieval scores (float bits
    of the embedder) are left out. Each column is hashed in a fixed encoding (list lengths, then
    values: strings joined by NUL, numbers as little-endian float64/int64, flags as bytes)."""
    h = hashlib.sha256()
    for name in ("instance_id", "user_id", "query", "history", "history_signals", "history_times", "query_time",
                 "candidates", "relevant", "observed", "relevance"):
        col = table.column(name).combine_chunks()
        h.update(name.encode() + b"\x00")
        if pa.types.is_list(col.type):
            h.update(np.diff(col.offsets.to_numpy()).astype("<i8").tobytes())
            col = col.flatten()
        if pa.types.is_string(col.type):
            h.update("\x00".join(col.to_pylist()).encode("utf-8"))
        elif pa.types.is_boolean(col.type):
            h.update(col.to_numpy(zero_copy_only=False).astype(np.uint8).tobytes())
        elif name == "relevance":
            h.update((np.round(col.to_numpy().astype(np.float64), FINGERPRINT_DECIMALS) + 0.0).astype("<f8").tobytes())
        elif pa.types.is_integer(col.type):
            h.update(col.to_numpy().astype("<i8").tobytes())
        else:
            h.update(col.to_numpy().astype("<f8").tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------


def _esci_instances(raw: RawData, cfg: BuildConfig, item_index: dict[str, int], embedder: Embedder):
    q = raw.queries
    q = q[q["item_id"].isin(item_index)]
    groups = {qid: g for qid, g in q.groupby("query_id", sort=True)}
    train_q = sorted(qid for qid, g in groups.items() if g["split"].iloc[0] == "train")
    test_q = sorted(qid for qid, g in groups.items() if g["split"].iloc[0] == "test")
    perm = _rng(cfg.seed, 1).permutation(len(train_q))
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
            pick = np.sort(_rng(cfg.seed, 10 + s_i).choice(len(qids), sizes[split], replace=False))
            qids = [qids[i] for i in pick]
        n = len(qids)
        inst = _Instances(
            instance_id=[f"q{qid}" for qid in qids], user_id=[""] * n,
            query=[groups[qid]["query"].iloc[0] for qid in qids],
            history=[np.zeros(0, np.int64)] * n, history_signals=[np.zeros(0)] * n, history_times=[np.zeros(0, np.int64)] * n,
            query_time=np.zeros(n, np.int64), exclude=[np.zeros(0, np.int64)] * n,
            known=[dict(zip(groups[qid]["item_id"].map(item_index).astype(int), groups[qid]["label"].map(ESCI_CODE)))
                   for qid in qids])
        inst.profiles = embedder.encode(inst.query)
        out[split] = inst
    return out, raw.interactions.assign(split=pd.Series([], dtype=str), item_idx=pd.Series([], dtype="int64"))


def _esci_candidates(inst: _Instances, emb: np.ndarray, cfg: BuildConfig) -> None:
    """ESCI: the candidates are the query's annotated products, ordered by retrieval score (top K)."""
    k = cfg.candidates
    inst.candidates = np.full((len(inst), k), -1, np.int64)
    inst.scores = np.full((len(inst), k), -np.inf, np.float32)
    for i in range(len(inst)):
        items = np.array(sorted(inst.known[i]), np.int64)
        sc = exact_scores(emb[items], inst.profiles[i])
        order = np.lexsort((items, -sc))[:k]
        inst.candidates[i, : len(order)] = items[order]
        inst.scores[i, : len(order)] = sc[order]


# --------------------------------------------------------------------------------------------
class _WindowCounter:
    """Counts, per (item, time), the interactions with the item in [t - w, t): binary search
    in one sorted array of (item, time) keys."""

    def __init__(self, inter: pd.DataFrame, item_index: dict[str, int]):
        idx = (inter["item_idx"] if "item_idx" in inter else inter["item_id"].map(item_index)).to_numpy(np.int64)
        ts = inter["timestamp"].to_numpy(np.int64)
        self.t0 = int(ts.min()) if len(ts) else 0
        self.span = (int(ts.max()) - self.t0 + 1) if len(ts) else 1
        self.keys = np.sort(idx * self.span + (ts - self.t0))

    def counts(self, candidates: np.ndarray, query_time: np.ndarray, window: int) -> np.ndarray:
        t = np.clip(query_time[:, None] - self.t0, 0, self.span)
        lo = np.clip(t - window, 0, self.span)
        base = np.where(candidates >= 0, candidates, 0) * self.span
        hi_pos = np.searchsorted(self.keys, base + t, side="left")
        lo_pos = np.searchsorted(self.keys, base + lo, side="left")
        return np.where(candidates >= 0, hi_pos - lo_pos, 0)


def _label_context(inst: _Instances, spec: DatasetSpec, item_topics, counter: _WindowCounter | None) -> LabelContext:
    """What every need sees of one split: built once, labelled by each need."""
    cands = inst.candidates
    mask = cands >= 0
    known = np.full(cands.shape, np.nan)
    for i in range(len(inst)):
        kn = inst.known[i]
        for j in np.flatnonzero(mask[i]):
            v = kn.get(int(cands[i, j]))
            if v is not None:
                known[i, j] = v
    sim = np.where(mask, inst.scores, 0.0).astype(np.float32)
    return LabelContext(
        signal_kind=spec.signal_kind, candidates=cands, mask=mask, known_signal=known, similarity=sim,
        candidate_topics=[[item_topics[c] for c in row[row >= 0]] for row in cands],
        history_topics=[frozenset().union(*(item_topics[h] for h in hist)) if len(hist) else frozenset()
                        for hist in inst.history],
        query_time=inst.query_time,
        window_counts=(lambda w: counter.counts(cands, inst.query_time, w)) if counter else
        (lambda w: np.zeros(cands.shape)),
    )


def _label_table(need: Need, inst: _Instances, ctx: LabelContext, ids: np.ndarray) -> pa.Table:
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
    })


def _items_table(items: pd.DataFrame, inter: pd.DataFrame) -> pa.Table:
    train = inter[inter["split"] == "train"] if "split" in inter else inter.iloc[:0]
    counts = train["item_id"].value_counts()
    return pa.table({
        "item_id": pa.array(items["item_id"].tolist(), pa.string()),
        "title": pa.array(items["title"].tolist(), pa.string()),
        "text": pa.array(items["text"].tolist(), pa.string()),
        "topics": pa.array([list(t) for t in items["topics"]], pa.list_(pa.string())),
        "train_count": pa.array(items["item_id"].map(counts).fillna(0).astype(np.int64).to_numpy(), pa.int64()),
    })


def _str_column(col: pd.Series) -> pa.Array:
    """A string column without a Python string per row (categoricals are cast from their codes)."""
    return pa.array(col).cast(pa.string())


def _interactions_table(inter: pd.DataFrame) -> pa.Table:
    return pa.table({
        "user_id": _str_column(inter["user_id"]),
        "item_id": _str_column(inter["item_id"]),
        "signal": pa.array(inter["signal"].to_numpy(np.float64), pa.float64()),
        "timestamp": pa.array(inter["timestamp"].to_numpy(np.int64), pa.int64()),
        "observed": pa.array(inter["observed"].to_numpy(bool), pa.bool_()),
        "split": _str_column(inter["split"]) if "split" in inter else pa.array([], pa.string()),
    })


def _manifest(cfg, spec, raw, needs, tmp: Path, counts, injected, items, inter, embedder, dim: int, labels_sha256: str,
              audit: dict) -> dict:
    outputs = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            outputs[p.relative_to(tmp).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    sources = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in raw.sources if p.exists()}
    config = asdict(cfg)
    config["raw_dir"] = cfg.raw_dir  # as given; the resolved source files are hashed under 'sources'
    # The fingerprint names the data, not the machine: raw inputs' content, the resolved build and
    # need configs, and the label tables (ids, rounded relevance); never float embedding bits or paths.
    fp_payload = json.dumps({"config": {k: v for k, v in config.items() if k not in ("out", "raw_dir")},
                             "needs": {n.name: n.config() for n in needs},
                             "labels": labels_sha256,
                             "sources": {k: v["sha256"] for k, v in sources.items()}}, sort_keys=True)
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "flexrec_bench_version": __version__,
        "dataset": spec.name,
        "fingerprint": hashlib.sha256(fp_payload.encode()).hexdigest()[:16],
        "fingerprint_inputs": {"labels_sha256": labels_sha256, "relevance_decimals": FINGERPRINT_DECIMALS,
                               "covers": "sources, config (without out/raw_dir), need configs, label tables"},
        "config": config,
        "embedder": {"name": embedder.name, "dim": int(dim)},
        "sources": sources,
        "outputs": outputs,
        "counts": {"items": int(len(items)), "interactions": int(len(inter)), "users": int(inter["user_id"].nunique()) if len(inter) else 0,
                   "instances": counts, "injected_positive": injected},
        "skipped": dict(sorted(raw.skipped.items())),
        "audit": audit,
        "needs": {n.name: {"instruction": n.instruction, "label_source": n.label_source, "config": n.config()}
                  for n in needs},
    }
