"""What every kind of instance shares: the instances of one split before labelling, the seeded
generators, and the interface a kind of instance implements for the build pipeline.

A *kind of instance* owns how its instances are made: ``sequential`` (a user's history before a cut
point; MovieLens, KuaiRec) and ``query`` (a search query with its annotated products; ESCI). The
pipeline in ``build.py`` calls the kind named by the dataset's spec and never branches on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the build config and dataset spec are only type hints here
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.datasets import DatasetSpec, RawData
    from flexrec_bench.building.embed import Embedder


def in_sorted(sorted_values: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``values``: its position in ``sorted_values`` (clipped to the last) and whether it
    is there; one ``searchsorted``, no ``isin`` (which runs two ``unique`` calls)."""
    values = np.asarray(values)
    if not len(sorted_values):
        return np.zeros(values.shape, np.int64), np.zeros(values.shape, bool)
    pos = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return pos, sorted_values[pos] == values


class Known(Mapping):
    """The held-out signals of one instance, item index -> signal, as two arrays sorted by item (a
    read-only mapping, so code that reads a dict reads it too, while the build's hot paths look items
    up with one ``searchsorted`` instead of a Python loop over thousands of entries)."""

    __slots__ = ("items", "signals")

    def __init__(self, items: np.ndarray, signals: np.ndarray, *, presorted: bool = False):
        items = np.asarray(items, np.int64)
        signals = np.asarray(signals, np.float64)
        if not presorted:
            # one entry per item; a repeated item keeps its last signal, as dict(zip(items, signals)) does
            rev_items, first = np.unique(items[::-1], return_index=True)
            items, signals = rev_items, signals[::-1][first]
        self.items, self.signals = items, signals

    @classmethod
    def from_dict(cls, d: Mapping[int, float]) -> Known:
        return cls(np.fromiter(d.keys(), np.int64, len(d)), np.fromiter(d.values(), np.float64, len(d)))

    def __getitem__(self, item: int) -> float:
        pos = int(np.searchsorted(self.items, item))
        if pos < len(self.items) and self.items[pos] == item:
            return float(self.signals[pos])
        raise KeyError(item)

    def __iter__(self) -> Iterator[int]:
        return iter(self.items.tolist())

    def __len__(self) -> int:
        return len(self.items)

    def lookup(self, items: np.ndarray) -> np.ndarray:
        """The signal of each of ``items`` (NaN where unknown)."""
        items = np.asarray(items, np.int64)
        out = np.full(items.shape, np.nan)
        pos, hit = in_sorted(self.items, items)
        out[hit] = self.signals[pos[hit]]
        return out

    def at_least(self, threshold: float) -> np.ndarray:
        """The items (sorted) whose signal is >= ``threshold``."""
        return self.items[self.signals >= threshold]

    def without(self, items: np.ndarray) -> Known:
        """This mapping less ``items`` (the build calls it once per held-out instance)."""
        keep = ~in_sorted(np.sort(np.asarray(items, np.int64)), self.items)[1]
        return Known(self.items[keep], self.signals[keep], presorted=True)


@dataclass
class Instances:
    """Ranking instances of one split, before labelling."""

    instance_id: list[str]
    user_id: list[str]
    query: list[str]
    history: list[np.ndarray]
    history_signals: list[np.ndarray]
    history_times: list[np.ndarray]
    query_time: np.ndarray
    exclude: list[np.ndarray]
    known: list[Known]
    profiles: np.ndarray | None = None
    candidates: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.instance_id)


def rng(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose])


class InstanceKind(ABC):
    """How one kind of instance turns raw data into candidate-bearing instances."""

    name: str

    def reader_options(self, cfg: BuildConfig) -> dict:
        """Keyword options for the dataset's reader."""
        return {}

    def clean_interactions(self, inter: pd.DataFrame, items: pd.DataFrame, raw: RawData, spec: DatasetSpec) -> pd.DataFrame:
        """Check and clean the interactions (counting what is dropped in ``raw.skipped``)."""
        return inter

    @abstractmethod
    def instances(self, raw: RawData, inter: pd.DataFrame, cfg: BuildConfig, spec: DatasetSpec,
                  item_index: dict[str, int], embedder: Embedder, progress: bool) -> tuple[dict[str, Instances], pd.DataFrame]:
        """The instances of every split, and the interactions annotated with their split."""

    @abstractmethod
    def candidates(self, split: str, inst: Instances, emb: np.ndarray, cfg: BuildConfig, spec: DatasetSpec,
                   raw: RawData, item_index: dict[str, int]) -> int:
        """Fill ``inst.candidates`` and ``inst.scores`` in retrieval order; returns the number of
        injected positives."""

    def window_counts(self, inter: pd.DataFrame, item_index: dict[str, int]):
        """A counter of recent interactions per (item, time) for the trend need, or None."""
        return None
