"""Loading built splits: one :class:`DatasetSplit` per (dataset, need, split)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from flexrec_bench.foundation.errors import DataError, MissingDataError
from flexrec_bench.foundation.registry import did_you_mean

SPLITS = ("train", "val", "test")


def _padded(lists, k: int, fill, dtype) -> np.ndarray:
    out = np.full((len(lists), k), fill, dtype=dtype)
    for i, row in enumerate(lists):
        out[i, : len(row)] = row
    return out


@dataclass
class DatasetSplit:
    """One built split. Arrays are (n instances x K) with K the largest candidate count;
    ``mask`` marks real candidate slots (ESCI lists vary in length)."""

    dataset: str
    need: str
    split: str
    root: Path
    manifest: dict
    frame: pd.DataFrame = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def instance_ids(self) -> list[str]:
        return self.frame["instance_id"].tolist()

    @property
    def candidates(self) -> list[list[str]]:
        return [list(c) for c in self.frame["candidates"]]

    def __len__(self) -> int:
        return len(self.frame)

    @cached_property
    def k(self) -> int:
        return int(self.frame["candidates"].map(len).max()) if len(self.frame) else 0

    @cached_property
    def mask(self) -> np.ndarray:
        return _padded([np.ones(len(c), bool) for c in self.frame["candidates"]], self.k, False, bool)

    @cached_property
    def relevance(self) -> np.ndarray:
        return _padded(self.frame["relevance"].tolist(), self.k, 0.0, np.float64)

    @cached_property
    def relevant(self) -> np.ndarray:
        return _padded(self.frame["relevant"].tolist(), self.k, False, bool)

    @cached_property
    def observed(self) -> np.ndarray:
        return _padded(self.frame["observed"].tolist(), self.k, False, bool)

    @cached_property
    def retrieval_scores(self) -> np.ndarray:
        return _padded(self.frame["retrieval_scores"].tolist(), self.k, -np.inf, np.float64)

    @cached_property
    def shown_columns(self) -> tuple[str, ...]:
        """The per-candidate columns the need's prompt prints, in the manifest's order
        (``manifest.needs.<need>.prompt.candidate_columns``), those this split holds."""
        shown = (self.manifest["needs"][self.need].get("prompt") or {}).get("candidate_columns") or {}
        return tuple(c for c in shown if c in self.frame.columns)

    @cached_property
    def ranker_columns(self) -> tuple[str, ...]:
        """The per-candidate number columns a ranker receives beside the texts: ``retrieval_scores``
        and the columns the need's prompt shows (:attr:`shown_columns`)."""
        return ("retrieval_scores", *sorted(self.shown_columns))

    def candidate_column(self, name: str) -> np.ndarray:
        """(n, K) float64 of a per-candidate list column (padding: -inf for retrieval scores, else 0)."""
        if name == "retrieval_scores":
            return self.retrieval_scores
        return _padded(self.frame[name].tolist(), self.k, 0.0, np.float64)

    @cached_property
    def items(self) -> pd.DataFrame:
        return pq.read_table(verified(self.root, "items.parquet", self.manifest)).to_pandas().set_index("item_id", drop=False)

    @cached_property
    def interactions(self) -> pd.DataFrame:
        return pq.read_table(verified(self.root, "interactions.parquet", self.manifest)).to_pandas()

    @cached_property
    def embeddings(self) -> np.ndarray:
        return np.load(verified(self.root, "embeddings.npy", self.manifest), allow_pickle=False)

    @cached_property
    def instruction(self) -> str:
        return self.manifest["needs"][self.need]["instruction"]

    @cached_property
    def signal_kind(self) -> str:
        from flexrec_bench.datasets import DATASETS

        return DATASETS.get(self.dataset).signal_kind

    def select(self, instance_ids) -> DatasetSplit:
        """The instances with these ids, in the split's own order."""
        keep = set(instance_ids)
        rows = [i for i, iid in enumerate(self.instance_ids) if iid in keep]
        return DatasetSplit(self.dataset, self.need, self.split, self.root, self.manifest,
                            self.frame.iloc[rows].reset_index(drop=True))

    def head(self, n: int | None) -> DatasetSplit:
        if n is None or n >= len(self):
            return self
        return DatasetSplit(self.dataset, self.need, self.split, self.root, self.manifest,
                            self.frame.iloc[:n].reset_index(drop=True))


def build_root(data_dir: str | Path, dataset: str) -> Path:
    """The folder of a build: the generation its link points to now (docs/guarantees.md)."""
    return (Path(data_dir) / dataset).resolve()


def load_manifest(data_dir: str | Path, dataset: str, root: Path | None = None) -> dict:
    from flexrec_bench.datasets import DATASETS

    DATASETS.get(dataset)  # unknown name -> did-you-mean error
    root = root or Path(data_dir) / dataset
    path = root / "manifest.json"
    if not path.exists():
        raise MissingDataError(f"{dataset} is not built in {data_dir}: run `flexrec-bench build-data --dataset {dataset} "
                               f"--out {data_dir}`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from None


def load_split(data_dir: str | Path, dataset: str, need: str, split: str = "test") -> DatasetSplit:
    if split not in SPLITS:
        raise MissingDataError(f"unknown split {split!r}; {did_you_mean(split, list(SPLITS))}")
    # resolved once: the manifest and every file this split reads later come from one build, even
    # if a rebuild swaps the link meanwhile
    root = build_root(data_dir, dataset)
    manifest = load_manifest(data_dir, dataset, root)
    if need not in manifest["needs"]:
        from flexrec_bench.datasets import DATASETS
        from flexrec_bench.building.labeling import NEEDS

        if need not in NEEDS:
            NEEDS.get(need)  # raises with did-you-mean
        spec = DATASETS.get(dataset)
        if spec.signal_kind not in NEEDS.get(need).signal_kinds:  # no build would have it: suggest none
            raise MissingDataError(f"need {need!r} cannot label {dataset} ({spec.signal_kind} signal); {dataset}'s "
                                   f"needs: {', '.join(spec.default_needs)}")
        from flexrec_bench.building.config import BuildConfig

        again = BuildConfig.from_manifest(manifest)
        again.needs = (*manifest["needs"], need)  # the needs built, and this one: a rebuild keeps the others
        raise MissingDataError(f"{dataset} was built without need {need!r} (built: {', '.join(manifest['needs'])}); "
                               f"run `{again.command(out=str(data_dir))}`")
    path = root / need / f"{split}.parquet"
    if not path.exists():
        from flexrec_bench.building.config import BuildConfig

        raise MissingDataError(f"{path} is missing: rebuild with `{BuildConfig.from_manifest(manifest).command(out=str(data_dir))}`")
    frame = pq.read_table(verified(root, f"{need}/{split}.parquet", manifest)).to_pandas()
    return DatasetSplit(dataset, need, split, root, manifest, frame)


_VERIFIED: dict[tuple[str, int, int], str] = {}


def verified(root: Path, rel: str, manifest: dict) -> Path:
    """``root/rel``, after checking it against the sha256 the manifest recorded when the build
    wrote it: a label edited after the build is refused instead of scored. Each file is hashed once
    per process (keyed by path, size and modification time)."""
    from flexrec_bench.foundation.errors import DataError
    from flexrec_bench.foundation.io import sha256_file

    path = root / rel
    expected = (manifest.get("outputs") or {}).get(rel, {}).get("sha256")
    if expected is None:
        raise DataError(root / "manifest.json", f"no sha256 recorded for {rel}: the build is older than this "
                                                 f"version or incomplete; rebuild with `flexrec-bench build-data`")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(key) != expected:
        got = sha256_file(path)
        if got != expected:
            raise DataError(path, f"sha256 {got[:12]}… does not match the manifest's {expected[:12]}…: the file changed "
                                  f"after the build; rebuild with `flexrec-bench build-data` (labels are never scored "
                                  f"from an edited copy)")
        _VERIFIED[key] = expected
    return path
