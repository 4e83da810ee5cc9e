from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flexrec_bench.need import LabelContext, Labels, Need, minmax


@dataclass
class TrendNeed(Need):
    """Trend promotion: rel = alpha * minmax(similarity) + (1 - alpha) * minmax(recent count),
    where the count is the number of interactions (all users) with the candidate in the
    ``window_seconds`` before the instance's query time. Relevant: rel >= ``relevant_threshold``."""

    name: ClassVar[str] = "trend"
    instruction: ClassVar[str] = (
        "Promote what is trending: rank first the candidates that many people interacted with recently "
        "and that still suit this user.")
    label_source: ClassVar[str] = "derived: alpha * minmax(similarity) + (1 - alpha) * minmax(1-day count)"
    signal_kinds: ClassVar[tuple[str, ...]] = ("rating", "watch_ratio")

    alpha: float = 0.5
    window_seconds: int = 86_400
    relevant_threshold: float = 0.6

    def label(self, ctx: LabelContext) -> Labels:
        counts = ctx.window_counts(self.window_seconds).astype(np.float64)
        rel = self.alpha * minmax(ctx.similarity.astype(np.float64), ctx.mask) + (1.0 - self.alpha) * minmax(counts, ctx.mask)
        rel = np.where(ctx.mask, rel, 0.0).astype(np.float32)
        return Labels(rel, ctx.mask & (rel >= self.relevant_threshold), ctx.mask.copy())
