"""STAR retrieval: a temporally discounted, signal-weighted profile of the history, then top-K by
inner product with FAISS, excluding the items the user has already seen."""

from __future__ import annotations

import os
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
    """One unit-norm float64 profile per instance: the weighted average of its history embeddings,
    summed row by row in history order and normalised without BLAS, so the result depends only on
    the embeddings (not on the thread count or the CPU's kernels)."""
    out = np.zeros((len(histories), emb.shape[1]), np.float64)
    for i, (h, s) in enumerate(zip(histories, signals)):
        if len(h) == 0:
            continue
        w = history_weights(np.asarray(s, np.float64), lam, signal_scale)
        if w.sum() <= 0:
            w = np.ones_like(w)
        v = (w[:, None] * np.asarray(emb[h], np.float64)).sum(0) / w.sum()
        out[i] = v / max(float(np.sqrt((v * v).sum())), 1e-12)
    return out


#: extra candidates FAISS returns beyond k, so that the exact re-scoring can reorder the boundary
RESCORE_MARGIN = 16


def exact_scores(items: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Inner products in float64 by elementwise products and numpy's own summation: no BLAS call, so
    the result does not depend on the thread count (FAISS's float32 search does, in the last bits)."""
    return (np.asarray(items, np.float64) * np.asarray(query, np.float64)[None, :]).sum(1)


#: catalogue size from which FAISS selects the shortlist; below it a numpy matrix product does (ours:
#: benchmarks/bench_retrieval.py measured FAISS 1.4x faster already at 1,000 items and 2.9x at 100k,
#: so numpy only serves catalogues too small to matter, without importing FAISS)
FAISS_MIN_ITEMS = 1000
BACKENDS = ("auto", "numpy", "faiss", "faiss-gpu")


class _NumpyIndex:
    """Exact inner-product shortlist by a float32 matrix product (small catalogues)."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, queries: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self.vectors.T
        kk = min(kk, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < scores.shape[1] else \
            np.tile(np.arange(scores.shape[1]), (len(scores), 1))
        top = np.take_along_axis(scores, part, 1)
        order = np.argsort(-top, axis=1, kind="stable")
        return np.take_along_axis(top, order, 1), np.take_along_axis(part, order, 1)


def _index(vectors: np.ndarray, backend: str):
    """The shortlist index: numpy below FAISS_MIN_ITEMS (``auto``), else FAISS's exact
    IndexFlatIP, on a GPU with ``faiss-gpu`` (or ``auto`` where faiss has GPUs)."""
    if backend not in BACKENDS:
        from flexrec_bench.foundation.errors import FlexRecError

        raise FlexRecError(f"unknown retrieval backend {backend!r}: {', '.join(BACKENDS)}")
    if backend == "numpy" or (backend == "auto" and len(vectors) < FAISS_MIN_ITEMS):
        return _NumpyIndex(vectors), "numpy"
    import faiss

    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if backend == "faiss-gpu" or (backend == "auto" and gpus > 0):
        if gpus == 0:
            from flexrec_bench.foundation.errors import MissingCapabilityError

            raise MissingCapabilityError("retrieval backend faiss-gpu: this faiss has no GPU support or sees no GPU "
                                         "(pip install flexrec-bench[faiss-gpu] on a GPU machine)")
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index), "faiss-gpu"
    return index, "faiss"


#: threads that split retrieval's queries (ours: the machine's cores, at most 4; the result does not
#: depend on it)
RETRIEVE_THREADS = min(4, os.cpu_count() or 1)
#: queries re-scored together (memory: chunk x (k + margin) x dim float64; ours: small enough to stay
#: in cache, benchmarks/bench_speed.py measured 32 2.6x faster than 256 with the same bits)
RESCORE_CHUNK = 32
#: float64 products held at once by the re-scoring (ours: 4 MB, 32 rows of windows up to 42 items at dim
#: 384; a wider window, as when many items tie, re-scores fewer rows at a time)
RESCORE_CELLS = 1 << 19


def retrieve(queries: np.ndarray, emb: np.ndarray, k: int, exclude: Sequence[np.ndarray],
             allowed: np.ndarray | None = None, batch_size: int = 2048,
             backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by inner product for each query, never returning an item in ``exclude[i]``.

    An exact inner-product shortlist (numpy for small catalogues, FAISS above ``FAISS_MIN_ITEMS``,
    on a GPU where faiss has one) of ``k`` + ``RESCORE_MARGIN`` items beyond each query's own
    exclusions is re-scored with :func:`exact_scores`'s arithmetic (only the items whose float32
    score could still reach the top ``k``, by a proven float32 error bound; where ties or near-ties
    fill the shortlist, every item within that bound of the k-th) and the top ``k`` kept, ties
    broken by item index (ascending): the exact top ``k``, the same with one thread or many, either
    backend and any float32 kernels. Queries are searched in batches of similar exclusion counts, so each fetches
    about what it needs; filtering and re-scoring are vectorised. ``allowed`` (item indices)
    restricts the catalogue. Returns (indices (n, k) int64, scores (n, k) float64); rows with fewer
    eligible items are padded with -1 / -inf.
    """
    cat = np.arange(len(emb)) if allowed is None else np.asarray(allowed, np.int64)
    cat_emb = emb[cat]  # the catalogue's vectors, gathered once for the index, the bound and the dense path
    index, _ = _index(cat_emb, backend)
    n = len(queries)
    idx_out = np.full((n, k), -1, np.int64)
    sc_out = np.full((n, k), -np.inf, np.float64)
    n_excl = np.array([len(e) for e in exclude], np.int64)
    by_need = np.argsort(n_excl, kind="stable")  # similar exclusion counts search together
    keep = k + RESCORE_MARGIN
    # re-scoring widens the vectors to float64 as it gathers them (float32 ones stay float32 until then)
    exact_src = emb if emb.dtype == np.float32 else np.asarray(emb, np.float64)
    dense = _DenseScorer(cat_emb, cat, len(emb), exclude)
    # how far a float32 shortlist score may lie from the exact one (None: unknown, rescore it all)
    tol = None if backend == "faiss-gpu" else float32_tolerance(queries, cat_emb)

    def run(part: np.ndarray) -> None:  # one thread's queries, sorted by exclusion count
        scratch: dict = {}  # this thread's reusable buffers
        for start in range(0, len(part), batch_size):
            rows = part[start:start + batch_size]
            kk = min(len(cat), keep + int(n_excl[rows].max(initial=0)) + 1)
            if kk * DENSE_SHARE >= len(cat):  # fetching most of the catalogue: score it whole, excluded masked
                short, approx = dense.shortlist(queries, rows, keep, scratch)
            else:
                short, approx = _fetched_shortlist(index, queries, rows, kk, keep, cat, exclude, n_excl, len(emb))
            unsure = _rescore(short, approx, None if tol is None else tol[rows], rows, queries, exact_src, k,
                              idx_out, sc_out, scratch)
            # the window filled the shortlist: those rows shortlist the whole catalogue, and the same
            # window then picks every item within the bound of the k-th
            for c0 in range(0, len(unsure), WIDEN_CHUNK):
                wide = rows[unsure[c0:c0 + WIDEN_CHUNK]]
                short, approx = dense.shortlist(queries, wide, len(cat), scratch)
                _rescore(short, approx, tol[wide], wide, queries, exact_src, k, idx_out, sc_out, scratch)

    # numpy's partition and elementwise loops run on one core and release the GIL: threads split the
    # queries (interleaved, so each gets light and heavy ones); rows are independent, so the result
    # is the same for any thread count. Each thread's matrix products then run on one BLAS thread:
    # BLAS's own threads would compete with the other worker (and spin after each call), which cost
    # 10-20% of the whole (benchmarks/bench_speed.py); the limit is process-wide while retrieval runs.
    workers = max(1, min(RETRIEVE_THREADS, n // RESCORE_CHUNK))
    if workers == 1:
        run(by_need)
    else:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [by_need[j::workers] for j in range(workers)]))
    return idx_out, sc_out


#: rows whose shortlist is widened to the whole catalogue together (memory: chunk x items x 16 bytes)
WIDEN_CHUNK = 256
#: safety factor on the float32 error bound that decides which shortlisted items are re-scored (ours)
TOLERANCE_FACTOR = 2.0


def float32_tolerance(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per query, a bound on |float32 shortlist score - exact score| for every item: rounding the
    query and the item to float32 and a float32 dot product of ``dim`` terms in any order err by at
    most (dim + 2) u |q| |e| (u = 2^-24, Cauchy-Schwarz on the sum of |q_i e_i|); times
    ``TOLERANCE_FACTOR``."""
    dim = items.shape[1]
    e_max = float(np.sqrt((np.asarray(items, np.float64) ** 2).sum(1).max(initial=0.0)))
    q_norm = np.sqrt((np.asarray(queries, np.float64) ** 2).sum(1))
    tol = TOLERANCE_FACTOR * (dim + 2) * 2.0 ** -24 * q_norm * e_max
    return np.where(np.isnan(tol), np.inf, tol)


def _buffer(store: dict, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A view of shape ``shape`` on one thread's reusable scratch array ``name`` (grown on demand):
    writing a matrix product or a gather into memory already touched skips the page faults of a
    fresh allocation, which cost as much as the selection itself (benchmarks/bench_speed.py)."""
    size = int(np.prod(shape))
    arr = store.get(name)
    if arr is None or arr.size < size or arr.dtype != dtype:
        arr = store[name] = np.empty(max(size, 1), dtype)
    return arr[:size].reshape(shape)


def _rescore(short: np.ndarray, approx: np.ndarray, tol: np.ndarray | None, rows: np.ndarray, queries: np.ndarray,
             exact_src: np.ndarray, k: int, idx_out: np.ndarray, sc_out: np.ndarray, scratch: dict) -> np.ndarray:
    """Exact float64 scores of each row's shortlist (exact_scores' arithmetic: the float64 products,
    then numpy's sum, row by row); the top ``k``, ties by item index, written into the outputs.

    Only the shortlisted items whose float32 score ``approx`` is within 2 ``tol`` of the row's k-th
    float32 score are re-scored: the exact top k of the shortlist always lie among them (each exact
    score is within ``tol`` of its float32 one, so the k-th order statistics differ by at most
    ``tol``), so the answer is the one re-scoring the whole shortlist gives. That is the exact top k
    of the catalogue unless the window fills the shortlist (``keep`` or more items within the float32
    error of the k-th, as with exact ties): those rows' positions are returned, for the caller to
    re-score over the whole window. So the answer does not depend on the float32 arithmetic
    (kernels, BLAS threads, the partition's tie order). ``exact_src`` holds the item vectors in their
    own precision (float32 or float64); each is widened to float64 exactly."""
    n, width_all = short.shape
    valid = short >= 0
    if tol is not None and width_all > k:
        f = np.where(valid, approx, -np.inf)
        kth = np.partition(f, width_all - k, axis=1)[:, width_all - k]
        need = valid & (f >= (kth - 2 * tol)[:, None])
        # the items to re-score first in each row (in shortlist order), then -1
        pick = np.argsort(~need, axis=1, kind="stable")
        items = np.where(np.take_along_axis(need, pick, 1), np.take_along_axis(short, pick, 1), -1)
        counts = need.sum(1)
        # a full shortlist wholly inside the window may have left out items as good as its members
        unsure = np.flatnonzero(counts == width_all)
    else:
        items, counts = np.where(valid, short, -1), valid.sum(1)
        unsure = np.zeros(0, np.int64)
    width = max(1, int(counts.max(initial=1)))
    items = items[:, :width]
    q64 = np.asarray(queries[rows], np.float64)
    sc = np.full((n, width), -np.inf, np.float64)
    dim = exact_src.shape[1]
    c0 = 0
    while c0 < n:  # RESCORE_CHUNK rows at a time, fewer where a wide window would pass RESCORE_CELLS
        w = max(1, int(counts[c0:c0 + RESCORE_CHUNK].max(initial=1)))
        step = max(1, min(RESCORE_CHUNK, RESCORE_CELLS // (w * dim)))
        w = max(1, int(counts[c0:c0 + step].max(initial=1)))
        part = items[c0:c0 + step, :w]
        prod = _buffer(scratch, "rescore", (len(part), w, dim), np.float64)
        np.multiply(exact_src[np.maximum(part, 0)], q64[c0:c0 + step, None, :], out=prod)
        sc[c0:c0 + step, :w] = prod.sum(-1)
        c0 += step
    sc = np.where(items >= 0, sc, -np.inf)
    order = np.lexsort((np.where(items >= 0, items, np.iinfo(np.int64).max), -sc), axis=-1)[:, :k]
    chosen = np.take_along_axis(items, order, 1)
    chosen_sc = np.take_along_axis(sc, order, 1)
    width = min(k, chosen.shape[1])
    idx_out[rows, :width] = np.where(chosen[:, :width] >= 0, chosen[:, :width], -1)
    sc_out[rows, :width] = np.where(chosen[:, :width] >= 0, chosen_sc[:, :width], -np.inf)
    return unsure


def _fetched_shortlist(index, queries: np.ndarray, rows: np.ndarray, kk: int, keep: int, cat: np.ndarray,
                       exclude: Sequence[np.ndarray], n_excl: np.ndarray, n_all: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``keep`` eligible items of each row among the index's top ``kk``, in its order, and
    their float32 scores."""
    dist, local = index.search(np.ascontiguousarray(queries[rows], dtype=np.float32), kk)
    items = np.where(local >= 0, cat[np.clip(local, 0, None)], -1)
    # excluded items, found by one sorted-key lookup for the whole batch: key = row * N + item
    n_items = n_all + 1
    ex_rows = np.repeat(np.arange(len(rows)), n_excl[rows])
    ex_keys = np.sort(ex_rows * n_items + (np.concatenate([exclude[i] for i in rows]) if len(ex_rows) else
                                            np.zeros(0, np.int64)))
    keys = np.arange(len(rows))[:, None] * n_items + items
    pos = np.searchsorted(ex_keys, keys)
    hit = (pos < len(ex_keys)) & (ex_keys[np.minimum(pos, len(ex_keys) - 1)] == keys) if len(ex_keys) else \
        np.zeros(items.shape, bool)
    ok = (items >= 0) & ~hit
    rank = np.cumsum(ok, axis=1)
    take = ok & (rank <= keep)
    short = np.full((len(rows), keep), -1, np.int64)
    approx = np.full((len(rows), keep), -np.inf, np.float64)
    r_idx, c_idx = np.nonzero(take)
    short[r_idx, rank[r_idx, c_idx] - 1] = items[r_idx, c_idx]
    approx[r_idx, rank[r_idx, c_idx] - 1] = dist[r_idx, c_idx]
    return short, approx


#: a batch whose fetch would exceed 1 / DENSE_SHARE of the catalogue scores every item instead (ours:
#: a long FAISS heap costs more than a masked matrix product and a partition; on ML-1M's 3,883
#: items a FAISS fetch of 100 already cost more than the masked product, benchmarks/bench_speed.py)
DENSE_SHARE = 32
#: scores held at once by the dense path (float32): rows per chunk = DENSE_CELLS // catalogue size
DENSE_CELLS = 1 << 24


#: columns per group in the dense path's two-step selection (ours): the ``keep`` groups with the
#: smallest minima hold a ``keep``-smallest set, so the partition runs over ``keep`` x 8 columns
#: instead of the whole catalogue (on ML-1M's shape, 6,040 x 3,883: 0.76 s -> 0.085 s, one core)
DENSE_GROUP = 8


def smallest_columns(values: np.ndarray, width: int, group_size: int) -> np.ndarray:
    """Column indices of each row's ``width`` smallest values (in no order; ties at the boundary
    broken arbitrarily, as argpartition does). The n columns form n / ``group_size`` groups, group b
    being columns b, b + n/g, b + 2n/g, ... (n must be a multiple of ``group_size``): the ``width``
    groups with the smallest minima contain a ``width``-smallest set (a value outside them that was
    smaller would sit below ``width`` group minima), so only their members are partitioned."""
    m, n = values.shape
    groups = n // group_size
    if width >= groups or group_size <= 1:
        if width >= n:
            return np.broadcast_to(np.arange(n), (m, n))
        return np.argpartition(values, width - 1, axis=1)[:, :width]
    mins = values.reshape(m, group_size, groups).min(axis=1)
    best = np.argpartition(mins, width - 1, axis=1)[:, :width]
    cols = (best[:, :, None] + groups * np.arange(group_size)[None, None, :]).reshape(m, -1)
    pick = np.argpartition(np.take_along_axis(values, cols, 1), width - 1, axis=1)[:, :width]
    return np.take_along_axis(cols, pick, 1)


class _DenseScorer:
    """Shortlists by a float32 matrix product over the whole catalogue with each query's excluded
    items masked out, for queries that exclude a large share of it."""

    def __init__(self, cat_emb: np.ndarray, cat: np.ndarray, n_all: int, exclude: Sequence[np.ndarray]):
        import threading

        self.cat_emb, self.cat, self.n_all, self.exclude = cat_emb, cat, n_all, exclude
        self._vec: np.ndarray | None = None
        self._pos: np.ndarray | None = None
        self._lock = threading.Lock()  # retrieve's threads share one scorer

    def shortlist(self, queries: np.ndarray, rows: np.ndarray, keep: int,
                  scratch: dict) -> tuple[np.ndarray, np.ndarray]:
        """Each row's ``keep`` best eligible items (in no order) and their float32 scores; the
        products are written into the calling thread's ``scratch``."""
        n_cat = len(self.cat)
        padded = -(-n_cat // DENSE_GROUP) * DENSE_GROUP  # whole groups: padding columns score +inf
        with self._lock:
            if self._vec is None:
                pos = np.full(self.n_all, -1, np.int64)
                pos[self.cat] = np.arange(n_cat)
                self._pos = pos
                vec = np.zeros((padded, self.cat_emb.shape[1]), np.float32)
                vec[:n_cat] = self.cat_emb
                self._vec = vec
        width = min(keep, n_cat)
        out = np.full((len(rows), width), -1, np.int64)
        approx = np.full((len(rows), width), -np.inf, np.float64)
        step = max(1, DENSE_CELLS // max(1, padded))
        for c0 in range(0, len(rows), step):
            part = rows[c0:c0 + step]
            # negated scores straight from the product (the partition wants the smallest first)
            sc = _buffer(scratch, "dense", (len(part), padded), np.float32)
            np.matmul(np.negative(np.asarray(queries[part], dtype=np.float32)), self._vec.T, out=sc)
            sc[:, n_cat:] = np.inf
            counts = np.array([len(self.exclude[i]) for i in part], np.int64)
            if counts.sum():
                ex = self._pos[np.concatenate([np.asarray(self.exclude[i], np.int64) for i in part])]
                ex_rows = np.repeat(np.arange(len(part)), counts)
                sc[ex_rows[ex >= 0], ex[ex >= 0]] = np.inf
            top = smallest_columns(sc, width, DENSE_GROUP)
            val = np.take_along_axis(sc, top, 1)
            ok = np.isfinite(val)
            out[c0:c0 + len(part)] = np.where(ok, self.cat[np.minimum(top, n_cat - 1)], -1)
            approx[c0:c0 + len(part)] = np.where(ok, -val.astype(np.float64), -np.inf)
        return out, approx
