"""Line-oriented readers that survive real-file quirks and fail with file:line messages."""

from __future__ import annotations

import ast
import csv
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from flexrec_bench.foundation.errors import DataError

MISSING_MARKERS = frozenset({"", "UNKNOWN", "-124", "nan", "NaN", "None"})


def clean_text(value: str | None) -> str | None:
    """Normalise whitespace (non-breaking spaces, stray CR/LF) and map missing markers to None."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    value = str(value).replace("\xa0", " ").replace("\u3000", " ").replace("\r", " ").replace("\n", " ")
    value = " ".join(value.split())
    return None if value in MISSING_MARKERS else value


def field_lines(fields: Sequence[tuple[str, str | None]]) -> str:
    """Item text in Appendix E's form: one ``Field name: value`` line per field, in the given order,
    joined by newlines; fields without a value are left out (ours: the paper shows every field)."""
    return "\n".join(f"{name}: {value}" for name, value in fields if value)


def require_file(path: Path, hint: str = "") -> Path:
    if not path.is_file():
        raise DataError(path, f"file not found{'; ' + hint if hint else ''}")
    return path


BOM = b"\xef\xbb\xbf"


def read_decoded(path: Path, encoding: str) -> str:
    """The file's text; a UTF-8 byte-order mark at its start is dropped (whatever the encoding, so a
    latin-1 file saved by an editor that added one does not turn its first id into 'ï»¿1')."""
    data = require_file(path).read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(path, f"bad {encoding} byte {data[exc.start:exc.start + 1]!r}; expected {encoding} text",
                        line=line) from None


def split_lines(path: Path, encoding: str, sep: str, n_fields: int, names: Sequence[str],
                header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) of a separator-delimited text file, checking the field count."""
    text = read_decoded(path, encoding)
    lines = text.split("\n")
    if text and not text.endswith("\n"):  # every released file ends its last line
        raise DataError(path, "the last line has no line end: the file looks cut off (an interrupted download or "
                              "copy?); fetch it again", line=len(lines))
    start = 1 if header else 0
    for i in range(start, len(lines)):
        line = lines[i].rstrip("\r")
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != n_fields:
            raise DataError(path, f"expected {n_fields} fields ({sep!r}-separated: {', '.join(names)}), "
                                  f"got {len(fields)}", line=i + 1)
        yield i + 1, fields


def to_number(path: Path, line: int, field: str, value: str, kind: type = float):
    try:
        return kind(value)
    except ValueError:
        raise DataError(path, f"expected {kind.__name__}, got {value!r}", line=line, field=field) from None


#: largest |Unix time| in seconds accepted (about the year 5100): beyond it a value is a unit error
MAX_TIMESTAMP = 1e11


def to_timestamp(path: Path, line: int, field: str, value: str) -> int:
    """A Unix time in seconds: finite, within +-MAX_TIMESTAMP (nan, inf, 1e30 are refused)."""
    t = to_number(path, line, field, value)
    if not (-MAX_TIMESTAMP < t < MAX_TIMESTAMP):  # also False for nan
        raise DataError(path, f"expected a Unix time in seconds, got {value.strip()!r}", line=line, field=field)
    return int(t)


#: most physical lines one CSV record may span (captions with line breaks) before it is an error
MAX_RECORD_LINES = 50


def read_csv_records(path: Path, required: Sequence[str], encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, str]]]:
    """Read a CSV with a header the way real KuaiRec files need.

    - A bare ``\r`` inside a field (Python's csv module would end the record there) is content,
      later normalised to a space by :func:`clean_text`; CRLF line ends are accepted.
    - Quoted fields may hold ``""`` quotes, commas and line breaks.
    - A record whose *unquoted* caption holds a line break has too few fields on its first line:
      following lines are joined to it (with the break kept as a space) until the field count is
      the header's, up to MAX_RECORD_LINES lines; the yielded line number is the record's first.
    """
    text = read_decoded(path, encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").replace("\r", " ").split("\n")
    if not lines or not lines[0].strip():
        raise DataError(path, f"empty file; expected a CSV header with {', '.join(required)}", line=1)
    header = [h.strip() for h in next(csv.reader([lines[0]]))]
    missing = [c for c in required if c not in header]
    if missing:
        sep_hint = " (is the file comma-separated?)" if len(header) == 1 else ""
        raise DataError(path, f"missing column(s) {', '.join(missing)}; found {', '.join(header)}{sep_hint}",
                        line=1)
    n = len(header)
    i = 1
    while i < len(lines):
        start = i
        if not lines[i].strip():
            i += 1
            continue
        buf = lines[i]
        i += 1
        while True:
            row = _parse_record(buf)
            if row is not None and len(row) >= n:
                break
            if i >= len(lines) or i - start >= MAX_RECORD_LINES:
                got = "an unterminated quoted field" if row is None else f"{len(row)} fields"
                raise DataError(path, f"expected {n} fields, got {got}", line=start + 1)
            # a quoted field keeps its line break; an unquoted one gets a space (it is text either way)
            buf += ("\n" if row is None else " ") + lines[i]
            i += 1
        if len(row) != n:
            raise DataError(path, f"expected {n} fields, got {len(row)}", line=start + 1)
        yield start + 1, dict(zip(header, row))


def _parse_record(buf: str) -> list[str] | None:
    """One CSV record from ``buf``, or None while a quoted field is still open."""
    try:
        rows = list(csv.reader(io.StringIO(buf, newline=""), strict=True))
    except csv.Error:
        return None
    if len(rows) != 1:
        return None if not rows else [c for r in rows for c in r]
    return rows[0]


def parse_tag_list(path: Path, line: int, field: str, value: str | None) -> list[str]:
    """A bracketed tag list as KuaiRec writes it: ``[五爱市场,感谢快手我要上热门,搞笑]`` (unquoted
    strings), ``[]``, or a Python-style ``['a', 'b']``. Tags are stripped of quotes and spaces;
    empty and missing-marker tags are dropped."""
    v = (value or "").strip()
    if not v or v in MISSING_MARKERS:
        return []
    if not (v.startswith("[") and v.endswith("]")):
        raise DataError(path, f"expected a bracketed tag list like [tag1,tag2], got {v!r}", line=line, field=field)
    out = []
    for part in v[1:-1].split(","):
        t = clean_text(part.strip().strip("'\"").strip())
        if t:
            out.append(t)
    return out


_INT_LIST = re.compile(r"\[\s*(?:-?\d+\s*(?:,\s*-?\d+\s*)*)?\]")


def parse_list_literal(path: Path, line: int, field: str, value: str) -> list:
    """A Python list literal; a plain list of integers (KuaiRec's ``feat`` column) without
    ``ast.literal_eval``, which compiles each one."""
    v = value.strip()
    if _INT_LIST.fullmatch(v):
        inner = v[1:-1].strip()
        return [int(x) for x in inner.split(",")] if inner else []
    try:
        out = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        raise DataError(path, f"expected a list literal like [1, 2], got {value!r}", line=line, field=field) from None
    if not isinstance(out, (list, tuple)):
        raise DataError(path, f"expected a list literal like [1, 2], got {value!r}", line=line, field=field)
    return list(out)
