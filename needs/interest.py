from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flexrec_bench.datasets.signals import POSITIVE_SIGNAL
from flexrec_bench.building.labeling import LabelContext, Labels, Need, minmax

#: how niche and trend read their relevance term (``--need-option niche.relevance=heldout``): the
#: paper's; the held-out gain times the need's factor (ours); a blend of the two terms (ours)
RELEVANCE_READINGS = ("paper", "heldout", "mixed")


@dataclass
class InterestNeed(Need):
    """Maximize interest: the user's own signal on the candidate.

    MovieLens ratings map exponentially, rel = (2^r - 1) / (2^5 - 1) (the paper: exponential in the
    rating; base 2 and the normalisation are ours); relevant: r >= 4 (ours).
    KuaiRec: the watch ratio itself is the gain, as in the paper (``watch_ratio_cap`` optionally
    caps it: rel = min(w, cap)); relevant: w >= 2 (ours).
    Unobserved pairs get relevance 0 and ``observed = False`` (the critic may fill them in).
    """

    name: ClassVar[str] = "interest"
    instruction: ClassVar[str] = (
        "Rank the candidates by how much this user will enjoy them, most interesting first, "
        "judging from their history.")
    label_source: ClassVar[str] = "observed user signal (rating or watch ratio); unobserved pairs 0"
    signal_kinds: ClassVar[tuple[str, ...]] = ("rating", "watch_ratio")

    rating_max: float = 5.0
    rating_relevant: float = POSITIVE_SIGNAL["rating"]
    watch_ratio_cap: float | None = None   #: None: the raw watch ratio is the gain (the paper)
    watch_ratio_relevant: float = POSITIVE_SIGNAL["watch_ratio"]

    def label(self, ctx: LabelContext) -> Labels:
        sig = ctx.known_signal
        observed = ~np.isnan(sig) & ctx.mask
        s = np.where(observed, sig, 0.0)
        if ctx.signal_kind == "rating":
            rel = (np.exp2(s) - 1.0) / (2.0 ** self.rating_max - 1.0)
            relevant = observed & (s >= self.rating_relevant)
        elif ctx.signal_kind == "watch_ratio":
            rel = np.clip(s, 0.0, self.watch_ratio_cap if self.watch_ratio_cap is not None else None)
            relevant = observed & (s >= self.watch_ratio_relevant)
        else:
            raise ValueError(f"interest cannot label signal kind {ctx.signal_kind!r}")
        rel = np.where(observed, rel, 0.0).astype(np.float32)
        return Labels(rel, relevant, observed)


def check_reading(need: str, relevance: str) -> None:
    """Refuse an unknown ``relevance=`` reading, naming the need, the option and the allowed values."""
    if relevance not in RELEVANCE_READINGS:
        raise ValueError(f"{need} relevance must be one of {', '.join(RELEVANCE_READINGS)} "
                         f"(--need-option {need}.relevance=...), got {relevance!r}")


def check_mix(need: str, mix) -> None:
    """Refuse a ``mix=`` weight outside [0, 1], naming the need, the option and the allowed values."""
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0.0 <= mix <= 1.0:  # also refuses nan
        raise ValueError(f"{need} mix must be a number in [0, 1] (--need-option {need}.mix=..., the held-out gain's "
                         f"weight under relevance=mixed), got {mix!r}")


def mixed_relevance(gain: np.ndarray, term: np.ndarray, mix: float, mask: np.ndarray) -> np.ndarray:
    """The mixed reading (ours): mix * minmax(held-out gain) + (1 - mix) * minmax(the need's own term),
    within each instance, 0 on padding. A need-blind ranker gets the first term and a formula of what
    is shown the second; only a ranker that models the user and reads the need gets both."""
    return np.where(mask, mix * minmax(gain, mask) + (1.0 - mix) * minmax(term, mask), 0.0)


def heldout_gain(ctx: LabelContext) -> Labels:
    """The held-out reading's relevance term (ours, ``relevance=heldout``): what the user did after the
    query time, exactly as the interest need labels it (its gain, its positives, unrated candidates 0
    and unobserved)."""
    if ctx.signal_kind not in InterestNeed.signal_kinds:
        raise ValueError(f"relevance=heldout and relevance=mixed need a held-out user signal ({', '.join(InterestNeed.signal_kinds)}), "
                         f"not {ctx.signal_kind!r}")
    return InterestNeed().label(ctx)
