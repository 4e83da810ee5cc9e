"""KuaiRec 2.0 reader: big/small matrices, captions with categories, item feature lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flexrec_bench.foundation.errors import DataError
from flexrec_bench.datasets._text import (MAX_TIMESTAMP, clean_text, field_lines, parse_list_literal, parse_tag_list, read_csv_records,
                    require_file)
from flexrec_bench.datasets.base import RawData

MATRIX_COLUMNS = ("user_id", "video_id", "play_duration", "video_duration", "time", "date", "timestamp", "watch_ratio")
CAPTION_COLUMNS = ("video_id", "manual_cover_text", "caption", "topic_tag",
                   "first_level_category_id", "first_level_category_name",
                   "second_level_category_id", "second_level_category_name",
                   "third_level_category_id", "third_level_category_name")


USER_COLUMNS = ("user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
                "follow_user_num", "fans_user_num", "friend_user_num", "register_days")


def _data_dir(raw_dir: Path) -> Path:
    for cand in (raw_dir, raw_dir / "data", raw_dir / "KuaiRec 2.0" / "data", raw_dir / "KuaiRec" / "data"):
        if (cand / "small_matrix.csv").exists():
            return cand
    raise DataError(raw_dir / "small_matrix.csv", "file not found; unpack KuaiRec.zip so that "
                    "'KuaiRec 2.0/data/small_matrix.csv' lies under --raw-dir")


def read_matrix(path: Path) -> dict[str, np.ndarray]:
    """Read big_matrix.csv / small_matrix.csv: only the four columns used, as NumPy arrays in narrow
    types, with pyarrow's multi-threaded CSV reader (12.5M rows in seconds) and no DataFrame between.
    Empty and UNKNOWN cells become missing: NaN (an id column with a missing cell comes back as
    float64, as pandas would give it); they are skipped and counted later. Any other non-number is a
    one-line error naming its line."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    require_file(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = [h.strip().strip('"') for h in fh.readline().rstrip("\r\n").split(",")]
    missing = [c for c in ("user_id", "video_id", "timestamp", "watch_ratio") if c not in header]
    if missing:
        hint = " (is the file comma-separated?)" if len(header) == 1 else ""
        raise DataError(path, f"missing column(s) {', '.join(missing)}; expected {', '.join(MATRIX_COLUMNS)}{hint}", line=1)
    cols = ["user_id", "video_id", "timestamp", "watch_ratio"]
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            include_columns=cols, column_types={"user_id": pa.int64(), "video_id": pa.int64(),
                                                "timestamp": pa.float64(), "watch_ratio": pa.float64()},
            null_values=["", "UNKNOWN", "nan", "NaN"], strings_can_be_null=True))
        out = {}
        for col in cols:
            arr = table.column(col)
            if arr.null_count and pa.types.is_integer(arr.type):
                arr = arr.cast(pa.float64())  # nulls become NaN
            out[col] = arr.to_numpy()
        return out
    except (pa.ArrowInvalid, ValueError):
        pass  # some cell is not a number: re-read as text to say which one
    df = pd.read_csv(path, usecols=cols, dtype=str, keep_default_na=False, engine="c")
    out = {}
    for col in cols:
        vals = pd.to_numeric(df[col].replace({"": np.nan, "UNKNOWN": np.nan}), errors="coerce")
        bad = vals.isna() & ~df[col].isin(["", "UNKNOWN", "nan", "NaN"])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(path, f"expected a number, got {df[col].iloc[i]!r}", line=i + 2, field=col)
        out[col] = vals.to_numpy()
    return out


def _present(values: np.ndarray) -> np.ndarray:
    """Rows without a missing (NaN) cell in ``values``."""
    return ~np.isnan(values) if values.dtype.kind == "f" else np.ones(len(values), bool)


def _rows(cols: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The rows where ``keep`` holds. When few rows go (KuaiRec: about 1,300 of 12.5M), a writable
    column is compacted in place, the kept runs moved over the dropped rows: a boolean index would
    fault in a fresh 100 MB array per column, which is most of its cost on a VM."""
    drop = np.flatnonzero(~keep)
    if not len(drop):
        return cols
    out = {}
    for k, v in cols.items():
        if len(drop) > 10_000 or not v.flags.writeable or not v.flags.c_contiguous:
            out[k] = v[keep]
            continue
        for shift, (a, b) in enumerate(zip(drop + 1, np.r_[drop[1:], len(v)]), start=1):
            v[a - shift:b - shift] = v[a:b]  # overlapping ranges: numpy copies as memmove would
        out[k] = v[:len(v) - len(drop)]
    return out


def distinct_ids(*arrays: np.ndarray) -> np.ndarray:
    """The sorted distinct integers of ``arrays`` (a presence table for non-negative ids below 50
    million, else a sort)."""
    vals = [np.asarray(a, np.int64) for a in arrays if len(a)]
    if vals and min(int(v.min()) for v in vals) >= 0 and max(int(v.max()) for v in vals) < 50_000_000:
        size = max(int(v.max()) for v in vals) + 1
        return np.flatnonzero(np.any([np.bincount(v, minlength=size) > 0 for v in vals], axis=0))
    return np.unique(np.concatenate(vals)) if vals else np.zeros(0, np.int64)


def id_categorical(values: np.ndarray) -> pd.Categorical:
    """Integer ids as string ids without 12.5M Python strings: a Categorical whose categories are
    the distinct ids as strings in lexicographic order, so sorting by it sorts as strings would.
    Non-negative ids below 50 million are coded by one counting pass (O(n + max id)), others by a sort."""
    values = np.asarray(values, np.int64)
    dense = bool(len(values)) and values.min() >= 0 and values.max() < 50_000_000
    if dense:
        present = np.bincount(values) > 0
        uniq = np.flatnonzero(present)
    else:
        uniq, inv = np.unique(values, return_inverse=True)
    names = uniq.astype(str)
    lex = np.argsort(names, kind="stable")
    # the codes in the narrow type pandas would store them in, gathered once per row
    code_type = np.int16 if len(uniq) < 2 ** 15 - 1 else np.int32 if len(uniq) < 2 ** 31 - 1 else np.int64
    rank = np.empty(len(lex), code_type)
    rank[lex] = np.arange(len(lex))
    if dense:
        lookup = np.zeros(len(present), code_type)
        lookup[uniq] = rank
        codes = lookup[values]
    else:
        codes = rank[inv]
    return pd.Categorical.from_codes(codes, categories=names[lex])


def read_captions(path: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for line, rec in read_csv_records(path, CAPTION_COLUMNS):
        vid = (rec["video_id"] or "").strip()
        if not vid.isdigit():
            raise DataError(path, f"expected an integer video_id, got {vid!r}", line=line, field="video_id")
        tags = parse_tag_list(path, line, "topic_tag", rec["topic_tag"])
        cats = [clean_text(rec[f"{lvl}_level_category_name"]) for lvl in ("first", "second", "third")]
        rows[vid] = {
            "caption": clean_text(rec["caption"]) or clean_text(rec["manual_cover_text"]),
            "categories": [c for c in cats if c],
            "tags": [t for t in tags if t],
        }
    return rows


def read_item_categories(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line, rec in read_csv_records(path, ("video_id", "feat")):
        feats = parse_list_literal(path, line, "feat", rec["feat"])
        out[rec["video_id"].strip()] = [f"feat:{int(x)}" for x in feats if str(x).lstrip("-").isdigit() and int(x) >= 0]
    return out


def video_text(vid: str, info: dict | None) -> str:
    """Appendix E's video text: ``Video caption: <caption>``, ``Category path: <level_1> > <level_2> >
    <level_3>``, ``Video tag: <tag>`` (the topic tags, comma-separated) on separate lines. A missing
    field leaves its line out; a video with none of them is ``Video caption: (none), video <id>`` (ours)."""
    info = info or {}
    text = field_lines([("Video caption", info.get("caption")),
                        ("Category path", " > ".join(info.get("categories") or [])),
                        ("Video tag", ", ".join(info.get("tags") or []))])
    return text or f"Video caption: (none), video {vid}"


def read_kuairec(raw_dir: Path | None) -> RawData:
    if raw_dir is None:
        from flexrec_bench.foundation.paths import raw_dir as default_raw

        raw_dir = default_raw("kuairec")
    d = _data_dir(raw_dir)
    big_path, small_path = d / "big_matrix.csv", d / "small_matrix.csv"
    cap_path, cat_path = d / "kuairec_caption_category.csv", d / "item_categories.csv"
    raw = RawData("kuairec", items=pd.DataFrame(), interactions=pd.DataFrame(), sources=[])
    inter_src = big_path if big_path.exists() else small_path
    big = read_matrix(inter_src)
    small = read_matrix(small_path) if inter_src != small_path else big
    small_ok = np.logical_and.reduce([_present(small[c]) for c in ("user_id", "video_id", "watch_ratio")])
    # a copy where the small matrix is the big one: _rows below compacts big's columns in place
    small_clean = _rows(small, small_ok) if small is not big else {k: v[small_ok] for k, v in small.items()}
    n0 = len(big["user_id"])
    ok = np.logical_and.reduce([_present(v) for v in big.values()])
    raw.count_skip("interactions with a missing timestamp or watch ratio", n0 - int(ok.sum()))
    in_range = (big["timestamp"] < MAX_TIMESTAMP) & (big["timestamp"] > -MAX_TIMESTAMP)  # NaN: False, as abs() gave
    raw.count_skip("interactions with an infinite or out-of-range timestamp", int((ok & ~in_range).sum()))
    big = _rows(big, ok & in_range)
    raw.count_skip("small-matrix cells with a missing watch ratio", len(small_ok) - int(small_ok.sum()))
    captions = read_captions(cap_path) if cap_path.exists() else {}
    if cat_path.exists():  # validated and hashed into the manifest; topics come from the topic tags
        read_item_categories(cat_path)
    if not cap_path.exists():
        raw.count_skip("videos without caption file (kuairec_caption_category.csv absent)", 1)
    vid_ints = distinct_ids(big["video_id"], small_clean["video_id"])
    vids = sorted(set(vid_ints.astype(str).tolist()) | set(captions), key=int)
    # niche topics are the topic tags, as in the paper (Appendix B); an untagged video has none and
    # is never niche. (Categories and item_categories features go into the item text only.)
    topics = [list((captions.get(v) or {}).get("tags") or []) for v in vids]
    users_path = d / "user_features.csv"
    if users_path.exists():  # validated and hashed into the manifest; no label uses it
        for _ in read_csv_records(users_path, USER_COLUMNS):
            pass
    raw.items = pd.DataFrame({
        "item_id": vids,
        "title": [(captions.get(v) or {}).get("caption") or f"Video {v}" for v in vids],
        "text": [video_text(v, captions.get(v)) for v in vids],
        "topics": topics,
    })
    raw.interactions = pd.DataFrame({
        "user_id": id_categorical(big["user_id"]),
        "item_id": id_categorical(big["video_id"]),
        "signal": big["watch_ratio"].astype(np.float64, copy=False),
        "timestamp": np.round(big["timestamp"]).astype(np.int64),
        "observed": np.ones(len(big["user_id"]), bool),
    }, copy=False)
    raw.eval_labels = pd.DataFrame({
        "user_id": id_categorical(small_clean["user_id"]),
        "item_id": id_categorical(small_clean["video_id"]),
        "signal": small_clean["watch_ratio"].astype(np.float64, copy=False),
    }, copy=False)
    raw.sources = [p for p in (big_path, small_path, cap_path, cat_path, users_path) if p.exists()]
    return raw
