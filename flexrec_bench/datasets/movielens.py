"""MovieLens readers: GroupLens 100K (u.data/u.item), RecBole atomic files, and 1M (``::`` files)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

from flexrec_bench.foundation.errors import DataError, MissingDataError
from flexrec_bench.datasets._text import clean_text, field_lines, require_file, split_lines, to_number, to_timestamp
from flexrec_bench.datasets.base import RawData

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                 "Thriller", "War", "Western")
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")


def movie_text(title: str, year: str | None, genres: list[str]) -> str:
    """Appendix E's movie text: ``Movie Title: <title>``, ``Movie Year: <year>``, ``Movie genres:
    <genre_1>, <genre_2>, …`` on separate lines (a missing year or genre list leaves its line out)."""
    return field_lines([("Movie Title", title), ("Movie Year", year), ("Movie genres", ", ".join(genres))])


def _split_title(raw: str) -> tuple[str, str | None]:
    m = _YEAR_SUFFIX.search(raw)
    return (raw[: m.start()].strip(), m.group(1)) if m else (raw.strip(), None)


def _items_frame(rows: list[tuple[str, str, str | None, list[str]]]) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": [r[0] for r in rows],
        "title": [r[1] for r in rows],
        "text": [movie_text(r[1], r[2], r[3]) for r in rows],
        "topics": [r[3] for r in rows],
    })


def _interactions_frame(users, items, ratings, times) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series(users, dtype=str),
        "item_id": pd.Series(items, dtype=str),
        "signal": pd.Series(ratings, dtype="float64"),
        "timestamp": pd.Series(times, dtype="int64"),
        "observed": True,
    })


def _check_ratings(path: Path, line: int, rating: float) -> None:
    if not 0.5 <= rating <= 5.0:
        raise DataError(path, f"rating {rating} outside 1..5", line=line, field="rating")


def _read_ratings(path: Path, encoding: str, sep: str, names: list[str], cols: tuple[int, int, int, int],
                  header: bool = False) -> pd.DataFrame:
    """(user, item, rating, timestamp) rows of a ratings file; ``cols`` are their field positions.
    Read by pyarrow's CSV reader (the separator mapped to one byte); any file it cannot read as
    clean numbers, or whose values are out of range, is read again line by line, which names the
    file, line and field of the first fault."""
    fast = _read_ratings_fast(path, sep, names, cols, header)
    if fast is not None:
        return fast
    return _read_ratings_lines(path, encoding, sep, names, cols, header)


def _read_ratings_fast(path: Path, sep: str, names: list[str], cols: tuple[int, int, int, int],
                       header: bool) -> pd.DataFrame | None:
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from flexrec_bench.datasets._text import BOM, MAX_TIMESTAMP

    data = require_file(path).read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data.endswith(b"\n") or b"\x01" in data:
        return None  # the line reader says what is wrong
    if len(sep) > 1:
        data = data.replace(sep.encode(), b"\x01")
    u, i, r, t = cols
    try:
        table = pacsv.read_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(
            column_names=[f"f{j}" for j in range(len(names))], skip_rows=1 if header else 0),
            parse_options=pacsv.ParseOptions(delimiter="\x01" if len(sep) > 1 else sep, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types={f"f{u}": pa.string(), f"f{i}": pa.string(),
                                                               f"f{r}": pa.float64(), f"f{t}": pa.float64()},
                                                 include_columns=[f"f{u}", f"f{i}", f"f{r}", f"f{t}"]))
    except (pa.ArrowInvalid, ValueError):
        return None
    rating = table.column(f"f{r}").to_numpy(zero_copy_only=False)
    ts = table.column(f"f{t}").to_numpy(zero_copy_only=False)
    if table.column(f"f{u}").null_count or table.column(f"f{i}").null_count or not (
            np.isfinite(rating).all() and ((rating >= 0.5) & (rating <= 5.0)).all()
            and (np.abs(ts) < MAX_TIMESTAMP).all()):
        return None
    ids = [table.column(f"f{c}") for c in (u, i)]
    if sep == "\t":  # ML-100K's tab-separated fields may carry spaces
        import pyarrow.compute as pc

        ids = [pc.utf8_trim_whitespace(c) for c in ids]
    users, items = (c.to_pandas() for c in ids)  # Arrow strings straight to pandas: no Python str per row
    return _interactions_frame(users, items, rating, ts.astype(np.int64))


def _read_ratings_lines(path: Path, encoding: str, sep: str, names: list[str], cols: tuple[int, int, int, int],
                        header: bool = False) -> pd.DataFrame:
    users, items, ratings, times = [], [], [], []
    u, i, r, t = cols
    for line, f in split_lines(path, encoding, sep, len(names), names, header=header):
        rating = to_number(path, line, names[r], f[r])
        _check_ratings(path, line, rating)
        users.append(f[u].strip() if sep == "\t" else f[u])  # as the Arrow path trims tab files' ids
        items.append(f[i].strip() if sep == "\t" else f[i])
        ratings.append(rating)
        times.append(to_timestamp(path, line, names[t], f[t]))
    return _interactions_frame(users, items, ratings, times)


def bundled_ml100k_dir() -> Path:
    """The MovieLens-100K atomic files that the ``recbole`` wheel ships (found without importing it)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(
            "the offline default MovieLens-100K is read from the copy inside the recbole wheel: "
            "pip install 'flexrec-bench[recbole]', or pass --raw-dir with u.data/u.item")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"


def read_ml100k(raw_dir: Path | None) -> RawData:
    if raw_dir is None:
        raw_dir = bundled_ml100k_dir()
    if (raw_dir / "u.data").exists() or (raw_dir / "ml-100k" / "u.data").exists():
        return read_ml100k_grouplens(raw_dir if (raw_dir / "u.data").exists() else raw_dir / "ml-100k")
    if (raw_dir / "ml-100k.inter").exists():
        return read_atomic(raw_dir, "ml-100k")
    raise DataError(raw_dir, "no MovieLens-100K files: expected u.data + u.item (GroupLens) "
                             "or ml-100k.inter + ml-100k.item (RecBole atomic)")


def read_ml100k_grouplens(raw_dir: Path) -> RawData:
    data_path, item_path = raw_dir / "u.data", raw_dir / "u.item"
    require_file(item_path, "GroupLens ml-100k needs u.item beside u.data")
    rows = []
    for line, f in split_lines(item_path, "latin-1", "|", 24, ["movie id", "title", "release date", "...", "19 genre flags"]):
        flags = f[5:]
        if any(x not in ("0", "1") for x in flags):
            raise DataError(item_path, "genre flags must be 0/1", line=line, field="genres")
        title, year = _split_title(clean_text(f[1]) or "")
        date = clean_text(f[2])
        if year is None and date:
            year = date[-4:]
        genres = [g for g, x in zip(ML100K_GENRES, flags) if x == "1" and g != "unknown"]
        rows.append((f[0].strip(), title or f"movie {f[0]}", year, genres))
    if not rows:
        raise DataError(item_path, "no movies read; expected movie id|title|release date|...|19 genre flags lines")
    inter = _read_ratings(data_path, "latin-1", "\t", ["user id", "item id", "rating", "timestamp"], (0, 1, 2, 3))
    return RawData("ml-100k", _items_frame(rows), inter, sources=[data_path, item_path])


def _atomic_header(path: Path, required: dict[str, str]) -> list[str]:
    with open(require_file(path), encoding="utf-8", errors="replace") as fh:
        header = fh.readline().lstrip("\ufeff").rstrip("\r\n").split("\t")
    names = {h.split(":")[0]: i for i, h in enumerate(header)}
    for col, typ in required.items():
        if col not in names:
            raise DataError(path, f"missing column '{col}:{typ}' in the atomic header; found {', '.join(header)}", line=1)
    return header


def read_atomic(raw_dir: Path, name: str) -> RawData:
    """RecBole atomic files: typed TSV headers like ``user_id:token``."""
    inter_path, item_path = raw_dir / f"{name}.inter", raw_dir / f"{name}.item"
    ih = _atomic_header(inter_path, {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"})
    col = {h.split(":")[0]: i for i, h in enumerate(ih)}
    inter = _read_ratings(inter_path, "utf-8", "\t", [h.split(":")[0] for h in ih],
                          (col["user_id"], col["item_id"], col["rating"], col["timestamp"]), header=True)
    th = _atomic_header(item_path, {"item_id": "token", "movie_title": "token_seq"})
    tcol = {h.split(":")[0]: i for i, h in enumerate(th)}
    rows = []
    for line, f in split_lines(item_path, "utf-8", "\t", len(th), th, header=True):
        title = clean_text(f[tcol["movie_title"]]) or f"movie {f[tcol['item_id']]}"
        year = clean_text(f[tcol["release_year"]]) if "release_year" in tcol else None
        genres = (f[tcol["class"]].split() if "class" in tcol else [])
        rows.append((f[tcol["item_id"]], title, year, [g for g in genres if g != "unknown"]))
    if not rows:
        raise DataError(item_path, "no items read; expected one line per item after the header")
    return RawData(name, _items_frame(rows), inter, sources=[inter_path, item_path])


def read_ml1m(raw_dir: Path | None) -> RawData:
    if raw_dir is None:
        from flexrec_bench.foundation.paths import raw_dir as default_raw

        raw_dir = default_raw("ml-1m")
    if (raw_dir / "ml-1m" / "ratings.dat").exists():
        raw_dir = raw_dir / "ml-1m"
    ratings_path, movies_path = raw_dir / "ratings.dat", raw_dir / "movies.dat"
    require_file(ratings_path, "run `flexrec-bench download --dataset ml-1m` or pass --raw-dir")
    require_file(movies_path, "ml-1m needs movies.dat beside ratings.dat")
    rows = []
    for line, f in split_lines(movies_path, "latin-1", "::", 3, ["MovieID", "Title", "Genres"]):
        title, year = _split_title(clean_text(f[1]) or "")
        genres = [g for g in f[2].strip().split("|") if g and g != "(no genres listed)"]
        rows.append((f[0].strip(), title, year, genres))
    if not rows:
        raise DataError(movies_path, "no movies read; expected MovieID::Title::Genres lines")
    inter = _read_ratings(ratings_path, "latin-1", "::", ["UserID", "MovieID", "Rating", "Timestamp"], (0, 1, 2, 3))
    sources = [ratings_path, movies_path] + ([raw_dir / "users.dat"] if (raw_dir / "users.dat").exists() else [])
    return RawData("ml-1m", _items_frame(rows), inter, sources=sources)
