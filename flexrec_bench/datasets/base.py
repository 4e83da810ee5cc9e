"""The in-memory form every reader returns, and the per-dataset spec the registry holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flexrec_bench.datasets.download import DownloadSpec
from flexrec_bench.datasets.pinned import PinnedSpec

from flexrec_bench.datasets.signals import SignalKind

def empty_interactions() -> pd.DataFrame:
    """The interactions frame of a dataset without users (query tasks)."""
    return pd.DataFrame({"user_id": pd.Series([], dtype=str), "item_id": pd.Series([], dtype=str),
                         "signal": pd.Series([], dtype="float64"), "timestamp": pd.Series([], dtype="int64"),
                         "observed": pd.Series([], dtype=bool)})


@dataclass
class RawData:
    """A dataset read from its original files, before any split, retrieval or labelling.

    ``items``: item_id (str), title (str), text (str, appendix-E item text), topics (list[str]).
    ``interactions``: user_id (str), item_id (str), signal (float: rating or watch ratio),
    timestamp (int64 seconds), observed (bool: part of the sparse training signal).
    ``eval_labels``: optional fully observed (user_id, item_id, signal) matrix (KuaiRec small matrix).
    ``queries``: optional search annotations (ESCI): query_id, query, item_id, label, split.
    """

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    sources: list[Path]
    skipped: dict[str, int] = field(default_factory=dict)
    eval_labels: pd.DataFrame | None = None
    queries: pd.DataFrame | None = None

    def count_skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)


@dataclass(frozen=True)
class DatasetSpec:
    """What the toolkit knows about one dataset: how to read it, where it comes from."""

    name: str
    description: str
    reader: Callable[..., RawData] = dataclasses.field(repr=False)
    signal_kind: SignalKind
    #: divides the raw signal to weight history items in STAR (rating / 5, watch ratio / 2)
    signal_scale: float
    default_needs: tuple[str, ...]
    downloads: tuple[DownloadSpec, ...] = ()
    #: set when the official source needs a manual step; the text says exactly what to do
    manual_instructions: str | None = None
    #: files (relative to the raw dir) that must exist before reading
    required_files: tuple[str, ...] = ()
    #: the kind of instance it makes (flexrec_bench.building.instance_kinds): sequential (a history) or query (a search)
    instance_kind: str = "sequential"
    #: what the items' topics are, as a prompt names them ("Genres" in "Genres in this user's history")
    topic_name: str = "Topics"
    #: published embedding artifacts (flexrec_bench.datasets.pinned): builds with these embedders agree on every machine
    embeddings: tuple[PinnedSpec, ...] = ()
    #: the embedder a build uses unless --embedder names one
    default_embedder: str = "all-MiniLM-L6-v2"
    #: the reader needs no raw folder (its files ship in a wheel, or it generates its data)
    bundled: bool = False
    #: share of each user's interactions kept as the observed training signal unless --observed-fraction says
    observed_fraction: float = 1.0
    #: the source data's licence as the Hugging Face Hub names it (``cc-by-sa-4.0``, ``apache-2.0``, or ``other``
    #: with ``license_name``); None: unknown, so no dataset card is written and nothing is published
    license: str | None = None
    license_name: str | None = None     #: for ``license: other``: the terms' short name
    license_text: str = ""              #: one sentence on what the licence allows
    redistributable: bool = False       #: whether a build may be uploaded (``publish-build``)
    citation: str = ""                  #: BibTeX of the source data
