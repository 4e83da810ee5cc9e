"""Where the toolkit keeps downloads and caches: one home, set by ``$FLEXREC_HOME``."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """``$FLEXREC_HOME`` or the user's cache directory (``~/.cache/flexrec-bench`` on Linux)."""
    env = os.environ.get("FLEXREC_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("flexrec-bench"))


def raw_dir(dataset: str) -> Path:
    return home() / "raw" / dataset


def embedding_cache_dir() -> Path:
    return home() / "embeddings"
