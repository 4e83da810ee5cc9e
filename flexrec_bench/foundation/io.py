"""Atomic writes and content hashes: nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def umask() -> int:
    """The process umask (os.umask can only be read by setting it: it is set back at once)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


def fix_mode(path: Path) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have had under the umask (0644/0755
    under the usual 022), not the 0600/0700 that ``tempfile`` uses."""
    mode = (0o777 if path.is_dir() else 0o666) & ~umask()
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


def remove_stale_tmp(dest: str | Path) -> None:
    """Remove ``.<name>.*.tmp`` files that killed writers of ``dest`` left (call while no other
    writer of ``dest`` can be running, e.g. under its lock)."""
    dest = Path(dest)
    if dest.parent.exists():
        for p in dest.parent.glob(f".{dest.name}.*.tmp"):
            if p.is_file() or p.is_symlink():
                p.unlink(missing_ok=True)


_WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied", errno.EISDIR: "it is a folder", errno.ENOTDIR: "a part of the path is a file"}


def cannot_write(path: str | Path, exc: OSError):
    """The one-line error for a write that failed (disk full, read-only, a folder in the way, ...)."""
    from flexrec_bench.foundation.errors import FlexRecError

    why = _WHY.get(exc.errno, exc.strerror or type(exc).__name__)
    return FlexRecError(f"cannot write {path}: {why}; nothing was changed there")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into :func:`cannot_write`'s one line."""
    try:
        yield
    except OSError as exc:
        raise cannot_write(path, exc) from None


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it over ``dest`` only if the block succeeds.
    A write that fails (disk full, read-only, ``dest`` a folder) leaves ``dest`` as it was and is
    reported in one line."""
    dest = Path(dest)
    tmp_path = None
    try:
        if dest.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(dest))
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        fix_mode(tmp_path)
        os.replace(tmp_path, dest)
    except OSError as exc:
        raise cannot_write(dest, exc) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def write_text_atomic(dest: str | Path, text: str) -> None:
    """Write text atomically, with every secret taken out (flexrec_bench.foundation.secrets)."""
    from flexrec_bench.foundation.secrets import redact_text

    with atomic_path(dest) as tmp:
        tmp.write_text(redact_text(text), encoding="utf-8")


def _reject_non_finite(obj: Any, where: str = "$") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite number {obj!r} at {where}: JSON output must be finite")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _reject_non_finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _reject_non_finite(v, f"{where}[{i}]")


def write_json_atomic(dest: str | Path, obj: Any) -> None:
    """Write strict JSON (no NaN/Infinity), sorted keys, atomically, with every secret taken out
    (the values of secret-named fields, URL credentials, known keys: flexrec_bench.foundation.secrets)."""
    from flexrec_bench.foundation.secrets import redact

    _reject_non_finite(obj)
    write_text_atomic(dest, json.dumps(redact(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_parquet_atomic(dest: str | Path, table: pa.Table) -> None:
    """Deterministic Parquet: no pandas index metadata, fixed compression, written then renamed."""
    table = table.replace_schema_metadata(None)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True, store_schema=False)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
