"""The need interface. Concrete needs live in the top-level ``needs`` package and are found
through the ``flexrec_bench.needs`` entry-point group, so the core never imports them by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import numpy as np

from flexrec_bench.foundation.errors import ConfigError
from flexrec_bench.foundation.options import convert
from flexrec_bench.foundation.registry import Registry


@dataclass
class LabelContext:
    """Everything a need may look at to label a batch of ranking instances (n instances x K slots).

    Slots past an instance's candidate count are padding: ``mask`` is False there, ``candidates`` -1.
    """

    signal_kind: str                       #: "rating" | "watch_ratio" | "esci"
    candidates: np.ndarray                 #: (n, K) int64 item indices, -1 = padding
    mask: np.ndarray                       #: (n, K) bool, valid slots
    known_signal: np.ndarray               #: (n, K) float64, the user's signal on the candidate; NaN = unobserved
    similarity: np.ndarray                 #: (n, K) float64, cosine(user or query profile, candidate)
    candidate_topics: list[list[frozenset[str]]]  #: per instance, per valid slot
    history_topics: list[frozenset[str]]   #: per instance, topics of the history items
    query_time: np.ndarray                 #: (n,) int64 seconds
    window_counts: Callable[[int], np.ndarray]  #: window seconds -> (n, K) interactions in [t - w, t)
    topic_name: str = "Topics"             #: what the dataset's topics are called in a prompt ("Genres", ...)


@dataclass
class Labels:
    relevance: np.ndarray   #: (n, K) float32 graded relevance >= 0 (in [0, 1] except raw watch ratios); 0 on padding
    relevant: np.ndarray    #: (n, K) bool, the need's relevant set (Recall/Precision/MRR)
    observed: np.ndarray    #: (n, K) bool, label known exactly (observed signal or deterministic derivation)
    #: per-candidate values the need's prompt shows (column name -> (n, K) numbers), stored beside
    #: the labels and audited like every column a ranker receives
    shown: dict[str, np.ndarray] = field(default_factory=dict)


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

    def prompt_spec(self, topic_name: str) -> dict:
        """What the need's prompt adds to the item texts (written to ``manifest.needs.<need>.prompt``):
        ``candidate_columns`` (a label-table column of :attr:`Labels.shown` -> a template with ``{}``
        for its value) and ``history_topics`` (the name under which the history's topics are listed,
        or absent). Nothing by default."""
        return {}

    def config(self) -> dict:
        """The need's resolved parameters (the manifest's ``needs.<need>.config`` and a fingerprint
        input). A field declared with ``metadata={OMIT_DEFAULT: True}`` (a reading added after builds
        were registered) appears only when set to another value than its default, so that adding it
        moves no existing build's fingerprint."""
        if not hasattr(self, "__dataclass_fields__"):
            return {}
        out = asdict(self)
        for f in fields(self):
            if f.metadata.get(OMIT_DEFAULT) and out.get(f.name) == f.default:
                out.pop(f.name)
        return out

    def describe(self) -> str:
        """Where this configured need's label comes from (the manifest's ``label_source``): the class's
        ``label_source`` unless an option changes the reading."""
        return self.label_source

    def label_inputs(self) -> tuple[str, ...]:
        """The shown inputs :meth:`label` reads, when it reads nothing a ranker is not shown (the
        retrieval similarity ``retrieval_scores``, ``topics`` of the history and candidates, the
        columns the prompt shows such as ``recent_count``); empty when it reads anything else (the
        user's later signal). A need with inputs here has a label that is a *formula* of what the
        ranker receives: the audit evaluates it on the shipped inputs (flexrec_bench.building.formula_audit)
        and the board marks entries that read them."""
        return ()


#: dataclass field metadata key: leave the field out of :meth:`Need.config` while it holds its default
OMIT_DEFAULT = "omit_default"

NEEDS: Registry[type[Need]] = Registry("need", entry_point_group="flexrec_bench.needs")
#: the needs shipped with flexrec-bench, by name (found from a plain source checkout as well as through
#: the entry points an install adds; plugins add theirs through the ``flexrec_bench.needs`` group)
BUILTIN_NEEDS = {"interest": "needs.interest:InterestNeed", "niche": "needs.niche:NicheNeed",
                 "trend": "needs.trend:TrendNeed", "search": "needs.search:SearchNeed"}
for _name, _target in BUILTIN_NEEDS.items():
    NEEDS.register(_name, lazy=_target)


def get_need(name: str, **overrides) -> Need:
    return NEEDS.get(name)(**overrides)


def make_need(name: str, options: dict) -> Need:
    """A need with label parameters from strings or values (``--need-option niche.bonus=1``): each
    option must be a field of the need's dataclass and is converted to that field's type."""
    import dataclasses
    import typing

    cls = NEEDS.get(name)
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    hints = typing.get_type_hints(cls) if fields else {}
    kwargs = {}
    for key, value in options.items():
        if key not in fields:
            from flexrec_bench.foundation.registry import did_you_mean

            raise ConfigError(f"need {name!r} has no option {key!r}; {did_you_mean(key, sorted(fields))}")
        kwargs[key] = convert(value, hints.get(key), "--need-option", f"{name}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"need {name!r}: {exc}") from None


def minmax(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise min-max scaling over valid slots; a constant row maps to 0."""
    big = np.where(mask, x, np.inf).min(axis=1, keepdims=True)
    top = np.where(mask, x, -np.inf).max(axis=1, keepdims=True)
    rng = top - big
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(rng > 0, (x - big) / np.where(rng > 0, rng, 1.0), 0.0)
    return np.where(mask, out, 0.0)
