"""STAR retrieval: a temporally discounted, signal-weighted profile of the history, then top-K by
inner product with FAISS, excluding the items the user has already seen."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: STAR's temporal discount per step back in the history (STAR's default; the FlexRec paper does
#: not state its value): the one default for retrieval profiles, the STAR ranker and the critic
STAR_LAMBDA = 0.7


def history_weights(signals: np.ndarray, lam: float, signal_scale: float) -> np.ndarray:
    """STAR weights: signal/scale times lam^(steps back from the most recent item)."""
    n = len(signals)
    decay = lam ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.clip(signals / signal_scale, 0.0, None) * decay


def profile_vectors(histories: Sequence[np.ndarray], signals: Sequence[np.ndarray], emb: np.ndarray,
                    lam: float = STAR_LAMBDA, signal_scale: float = 1.0) -> np.ndarray:
    """One unit-norm profile per instance: the weighted average of its history embeddings."""
    out = np.zeros((len(histories), emb.shape[1]), np.float32)
    for i, (h, s) in enumerate(zip(histories, signals)):
        if len(h) == 0:
            continue
        w = history_weights(np.asarray(s, np.float64), lam, signal_scale)
        if w.sum() <= 0:
            w = np.ones_like(w)
        v = (w[:, None] * emb[h]).sum(0) / w.sum()
        out[i] = v / max(float(np.sqrt((v * v).sum())), 1e-12)  # no BLAS: thread-count independent
    return out


#: extra candidates FAISS returns beyond k, so that the exact re-scoring can reorder the boundary
RESCORE_MARGIN = 16


def exact_scores(items: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Inner products in float64 by elementwise products and numpy's own summation: no BLAS call, so
    the result does not depend on the thread count (FAISS's float32 search does, in the last bits)."""
    return (np.asarray(items, np.float64) * np.asarray(query, np.float64)[None, :]).sum(1)


def retrieve(queries: np.ndarray, emb: np.ndarray, k: int, exclude: Sequence[np.ndarray],
             allowed: np.ndarray | None = None, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by inner product for each query, never returning an item in ``exclude[i]``.

    FAISS (exact inner product) selects ``k`` + ``RESCORE_MARGIN`` items; they are re-scored with
    :func:`exact_scores` and the top ``k`` kept, ties broken by item index (ascending), so results
    are the same with one thread or many. ``allowed`` (item indices) restricts the catalogue.
    Returns (indices (n, k) int64, scores (n, k) float32); rows with fewer eligible items are padded
    with -1 / -inf.
    """
    import faiss

    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    cat = np.arange(len(emb)) if allowed is None else np.asarray(allowed, np.int64)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb[cat], dtype=np.float32))
    n = len(queries)
    idx_out = np.full((n, k), -1, np.int64)
    sc_out = np.full((n, k), -np.inf, np.float32)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        extra = max((len(exclude[i]) for i in range(start, stop)), default=0)
        kk = min(len(cat), k + extra + 1 + RESCORE_MARGIN)
        scores, local = index.search(np.ascontiguousarray(queries[start:stop], dtype=np.float32), kk)
        for r in range(stop - start):
            i = start + r
            ok = local[r] >= 0
            items = cat[local[r][ok]]
            if len(exclude[i]):
                items = items[~np.isin(items, exclude[i])]
            items = items[: k + RESCORE_MARGIN]  # FAISS order: the re-scoring settles the boundary
            sc = exact_scores(emb[items], queries[i])
            order = np.lexsort((items, -sc))[:k]
            idx_out[i, : len(order)] = items[order]
            sc_out[i, : len(order)] = sc[order]
    return idx_out, sc_out
