"""Where the toolkit keeps downloads and caches: one home, set by ``$FLEXREC_HOME``."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """``$FLEXREC_HOME`` or the user's cache directory (``~/.cache/flexrec-bench`` on Linux)."""
    env = os.environ.get("FLEXREC_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("flexrec-bench"))


def data_flag(data_dir: str | Path | None, flag: str = "--data") -> str:
    """`` --data <dir>`` for a command a message suggests, or nothing when ``data_dir`` is the
    commands' default (``data``): a suggestion names the folder the user is working in."""
    if data_dir is None or Path(data_dir) == Path("data"):
        return ""
    return f" {flag} {data_dir}"


def raw_dir(dataset: str) -> Path:
    return home() / "raw" / dataset


def embedding_cache_dir() -> Path:
    return home() / "embeddings"
