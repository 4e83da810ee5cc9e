"""Rankings: turning scores or parsed LLM output into permutations of a candidate set, and
checking that a ranking really is one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from flexrec_bench.foundation.errors import FlexRecError


def tie_keys(n: int, k: int, seed: int) -> np.ndarray:
    """The seeded random keys that break score ties (docs/metrics.md, "ties")."""
    return np.random.default_rng([seed, 7]).random((n, k))


def scores_to_order(scores: np.ndarray, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """Order candidates by descending score; equal scores are ordered by a seeded random key, so a
    constant scorer gets a random ranking, never the candidate order. Padding slots go last as -1."""
    n, k = scores.shape
    s = np.where(mask, scores.astype(np.float64), -np.inf)
    order = np.lexsort((tie_keys(n, k, seed), -s), axis=1)
    return np.where(np.take_along_axis(mask, order, axis=1), order, -1)


class ParseStats(BaseModel):
    """Per-run counts of what had to be repaired in LLM output (paper appendix F); the results
    file stores this model as it is (``parse``)."""

    model_config = ConfigDict(extra="forbid")

    instances: int = Field(default=0, ge=0, description="outputs parsed")
    unparseable: int = Field(default=0, ge=0, description="outputs with no valid candidate id at all")
    invalid_ids: int = Field(default=0, ge=0, description="ids that name no candidate")
    duplicates: int = Field(default=0, ge=0, description="repeated ids (later occurrences dropped)")
    missing_items: int = Field(default=0, ge=0, description="candidates absent from the output, padded in seeded random order")
    complete: int = Field(default=0, ge=0, description="outputs that were already a full permutation")
    echoed: int = Field(default=0, ge=0, description=(
        "outputs that repeat the presented order: the ids written are the first ones shown, in the order shown "
        "(at least 2 of them, or the whole list), i.e. C1, C2, C3, ... as the prompt listed them"))
    first_shown_first: int = Field(default=0, ge=0, description=(
        "rankings whose first item is the candidate shown first (a ranker blind to position: 1/K of them)"))

    @property
    def echo_share(self) -> float | None:
        return self.echoed / self.instances if self.instances else None

    def warnings(self) -> list[str]:
        """Lines a person should read before trusting the metrics."""
        out = []
        if self.instances and self.echoed * 2 > self.instances:
            out.append(f"warning: {self.echoed} of {self.instances} rankings repeat the presented order (C1, C2, ...): "
                       f"the model mostly echoes the prompt; its metrics measure the presented order, not a ranking")
        return out

    def add(self, other: ParseStats) -> None:
        for f in type(self).model_fields:
            setattr(self, f, getattr(self, f) + getattr(other, f))


@dataclass
class RankResult:
    """What a ranker returns for a split: orders as candidate positions (n, K), -1 padded."""

    order: np.ndarray
    outputs: list[str] | None = None
    parse: ParseStats | None = None
    usage: dict | None = None   #: an LLM's calls, prompts, tokens in and out


def check_permutations(order: np.ndarray, mask: np.ndarray, where: str = "rankings") -> None:
    """Raise unless every row lists each valid candidate position exactly once (padding -1 last)."""
    n, k = mask.shape
    if order.shape != (n, k):
        raise FlexRecError(f"{where}: expected shape ({n}, {k}), got {order.shape}")
    nvalid = mask.sum(1)
    expect = np.where(np.arange(k)[None, :] < nvalid[:, None], np.arange(k)[None, :], -1)
    srt = np.sort(np.where(order >= 0, order, k + 1), axis=1)
    srt = np.where(srt == k + 1, -1, srt)
    bad = np.flatnonzero((srt != expect).any(1))
    if len(bad):
        raise FlexRecError(f"{where}: row {int(bad[0])} is not a permutation of its {int(nvalid[bad[0]])} candidates")
