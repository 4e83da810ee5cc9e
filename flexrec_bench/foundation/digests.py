"""What identifies a build's data, not the machine that made it: the digest of a label table that
enters the fingerprint, and the per-instance digests a registered build is stored with (so that
another build can be compared with it instance by instance, and a submission's labels checked
against the registered ones rather than against the submitter's copy)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa

#: decimals of the graded relevance that enter the fingerprint (ours): fine enough that any real
#: relabelling changes it
FINGERPRINT_DECIMALS = 4

#: the columns every label table has; any other column holds values a need's prompt shows
LABEL_TABLE_COLUMNS = ("instance_id", "user_id", "query", "history", "history_signals", "history_times", "query_time",
                       "candidates", "retrieval_scores", "relevance", "relevant", "observed")
#: the columns the digests cover (retrieval scores are float bits of the embedder and left out)
DIGESTED = ("instance_id", "user_id", "query", "history", "history_signals", "history_times", "query_time",
            "candidates", "relevant", "observed", "relevance")


def shown_columns(table) -> list[str]:
    """The per-candidate columns a need adds for its prompt (sorted), e.g. trend's ``recent_count``
    (``table``: a pyarrow table or a pandas frame)."""
    names = table.column_names if isinstance(table, pa.Table) else list(table.columns)
    return sorted(c for c in names if c not in LABEL_TABLE_COLUMNS)


def _rounded(values) -> bytes:
    return (np.round(np.asarray(values, np.float64), FINGERPRINT_DECIMALS) + 0.0).astype("<f8").tobytes()


def label_digest(table: pa.Table) -> str:
    """sha256 of a label table's content that identifies the data: instance ids, users, queries,
    histories and their signals and times, candidates in presented order, relevance rounded to
    FINGERPRINT_DECIMALS, the relevant and observed flags, and the columns a need's prompt shows
    (e.g. ``recent_count``). Retrieval scores (float bits of the embedder) are left out. Each column
    is hashed in a fixed encoding (list lengths, then values: strings joined by NUL, numbers as
    little-endian float64/int64, flags as bytes)."""
    h = hashlib.sha256()
    for name in (*DIGESTED, *shown_columns(table)):
        col = table.column(name).combine_chunks()
        h.update(name.encode() + b"\x00")
        if pa.types.is_list(col.type):
            h.update(np.diff(col.offsets.to_numpy()).astype("<i8").tobytes())
            col = col.flatten()
        if pa.types.is_string(col.type):
            h.update("\x00".join(col.to_pylist()).encode("utf-8"))
        elif pa.types.is_boolean(col.type):
            h.update(col.to_numpy(zero_copy_only=False).astype(np.uint8).tobytes())
        elif name == "relevance":
            h.update(_rounded(col.to_numpy()))
        elif pa.types.is_integer(col.type):
            h.update(col.to_numpy().astype("<i8").tobytes())
        else:
            h.update(col.to_numpy().astype("<f8").tobytes())
    return h.hexdigest()


def _short(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little") + p)
    return h.hexdigest()[:16]


def instance_digests(frame: pd.DataFrame) -> dict[str, list]:
    """Per instance of a label table (a split's frame), in its row order:

    - ``instance_id``;
    - ``candidates``: 16 hex digits of the sorted candidate ids (the candidate *set*);
    - ``instance``: 16 hex digits of everything the row holds but the retrieval scores: its history
      with signals and times, the query, the candidates in presented order, the relevance (rounded
      to FINGERPRINT_DECIMALS), the relevant and observed flags and the shown columns;
    - ``relevance_sum``: the sum of its relevance, rounded to FINGERPRINT_DECIMALS.
    """
    shown = shown_columns(frame)
    out: dict[str, list] = {"instance_id": [], "candidates": [], "instance": [], "relevance_sum": []}
    for row in frame.itertuples(index=False):
        cands = [str(c) for c in row.candidates]
        rel = np.asarray(row.relevance, np.float64)
        out["instance_id"].append(str(row.instance_id))
        out["candidates"].append(_short("\x00".join(sorted(cands)).encode()))
        out["instance"].append(_short(
            str(row.instance_id).encode(), str(row.user_id).encode(), str(row.query).encode(),
            "\x00".join(map(str, row.history)).encode(), _rounded(row.history_signals),
            np.asarray(row.history_times, "<i8").tobytes(), int(row.query_time).to_bytes(8, "little", signed=True),
            "\x00".join(cands).encode(), _rounded(rel), np.asarray(row.relevant, np.uint8).tobytes(),
            np.asarray(row.observed, np.uint8).tobytes(),
            *(_rounded(getattr(row, c)) for c in shown)))
        out["relevance_sum"].append(round(float(np.round(rel, FINGERPRINT_DECIMALS).sum()), FINGERPRINT_DECIMALS))
    return out
