"""What every kind of instance shares: the instances of one split before labelling, the seeded
generators, and the interface a kind of instance implements for the build pipeline.

A *kind of instance* owns how its instances are made: ``sequential`` (a user's history before a cut
point; MovieLens, KuaiRec) and ``query`` (a search query with its annotated products; ESCI). The
pipeline in ``build.py`` calls the kind named by the dataset's spec and never branches on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the build config and dataset spec are only type hints here
    from ..build_config import BuildConfig
    from ..datasets import DatasetSpec, RawData
    from ..embed import Embedder


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
    known: list[dict[int, float]]
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
