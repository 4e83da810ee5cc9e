"""Retrieval gives the same candidates whichever shortlist backend selects them."""

from __future__ import annotations

import numpy as np
import pytest

from flexrec_bench.retrieval import retrieve


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
    from flexrec_bench.errors import FlexRecError

    emb = np.eye(4, dtype=np.float32)
    with pytest.raises(FlexRecError, match="unknown retrieval backend 'annoy'"):
        retrieve(emb, emb, 2, [np.zeros(0, np.int64)] * 4, backend="annoy")
    import faiss

    if faiss.get_num_gpus() == 0:
        with pytest.raises(FlexRecError, match="faiss-gpu"):
            retrieve(emb, emb, 2, [np.zeros(0, np.int64)] * 4, backend="faiss-gpu")
