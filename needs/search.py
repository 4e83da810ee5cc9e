from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from flexrec_bench.datasets.signals import ESCI_CODE
from flexrec_bench.building.labeling import LabelContext, Labels, Need


@dataclass
class SearchNeed(Need):
    """Product search (ESCI): Exact/Substitute/Complement/Irrelevant -> 1.0/0.1/0.01/0.0.
    The build stores the annotation as its signal (``ESCI_CODE``: E=3, S=2, C=1, I=0). Relevant: Exact."""

    name: ClassVar[str] = "search"
    instruction: ClassVar[str] = (
        "Rank the products by how well they match the search query, exact matches first, then "
        "substitutes, then complements.")
    label_source: ClassVar[str] = "observed ESCI annotation (E/S/C/I -> 1.0/0.1/0.01/0.0)"
    signal_kinds: ClassVar[tuple[str, ...]] = ("esci",)

    gains: dict[str, float] = field(default_factory=lambda: {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0})

    def label(self, ctx: LabelContext) -> Labels:
        table = np.zeros(len(ESCI_CODE))
        for label, code in ESCI_CODE.items():
            table[int(code)] = self.gains[label]
        sig = ctx.known_signal
        observed = ~np.isnan(sig) & ctx.mask
        code = np.where(observed, sig, 0).astype(np.int64).clip(0, 3)
        rel = np.where(observed, table[code], 0.0).astype(np.float32)
        return Labels(rel, observed & (code == 3), observed)
