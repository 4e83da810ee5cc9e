from __future__ import annotations

import numpy as np
import pytest

from flexrec_bench.building.labeling import LabelContext, get_need, minmax
from flexrec_bench.building.retrieval import history_weights, profile_vectors, retrieve


def _ctx(**kw):
    n, k = kw.get("known_signal", np.zeros((1, 3))).shape
    base = dict(signal_kind="rating", candidates=np.arange(n * k).reshape(n, k), mask=np.ones((n, k), bool),
                known_signal=np.full((n, k), np.nan), similarity=np.zeros((n, k), np.float32),
                candidate_topics=[[frozenset()] * k] * n, history_topics=[frozenset()] * n,
                query_time=np.zeros(n, np.int64), window_counts=lambda w: np.zeros((n, k)))
    base.update(kw)
    return LabelContext(**base)


def test_interest_rating_exponential_mapping():
    lab = get_need("interest").label(_ctx(known_signal=np.array([[5.0, 4.0, np.nan]])))
    np.testing.assert_allclose(lab.relevance[0], [1.0, 15 / 31, 0.0], rtol=1e-6)
    assert lab.relevant[0].tolist() == [True, True, False]
    assert lab.observed[0].tolist() == [True, True, False]


def test_interest_watch_ratio_is_the_gain():
    lab = get_need("interest").label(_ctx(signal_kind="watch_ratio", known_signal=np.array([[4.5, 2.0, 0.6]])))
    np.testing.assert_allclose(lab.relevance[0], [4.5, 2.0, 0.6], rtol=1e-6)  # the paper: the watch ratio itself
    assert lab.relevant[0].tolist() == [True, True, False]
    capped = get_need("interest", watch_ratio_cap=3.0).label(_ctx(signal_kind="watch_ratio",
                                                                   known_signal=np.array([[4.5, 2.0, 0.6]])))
    np.testing.assert_allclose(capped.relevance[0], [3.0, 2.0, 0.6], rtol=1e-6)


def test_niche_bonus_for_unseen_topics():
    ctx = _ctx(similarity=np.array([[0.9, 0.9, 0.8, 0.1]], np.float32),
               candidates=np.arange(4)[None], mask=np.ones((1, 4), bool), known_signal=np.full((1, 4), np.nan),
               candidate_topics=[[frozenset({"Drama"}), frozenset({"Horror", "Drama"}), frozenset({"Western"}),
                                  frozenset()]],
               history_topics=[frozenset({"Drama"})])
    # the default reading: raw cosine base, niche when some topic is unseen, relevant = the niche candidates
    lab = get_need("niche").label(ctx)
    # base = [0.9, 0.9, 0.8, 0.1]; niche = [0, 1 (Horror unseen), 1, 0 (untagged)]; rel = base * (1 + niche) / 2
    np.testing.assert_allclose(lab.relevance[0], [0.45, 0.9, 0.8, 0.05], rtol=1e-6)
    assert lab.relevant[0].tolist() == [False, True, True, False]
    # the earlier reading: min-max base, niche when none of its topics is seen, relevant above the bound
    old = get_need("niche", bonus=1.0, rule="none_seen", base="minmax", relevant="above_bound").label(ctx)
    # base = [1, 1, 0.875, 0]; niche = [0, 0 (one topic seen), 1, 0 (untagged)]
    np.testing.assert_allclose(old.relevance[0], [0.5, 0.5, 0.875, 0.0], rtol=1e-6)
    assert old.relevant[0].tolist() == [False, False, True, False]  # rel > 0.5: only the niche item
    share = get_need("niche", rule="share_unseen").niche_degree(ctx)
    np.testing.assert_allclose(share[0], [0.0, 0.5, 1.0, 0.0])


def test_niche_options_are_checked():
    from flexrec_bench.foundation.errors import ConfigError
    from flexrec_bench.building.labeling import make_need

    for opt, bad in (("rule", "most_unseen"), ("base", "rank"), ("relevant", "all"), ("bonus", "nan"), ("bonus", "-1")):
        with pytest.raises(ConfigError, match=f"niche.*{opt}"):
            make_need("niche", {opt: bad})


def test_trend_mixes_similarity_and_recent_counts():
    ctx = _ctx(similarity=np.array([[0.2, 0.4, 0.6]], np.float32), window_counts=lambda w: np.array([[10, 0, 5]]))
    lab = get_need("trend", alpha=0.5).label(ctx)
    np.testing.assert_allclose(lab.relevance[0], [0.5 * 0 + 0.5 * 1, 0.5 * 0.5, 0.5 * 1 + 0.5 * 0.5])
    assert lab.relevant[0].tolist() == [False, False, True]
    assert lab.shown["recent_count"][0].tolist() == [10, 0, 5]  # what the prompt shows beside each candidate
    assert "1 day" in get_need("trend").prompt_spec("Genres")["candidate_columns"]["recent_count"]
    assert "7 days" in get_need("trend", window_seconds=7 * 86_400).prompt_spec("Genres")["candidate_columns"][
        "recent_count"]


def test_trend_options_are_checked_before_any_build():
    from flexrec_bench.foundation.errors import ConfigError
    from flexrec_bench.building.labeling import make_need

    for opt, bad in (("alpha", "nan"), ("alpha", "5"), ("relevant_threshold", "-0.1"), ("window_seconds", "0")):
        with pytest.raises(ConfigError, match=f"trend {opt}"):
            make_need("trend", {opt: bad})


def test_search_esci_gains():
    lab = get_need("search").label(_ctx(signal_kind="esci", known_signal=np.array([[3.0, 2.0, 1.0, 0.0]]),
                                        candidates=np.arange(4)[None], mask=np.ones((1, 4), bool)))
    np.testing.assert_allclose(lab.relevance[0], [1.0, 0.1, 0.01, 0.0], rtol=1e-6)
    assert lab.relevant[0].tolist() == [True, False, False, False]


def test_minmax_constant_rows_and_padding():
    x = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 9.0]])
    m = np.array([[True, True, True], [True, True, False]])
    np.testing.assert_allclose(minmax(x, m), [[0, 0, 0], [0, 1, 0]])


def test_history_weights_discount_most_recent_highest():
    w = history_weights(np.array([5.0, 5.0, 5.0]), 0.7, 5.0)
    np.testing.assert_allclose(w, [0.49, 0.7, 1.0])


def test_retrieve_excludes_history_and_breaks_ties_by_index():
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 2, 3]]  # items 0 and 1 identical
    q = profile_vectors([np.array([0])], [np.array([5.0])], emb)
    idx, sc = retrieve(q, emb, k=3, exclude=[np.array([0])])
    assert idx[0].tolist()[0] == 1 and 0 not in idx[0]
    idx, _ = retrieve(q, emb, k=2, exclude=[np.array([], np.int64)])
    assert idx[0].tolist() == [0, 1]
    idx, sc = retrieve(q, emb, k=9, exclude=[np.array([0])])
    assert (idx[0] >= 0).sum() == 4 and np.isinf(sc[0, -1])


def test_unknown_need_did_you_mean():
    with pytest.raises(KeyError, match="did you mean 'trend'"):
        get_need("trnd")


def test_ngram_embedder_reads_chinese_and_word_hashing_does_not():
    from flexrec_bench.building.embed import hashing_embed, ngram_embed

    a, b, c = "Video caption: 今天去五爱市场吃美食", "Video caption: 五爱市场的美食真好吃", "Video caption: 篮球比赛精彩瞬间"
    w = hashing_embed([a, b, c], 512)
    g = ngram_embed([a, b, c], 512)
    assert abs(float(w[0] @ w[1]) - float(w[0] @ w[2])) < 0.3  # each caption is one 'word' plus the field name
    assert float(g[0] @ g[1]) > 0.3 > abs(float(g[0] @ g[2]))  # shared characters and bigrams count
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, rtol=1e-6)
    assert (ngram_embed([a], 512) == g[:1]).all()  # exact arithmetic: the same bits every time
