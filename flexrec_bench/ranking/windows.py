"""Sliding windows for LLM rankers (rank_llm's scheme): which slices a list of K candidates is
ranked in, and the split that holds one round of windows."""

from __future__ import annotations

import numpy as np

#: per-candidate list columns of a split frame that travel with their candidate
LIST_COLUMNS = ("candidates", "retrieval_scores", "relevance", "relevant", "observed")


def window_starts(k: int, window: int, stride: int) -> list[int]:
    """Start positions of the windows over a list of ``k``, back to front: the last ``window``
    candidates first, then ``stride`` further forward each time, the first window clamped at 0.
    A list no longer than the window is one window."""
    if k <= window:
        return [0]
    starts, s = [], k - window
    while s > 0:
        starts.append(s)
        s -= stride
    return starts + [0]


def window_split(split, rows: list[int], slices: dict[int, list[int]], round_: int):
    """The instances ``rows`` with only the candidates of their current window (``slices``: build
    positions, in the order the window presents them). Instance ids gain ``@w<round>`` so a resumed
    run keeps each round's answers apart."""
    from flexrec_bench.building.splits import DatasetSplit

    frame = split.frame.iloc[rows].reset_index(drop=True).copy()
    cols = [c for c in frame.columns if c in LIST_COLUMNS or c in split.ranker_columns]
    idx = [np.asarray(slices[i]) for i in rows]
    for c in cols:
        frame[c] = [np.asarray(v)[ix] for v, ix in zip(frame[c], idx)]
    frame["instance_id"] = [f"{iid}@w{round_}" for iid in frame["instance_id"]]
    return DatasetSplit(split.dataset, split.need, split.split, split.root, split.manifest, frame)
