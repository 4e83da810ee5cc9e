"""Line-oriented readers that survive real-file quirks and fail with file:line messages."""

from __future__ import annotations

import ast
import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DataError

MISSING_MARKERS = frozenset({"", "UNKNOWN", "-124", "nan", "NaN", "None"})


def clean_text(value: str | None) -> str | None:
    """Normalise whitespace (non-breaking spaces, stray CR/LF) and map missing markers to None."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    value = str(value).replace("\xa0", " ").replace("\u3000", " ").replace("\r", " ").replace("\n", " ")
    value = " ".join(value.split())
    return None if value in MISSING_MARKERS else value


def require_file(path: Path, hint: str = "") -> Path:
    if not path.is_file():
        raise DataError(path, f"file not found{'; ' + hint if hint else ''}")
    return path


def read_decoded(path: Path, encoding: str) -> str:
    data = require_file(path).read_bytes()
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


def read_csv_records(path: Path, required: Sequence[str], encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, str]]]:
    """Read a CSV with a header, tolerating bare carriage returns inside unquoted fields.

    Python's csv module ends a record at a bare ``\\r``; real KuaiRec caption files contain them
    inside unquoted captions. Records end only at ``\\n`` here (CRLF is accepted), so a bare CR
    is kept as field content (later normalised to a space by :func:`clean_text`).
    """
    text = read_decoded(path, encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", " ")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, f"empty file; expected a CSV header with {', '.join(required)}", line=1) from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        sep_hint = " (is the file comma-separated?)" if len(header) == 1 else ""
        raise DataError(path, f"missing column(s) {', '.join(missing)}; found {', '.join(header)}{sep_hint}",
                        line=1)
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} fields, got {len(row)}", line=line)
        yield line, dict(zip(header, row))


def parse_list_literal(path: Path, line: int, field: str, value: str) -> list:
    try:
        out = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise DataError(path, f"expected a list literal like [1, 2], got {value!r}", line=line, field=field) from None
    if not isinstance(out, (list, tuple)):
        raise DataError(path, f"expected a list literal like [1, 2], got {value!r}", line=line, field=field)
    return list(out)
