"""What the datasets' signals mean, shared by the readers, the kinds of instance and the needs."""

from __future__ import annotations

from typing import Literal

SignalKind = Literal["rating", "watch_ratio", "esci"]

#: the signal at or above which an interaction is a positive (ours): rating 4 of 5, watch ratio 2,
#: ESCI Exact; the interest need's relevant set, --ensure-positive and candidate recall use it
POSITIVE_SIGNAL: dict[str, float] = {"rating": 4.0, "watch_ratio": 2.0, "esci": 3.0}

#: ESCI's annotation as the signal a build stores (Exact 3, Substitute 2, Complement 1, Irrelevant 0)
ESCI_CODE = {"E": 3.0, "S": 2.0, "C": 1.0, "I": 0.0}
