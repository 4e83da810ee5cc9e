"""Pinned embeddings: the embedding vectors of a dataset's texts as a published input, like its raw files.

Float32 sentence-transformer vectors differ in their last bits between CPUs (other SIMD kernels,
other summation orders), and those bits move near-ties among the candidates and the labels built
from similarities. So for a (dataset, embedder) pair the vectors are an artifact with a sha256 and
a size: every machine that builds from the same artifact gets the same candidates, labels and
fingerprint (docs/data.md, "One build on every machine").

An artifact is a zip of two ``.npy`` arrays (written with fixed timestamps, so the same vectors give
the same bytes): ``keys``, the first 32 hex digits of each text's sha256 (as the embedding cache keys
them), and ``vectors``, float32 (n, d). It covers every text a build embeds: item texts, and search
queries for query datasets. Lookup order: ``$FLEXREC_HOME/embeddings/pinned/<file>`` (fetched with
``flexrec-bench download --embeddings <dataset>``), then the copy shipped inside the package
(``flexrec_bench/datasets/embeddings/``). A file is used only after its sha256 and size check out.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flexrec_bench.foundation.errors import DataError
from flexrec_bench.foundation.io import atomic_path, sha256_file

BUNDLED_DIR = Path(__file__).parent / "embeddings"


@dataclass(frozen=True)
class PinnedSpec:
    """One published embedding artifact of a dataset."""

    embedder: str       #: the embedder name a build asks for (``--embedder``), e.g. all-MiniLM-L6-v2
    filename: str       #: e.g. ml-100k.all-MiniLM-L6-v2.npz
    sha256: str         #: of the whole file
    size: int           #: bytes
    texts: int          #: vectors in it
    bundled: bool = False  #: shipped inside the package (no download needed)


#: the embedder a build uses unless --embedder names another, and the names it is published under
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
MINILM_ALIASES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def canonical_embedder(name: str) -> str:
    """One name per model: the hub aliases of all-MiniLM-L6-v2 are one embedder."""
    return DEFAULT_EMBEDDER if name in MINILM_ALIASES else name


#: how a build gets its vectors: "auto" (pinned where an artifact for the dataset and embedder is on
#: this machine or bundled, else computed here), "pinned" (refuse to build without it), "local"
#: (always compute here: the fingerprint is then machine-specific)
EMBEDDING_MODES = ("auto", "pinned", "local")


def find(specs, embedder: str) -> PinnedSpec | None:
    """The artifact published for ``embedder`` among a dataset's ``specs`` (aliases resolved)."""
    name = canonical_embedder(embedder)
    return next((s for s in specs if canonical_embedder(s.embedder) == name), None)


def resolve(dataset: str, specs, embedder: str, mode: str) -> tuple[PinnedSpec | None, dict[str, np.ndarray]]:
    """(the artifact, its vectors) a build uses, or (None, {}) when it computes its own."""
    from flexrec_bench.foundation.errors import ConfigError, MissingDataError

    if mode not in EMBEDDING_MODES:
        raise ConfigError(f"--embeddings must be one of {', '.join(EMBEDDING_MODES)}, got {mode!r}")
    if mode == "local":
        return None, {}
    spec = find(specs, embedder)
    path = locate(spec) if spec else None
    if path is None:
        if mode == "pinned":
            what = (f"{spec.filename} is not on this machine: run `flexrec-bench download --embeddings {dataset}`"
                    if spec else f"no pinned {embedder} embeddings are published for {dataset} (published: "
                                 f"{', '.join(s.embedder for s in specs) or 'none'})")
            raise MissingDataError(f"--embeddings pinned: {what}, or build with --embeddings local")
        return None, {}
    return spec, load(spec, path)


def text_key(text: str) -> str:
    """The key of a text in caches and artifacts: the first 32 hex digits of its UTF-8 sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def pinned_dir() -> Path:
    from flexrec_bench.foundation.paths import home

    return home() / "embeddings" / "pinned"


def locate(spec: PinnedSpec) -> Path | None:
    """The artifact's file on this machine (downloaded first, then bundled), or None."""
    for folder in (pinned_dir(), BUNDLED_DIR):
        p = folder / spec.filename
        if p.is_file():
            return p
    return None


_CHECKED: dict[tuple[str, int, int], str] = {}


def load(spec: PinnedSpec, path: Path) -> dict[str, np.ndarray]:
    """{text key: float32 vector} of an artifact, after checking its size and sha256."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _CHECKED.get(key) != spec.sha256:
        if st.st_size != spec.size:
            raise DataError(path, f"size {st.st_size} bytes, expected {spec.size} for the pinned {spec.embedder} "
                                  f"embeddings; fetch them again with `flexrec-bench download --embeddings`")
        got = sha256_file(path)
        if got != spec.sha256:
            raise DataError(path, f"sha256 {got[:12]}… does not match the pinned {spec.embedder} embeddings' "
                                  f"{spec.sha256[:12]}…; fetch them again with `flexrec-bench download --embeddings`")
        _CHECKED[key] = spec.sha256
    keys, vectors = read_artifact(path)
    return dict(zip(keys, vectors))


def read_artifact(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = [k.decode("ascii") if isinstance(k, bytes) else str(k) for k in z["keys"]]
            vectors = np.asarray(z["vectors"], np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"not an embedding artifact (a zip of keys.npy and vectors.npy): {exc}") from None
    if vectors.ndim != 2 or len(keys) != len(vectors):
        raise DataError(path, f"{len(keys)} keys for vectors of shape {vectors.shape}; expected one key per row")
    return keys, vectors


def write_artifact(path: Path, keys: list[str], vectors: np.ndarray) -> tuple[str, int]:
    """Write an artifact (keys sorted, so the bytes depend only on the vectors); returns (sha256, size)."""
    order = np.argsort(np.array(keys))
    arrays = {"keys": np.array([keys[i] for i in order], dtype="S32"),
              "vectors": np.ascontiguousarray(np.asarray(vectors, np.float32)[order])}
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    return sha256_file(path), path.stat().st_size
