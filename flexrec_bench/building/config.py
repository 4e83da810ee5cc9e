"""The options of ``flexrec-bench build-data``, in one dataclass: each field's type, default and
``#:`` help are written here once; the command's options are derived from them (flexrec_bench.cli),
and every field is written, resolved, to the build's manifest (docs/data.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.building.formula_audit import FIT_INSTANCES
from flexrec_bench.building.retrieval import STAR_LAMBDA

if TYPE_CHECKING:
    from flexrec_bench.datasets import DatasetSpec

CANDIDATE_ORDERS = ("shuffled", "retrieval")
#: fields that say where a build goes or how it is checked, not what data it holds: left out of the fingerprint
NOT_IN_FINGERPRINT = ("out", "raw_dir", "embeddings", "formula_audit", "audit_sample")


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
    embedder: str | None = None         #: sentence-transformers name/path, hashing-<dim>, ngrams-<dim> or openai:<model>; default: the dataset's (all-MiniLM-L6-v2; KuaiRec ngrams-384)
    embeddings: str = "auto"            #: auto (pinned vectors where published, else computed here), pinned (required) or local (computed here: machine-specific fingerprint)
    train_size: int = 5000              #: instances sampled per need for train
    val_size: int | None = None         #: instances for val (default: test_size)
    test_size: int = 1000               #: instances for test
    seed: int = 0                       #: seeds the user split, the cut-point sample and the observed subsample
    lam: float = STAR_LAMBDA            #: STAR temporal discount lambda
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  #: user-level train/val/test
    candidate_order: str = "shuffled"   #: order the ranker sees: "shuffled" (seeded per instance, label-free) or "retrieval" (STAR's order; leaks labels, see docs/data.md)
    ensure_positive: bool = False       #: (ours, off as in the paper) where no future positive was retrieved, one replaces the weakest candidate; counted in the manifest
    observed_fraction: float | None = None  #: share of each user's interactions kept as observed training signal (default: the dataset's: KuaiRec 0.1, else 1.0)
    esci_locale: str = "us"             #: ESCI product locale (us, es, jp)
    esci_version: str = "small"         #: ESCI examples: "small" (the reduced task-1 set, small_version == 1) or "large" (all)
    esci_val_fraction: float = 0.1      #: ESCI: share of the official train queries held out as val
    formula_audit: bool = True          #: run the formula audit (fitted rankers of shown inputs, need-blind ceiling; the build's costliest audit, about 1 s a need); off: the manifest says it was skipped, and `flexrec-bench audit` runs it later. Not part of the fingerprint
    audit_sample: int = FIT_INSTANCES   #: the formula audit fits its rankers on at most this many train instances, a seeded sample (ours), which bounds its cost on any size of build. Not part of the fingerprint

    def validate(self) -> None:
        """One-line errors for values no build can use (checked before anything is read)."""
        def fail(name: str, want: str, got) -> None:
            raise FlexRecError(f"--{name.replace('_', '-')} must be {want}, got {got!r}")

        for name, lo in (("candidates", 2), ("history", 1), ("min_history", 1), ("stride", 1), ("train_size", 1),
                         ("test_size", 1), ("seed", 0), ("audit_sample", 1)):
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
        from flexrec_bench.building.embed import DEFAULT_EMBEDDER, MAX_HASHING_DIM
        from flexrec_bench.datasets.pinned import EMBEDDING_MODES

        emb = self.embedder or DEFAULT_EMBEDDER
        if emb.startswith("openai:") and not emb.split(":", 1)[1].strip():
            fail("embedder", "openai:<model> with a model name", self.embedder)
        if emb.startswith(("hashing-", "ngrams-")):
            kind, dim = self.embedder.split("-", 1)
            if not dim.isdigit() or not 1 <= int(dim) <= MAX_HASHING_DIM:
                fail("embedder", f"{kind}-<dim> with 1 <= dim <= {MAX_HASHING_DIM}, or a sentence-transformers name "
                                 f"or path", self.embedder)
        if self.embeddings not in EMBEDDING_MODES:
            fail("embeddings", f"one of {', '.join(EMBEDDING_MODES)}", self.embeddings)

    def resolved(self, spec: DatasetSpec) -> BuildConfig:
        d = asdict(self)
        d["needs"] = tuple(self.needs or spec.default_needs)
        d["val_size"] = self.test_size if self.val_size is None else self.val_size
        d["embedder"] = self.embedder or spec.default_embedder
        if self.observed_fraction is None:
            d["observed_fraction"] = spec.observed_fraction
        d["split_fractions"] = tuple(self.split_fractions)
        return BuildConfig(**d)

    def command(self, out: str | None = None) -> str:
        """The ``flexrec-bench build-data`` line that makes this build again: the dataset, every option
        whose resolved value differs from the dataset's default, and ``--out`` when given. Suggested
        fixes and dataset cards print it, so a rebuild keeps the options a build was made with."""
        from flexrec_bench.datasets import DATASETS

        spec = DATASETS.get(self.dataset)
        default, mine = asdict(BuildConfig(dataset=self.dataset).resolved(spec)), asdict(self.resolved(spec))
        parts = [f"flexrec-bench build-data --dataset {self.dataset}"]
        for f in fields(self):
            value = mine[f.name]
            if f.name in ("dataset", "out") or _plain(value) == _plain(default[f.name]):
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "need_options":
                parts += [f"--need-option {n}.{k}={v}" for n, opts in value.items() for k, v in opts.items()]
            elif isinstance(value, bool):
                parts.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, (list, tuple)):
                parts.append(f"{flag} {','.join(str(v) for v in value)}")
            else:
                parts.append(f"{flag} {value}")
        if out is not None:
            parts.append(f"--out {out}")
        return " ".join(parts)

    @classmethod
    def from_manifest(cls, manifest: dict) -> BuildConfig:
        """The (resolved) configuration a build's manifest records."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in manifest["config"].items() if k in known})


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value
