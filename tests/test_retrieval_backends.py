"""Retrieval gives the same candidates whichever shortlist backend selects them."""

from __future__ import annotations

import numpy as np
import pytest

from flexrec_bench.building.retrieval import retrieve


def test_faiss_and_numpy_retrieval_are_equal():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6000, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[100] = emb[200]  # an exact tie, broken by item index either way
    queries = rng.standard_normal((300, 32)).astype(np.float32)
    exclude = [rng.choice(6000, size=int(rng.integers(0, 40)), replace=False) for _ in range(300)]
    a_idx, a_sc = retrieve(queries, emb, 30, exclude, backend="numpy")
    b_idx, b_sc = retrieve(queries, emb, 30, exclude, backend="faiss")
    np.testing.assert_array_equal(a_idx, b_idx)
    np.testing.assert_array_equal(a_sc, b_sc)
    assert not any(np.isin(a_idx[i], exclude[i]).any() for i in range(300))
    allowed = np.arange(0, 6000, 3)
    np.testing.assert_array_equal(retrieve(queries, emb, 10, exclude, allowed, backend="numpy")[0],
                                  retrieve(queries, emb, 10, exclude, allowed, backend="faiss")[0])
    # the exact answer, by brute force
    full = queries.astype(np.float64) @ emb.T.astype(np.float64)
    for i in range(0, 300, 37):
        s = full[i].copy()
        s[exclude[i]] = -np.inf
        want = np.lexsort((np.arange(6000), -s))[:30]
        np.testing.assert_array_equal(a_idx[i], want)


def test_unknown_backend_and_missing_gpu_are_clear():
    from flexrec_bench.foundation.errors import FlexRecError

    emb = np.eye(4, dtype=np.float32)
    with pytest.raises(FlexRecError, match="unknown retrieval backend 'annoy'"):
        retrieve(emb, emb, 2, [np.zeros(0, np.int64)] * 4, backend="annoy")
    import faiss

    if faiss.get_num_gpus() == 0:
        with pytest.raises(FlexRecError, match="faiss-gpu"):
            retrieve(emb, emb, 2, [np.zeros(0, np.int64)] * 4, backend="faiss-gpu")


@pytest.mark.parametrize("allowed", [None, np.arange(0, 1500, 2)])
def test_queries_that_exclude_most_of_the_catalogue_get_the_exact_answer(allowed):
    """A batch that would fetch most of the catalogue scores it whole with its exclusions masked
    (the dense path): the same candidates as brute force, and as the fetching path gives."""
    import flexrec_bench.building.retrieval as r

    rng = np.random.default_rng(1)
    emb = rng.standard_normal((1500, 16)).astype(np.float32)
    queries = rng.standard_normal((120, 16)).astype(np.float32)
    # a few light queries and many that exclude up to 90% of the catalogue (or all of it)
    exclude = [rng.choice(1500, size=int(s), replace=False) for s in
               np.r_[rng.integers(0, 20, 40), rng.integers(600, 1350, 78), 1500, 1499]]
    got, got_sc = retrieve(queries, emb, 10, exclude, allowed, batch_size=32, backend="faiss")
    cat = np.arange(1500) if allowed is None else allowed
    full = queries.astype(np.float64) @ emb.T.astype(np.float64)
    for i in range(120):
        s = np.full(1500, -np.inf)
        s[cat] = full[i, cat]
        s[exclude[i]] = -np.inf
        want = np.lexsort((np.arange(1500), -s))[:10]
        want = np.where(np.isfinite(s[want]), want, -1)
        np.testing.assert_array_equal(got[i], want, err_msg=f"query {i}")
    old = r.DENSE_SHARE
    try:
        r.DENSE_SHARE = 0  # every batch through the fetching path
        fetched = retrieve(queries, emb, 10, exclude, allowed, batch_size=32, backend="faiss")
    finally:
        r.DENSE_SHARE = old
    np.testing.assert_array_equal(fetched[0], got)
    np.testing.assert_array_equal(fetched[1], got_sc)


def test_retrieval_gives_the_same_answer_with_any_thread_count(monkeypatch):
    import flexrec_bench.building.retrieval as r

    rng = np.random.default_rng(3)
    emb = rng.standard_normal((1200, 16)).astype(np.float32)
    queries = rng.standard_normal((400, 16))
    exclude = [rng.choice(1200, size=int(s), replace=False) for s in rng.integers(0, 900, 400)]
    out = []
    for threads in (1, 3):
        monkeypatch.setattr(r, "RETRIEVE_THREADS", threads)
        out.append(retrieve(queries, emb, 10, exclude, batch_size=64, backend="faiss"))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("n,width,group", [(64, 5, 8), (4000, 46, 8), (4000, 46, 1), (40, 39, 8), (40, 40, 8)])
def test_grouped_selection_finds_the_smallest_values(n, width, group):
    from flexrec_bench.building.retrieval import smallest_columns

    rng = np.random.default_rng(n + width)
    vals = rng.standard_normal((50, n)).astype(np.float32)
    vals[:, ::7] = np.inf  # masked columns
    vals[0] = 1.0  # all tied
    got = smallest_columns(vals, width, group)
    assert got.shape == (50, min(width, n))
    for i in range(50):
        assert len(set(got[i].tolist())) == got.shape[1]  # distinct columns
        np.testing.assert_array_equal(np.sort(vals[i, got[i]]), np.sort(vals[i])[:got.shape[1]])


def test_rescoring_only_the_float32_window_gives_the_full_rescoring():
    """Near-ties at the k-th place (items a few float32 ulps apart) and exact ties: re-scoring only
    the items within the float32 error bound gives what re-scoring the whole shortlist gives."""
    import flexrec_bench.building.retrieval as r

    rng = np.random.default_rng(7)
    emb = rng.standard_normal((3000, 24)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    base = emb[:40].copy()
    for j in range(1, 6):  # clusters of items a few ulps apart around each of the first 40
        emb[40 * j:40 * (j + 1)] = np.nextafter(base, np.float32(j * 3), dtype=np.float32) if j % 2 else base
    queries = rng.standard_normal((200, 24))
    queries[:100] = emb[:100].astype(np.float64) + 1e-3 * rng.standard_normal((100, 24))
    exclude = [rng.choice(3000, size=int(s), replace=False) for s in rng.integers(0, 300, 200)]
    got = retrieve(queries, emb, 10, exclude, backend="faiss")
    old = r.TOLERANCE_FACTOR
    try:
        r.TOLERANCE_FACTOR = np.inf  # every shortlisted item re-scored
        full = retrieve(queries, emb, 10, exclude, backend="faiss")
    finally:
        r.TOLERANCE_FACTOR = old
    np.testing.assert_array_equal(got[0], full[0])
    np.testing.assert_array_equal(got[1], full[1])


def _assert_exact_top(result, queries, emb, exclude):
    """Each row equals the brute force: exact_scores' float64 arithmetic, exclusions removed, ties
    by item index; its scores to the last bit."""
    got, got_sc = result
    k = got.shape[1]
    for i in range(len(queries)):
        s = (emb.astype(np.float64) * queries[i]).sum(1)
        s[exclude[i]] = -np.inf
        want = np.lexsort((np.arange(len(emb)), -s))[:k]
        np.testing.assert_array_equal(got[i], want, err_msg=f"query {i}")
        np.testing.assert_array_equal(got_sc[i], s[want])


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_more_tied_items_than_the_shortlist_holds_still_give_the_exact_answer(backend):
    """80 identical vectors (more than k + RESCORE_MARGIN) at the top of every list: which of them a
    float32 shortlist keeps is the kernel's accident, so those rows are scored exactly; the answer is
    the brute-force one (ties by item index) on any kernels and thread counts."""
    rng = np.random.default_rng(11)
    emb = rng.standard_normal((2000, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    dup = rng.choice(2000, 80, replace=False)
    emb[dup] = emb[dup[0]]
    queries = emb[dup[0]].astype(np.float64) + 0.05 * rng.standard_normal((64, 16))
    exclude = [rng.choice(2000, size=int(s), replace=False) for s in rng.integers(0, 1500, 64)]
    _assert_exact_top(retrieve(queries, emb, 10, exclude, batch_size=16, backend=backend), queries, emb, exclude)


def test_other_float32_arithmetic_within_the_error_bound_gives_the_same_answer(monkeypatch):
    """Another machine's float32 kernels (or BLAS thread count) change shortlist scores by at most
    the proven bound: perturbing every float32 score by up to that bound, on data full of exact ties
    and near-ties, leaves the candidates and scores equal to the brute-force exact answer."""
    import flexrec_bench.building.retrieval as r

    rng = np.random.default_rng(5)
    emb = rng.standard_normal((1500, 12)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[300:360] = emb[0]  # 61 identical vectors
    emb[400:420] = np.nextafter(emb[1], np.float32(2))  # near-ties, one ulp from item 1
    queries = np.r_[emb[[0, 1]].astype(np.float64).repeat(20, 0) + 0.02 * rng.standard_normal((40, 12)),
                    rng.standard_normal((40, 12))]
    exclude = [rng.choice(1500, size=int(s), replace=False) for s in rng.integers(0, 1000, 80)]
    bound = r.float32_tolerance(queries, emb) / r.TOLERANCE_FACTOR
    noise = np.random.default_rng(6)

    def jitter(rows, values):
        return values + bound[rows][:, None] * noise.uniform(-1, 1, values.shape)

    search, shortlist = r._NumpyIndex.search, r._DenseScorer.shortlist

    def noisy_search(self, q, kk):
        dist, local = search(self, q, kk)
        rows = np.array([np.flatnonzero((queries.astype(np.float32) == row).all(1))[0] for row in q])
        return jitter(rows, dist.astype(np.float64)), local

    def noisy_shortlist(self, q, rows, keep, scratch):
        out, approx = shortlist(self, q, rows, keep, scratch)
        return out, np.where(np.isfinite(approx), jitter(rows, approx), approx)

    monkeypatch.setattr(r._NumpyIndex, "search", noisy_search)
    monkeypatch.setattr(r._DenseScorer, "shortlist", noisy_shortlist)
    _assert_exact_top(retrieve(queries, emb, 10, exclude, batch_size=8, backend="numpy"), queries, emb, exclude)
