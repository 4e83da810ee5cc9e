"""The need interface. Concrete needs live in the top-level ``needs`` package and are found
through the ``flexrec_bench.needs`` entry-point group, so the core never imports them by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from .registry import Registry


@dataclass
class LabelContext:
    """Everything a need may look at to label a batch of ranking instances (n instances x K slots).

    Slots past an instance's candidate count are padding: ``mask`` is False there, ``candidates`` -1.
    """

    signal_kind: str                       #: "rating" | "watch_ratio" | "esci"
    candidates: np.ndarray                 #: (n, K) int64 item indices, -1 = padding
    mask: np.ndarray                       #: (n, K) bool, valid slots
    known_signal: np.ndarray               #: (n, K) float64, the user's signal on the candidate; NaN = unobserved
    similarity: np.ndarray                 #: (n, K) float32, cosine(user or query profile, candidate)
    candidate_topics: list[list[frozenset[str]]]  #: per instance, per valid slot
    history_topics: list[frozenset[str]]   #: per instance, topics of the history items
    query_time: np.ndarray                 #: (n,) int64 seconds
    window_counts: Callable[[int], np.ndarray]  #: window seconds -> (n, K) interactions in [t - w, t)


@dataclass
class Labels:
    relevance: np.ndarray   #: (n, K) float32 graded relevance in [0, 1]; 0 on padding
    relevant: np.ndarray    #: (n, K) bool, the need's relevant set (Recall/Precision/MRR)
    observed: np.ndarray    #: (n, K) bool, label known exactly (observed signal or deterministic derivation)


class Need(ABC):
    """A recommendation need: an instruction for the LLM and a labelling rule for candidates."""

    name: ClassVar[str]
    instruction: ClassVar[str]
    #: one line for docs and the manifest: where the label comes from
    label_source: ClassVar[str]
    #: which dataset signal kinds this need can label
    signal_kinds: ClassVar[tuple[str, ...]]

    @abstractmethod
    def label(self, ctx: LabelContext) -> Labels: ...

    def config(self) -> dict:
        return asdict(self) if hasattr(self, "__dataclass_fields__") else {}


NEEDS: Registry[type[Need]] = Registry("need", entry_point_group="flexrec_bench.needs")


def get_need(name: str, **overrides) -> Need:
    return NEEDS.get(name)(**overrides)


def minmax(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise min-max scaling over valid slots; a constant row maps to 0."""
    big = np.where(mask, x, np.inf).min(axis=1, keepdims=True)
    top = np.where(mask, x, -np.inf).max(axis=1, keepdims=True)
    rng = top - big
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(rng > 0, (x - big) / np.where(rng > 0, rng, 1.0), 0.0)
    return np.where(mask, out, 0.0)
