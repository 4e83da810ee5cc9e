from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.advantages import (item_advantages, per_token_advantages, rank_advantages, sequence_advantages,
                                 token_spans, uncertainty_weights)
from training.rewards import (brute_force_swap_rewards, causal_swap_rewards, ideal_dcg, independent_rewards,
                              noncausal_swap_rewards, sequence_ndcg, sequence_variance, suffix_dcg_rewards)

gains_st = st.integers(1, 12).flatmap(lambda k: arrays(np.float64, (3, k), elements=st.sampled_from(
    [0.0, 0.0, 0.01, 0.1, 0.5, 1.0, 1.0])))


@settings(max_examples=200, deadline=None)
@given(gains_st)
def test_causal_swap_equals_brute_force(g):
    np.testing.assert_allclose(causal_swap_rewards(g), brute_force_swap_rewards(g, causal=True), atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(gains_st)
def test_noncausal_swap_equals_brute_force(g):
    np.testing.assert_allclose(noncausal_swap_rewards(g), brute_force_swap_rewards(g, causal=False), atol=1e-12)


def test_noncausal_swap_is_an_own_term_with_a_sign_changing_weight_plus_a_shared_sequence_term():
    """docs/training.md, the ladder's rung c: the non-causal credit of rank k is
    [g_k (K d_k - sum d) - d_k sum g + DCG(list)] / ((K - 1) IDCG). The own gain's weight is negative
    wherever d_k is below the list's mean discount (from rank 3 on at K = 6; about 0 at rank 3 at
    K = 8): a good item placed low is pushed further down, not up."""
    from flexrec_bench.foundation.metrics import discounts

    rng = np.random.default_rng(0)
    for k in (6, 8, 16):
        g = rng.choice([0.0, 0.25, 0.5, 1.0], size=(5, k))
        d = discounts(k)
        own = g * (k * d - d.sum())
        shared = -d * g.sum(1, keepdims=True) + (g @ d)[:, None]
        np.testing.assert_allclose(noncausal_swap_rewards(g), (own + shared) / (k - 1) / ideal_dcg(g)[:, None], atol=1e-12)
    weight = 8 * discounts(8) - discounts(8).sum()
    assert weight[1] > 1 and abs(weight[2]) < 0.05 and (weight[3:] < 0).all()
    # the toy's fixed point (one type, K = 8): the 0.25 item last instead of third costs only 0.012 of its own
    # credit at rank 3, but 0.25 * 0.51 at rank 4; causal swap credits it at rank 3 over every item below
    g_last = np.array([[1.0, 0.5, 0, 0, 0, 0, 0, 0.25]])
    g_third = np.array([[1.0, 0.5, 0.25, 0, 0, 0, 0, 0]])
    assert causal_swap_rewards(g_third)[0, 2] > 0 > causal_swap_rewards(g_last)[0, 2]


def test_hand_worked_example():
    # ranking puts gains [0, 1, 0.5]; d = [1, 1/log2 3, 1/2]; IDCG = 1 + 0.5/log2 3
    g = np.array([[0.0, 1.0, 0.5]])
    d1 = 1 / math.log2(3)
    z = 1 + 0.5 * d1
    r = causal_swap_rewards(g)[0]
    # rank 0 vs 1: (0-1)(1-d1); vs 2: (0-0.5)(1-0.5)
    assert r[0] == pytest.approx(((0 - 1) * (1 - d1) + (0 - 0.5) * (1 - 0.5)) / 2 / z)
    assert r[1] == pytest.approx((1 - 0.5) * (d1 - 0.5) / z)
    assert r[2] == 0.0  # last rank: nothing left to swap with
    assert sequence_ndcg(g)[0] == pytest.approx((d1 + 0.25) / z)
    np.testing.assert_allclose(independent_rewards(g)[0], [0, d1 / z, 0.25 / z])
    np.testing.assert_allclose(suffix_dcg_rewards(g)[0], [(d1 + 0.25) / z, (d1 + 0.25) / z, 0.25 / z])


def test_ideal_ranking_has_nonnegative_causal_rewards_and_zero_labels_give_zero():
    g = np.array([[1.0, 0.5, 0.5, 0.1, 0.0]])
    assert (causal_swap_rewards(g) >= 0).all()
    assert not causal_swap_rewards(np.zeros((2, 6))).any()
    assert sequence_ndcg(g)[0] == pytest.approx(1.0)
    assert ideal_dcg(np.array([[0.0, 1.0]]))[0] == pytest.approx(1.0)


def test_sequence_variance_scales_by_squared_discount():
    v = np.array([[0.0, 0.2, 0.0]])
    assert sequence_variance(v, idcg=np.array([2.0]))[0] == pytest.approx(0.2 * (1 / math.log2(3)) ** 2 / 4)


def test_group_normalisations():
    a = sequence_advantages(np.array([1.0, 0.0, 0.5, 0.5]))
    assert a.mean() == pytest.approx(0) and a[0] > a[2] > a[1]
    items = np.array([[1.0, 0.0], [0.5, 0.5]])
    ia = item_advantages(items)
    assert ia.mean() == pytest.approx(0) and ia.std() == pytest.approx(1, rel=1e-3)
    ra = rank_advantages(np.array([[1.0, 0.2], [0.0, 0.2]]))
    np.testing.assert_allclose(ra[:, 1], 0.0)
    assert ra[0, 0] > 0 > ra[1, 0]
    # per rank (ours): a tail rank is compared with the same rank of the other rollouts only, and
    # padded entries stay out of the statistics
    tail = np.array([[1.0, 0.0, 0.0], [0.6, 0.1, 0.0], [0.2, 0.3, 9.0]])
    named = np.array([[True, True, True], [True, True, True], [True, True, False]])
    pooled, ranked = item_advantages(tail, named), item_advantages(tail, named, per_rank=True)
    assert pooled[0, 2] < 0 and pooled[2, 2] == ranked[2, 2] == 0.0
    np.testing.assert_allclose(ranked[:2, 2], 0.0, atol=1e-6)            # equal last-rank rewards: no push
    np.testing.assert_allclose(ranked[:, :2].mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(ranked[:, 0], (tail[:, 0] - tail[:, 0].mean()) / (tail[:, 0].std() + 1e-4))


def test_uncertainty_weights_downweight_uncertain_rollouts():
    w = uncertainty_weights(np.array([0.0, 0.0, 0.02, 0.1]))
    assert w[0] == w[1] > w[2] > w[3] >= 0.1
    clipped = uncertainty_weights(np.array([0.0, 5.0]))
    assert clipped[1] == 0.1 and clipped[0] == pytest.approx(2 * 100 / (100 + 1 / 5.01), rel=1e-6)


def test_token_spans_and_per_token_advantages():
    # tokens: "<answer>" "C" "2" "," " C" "1" "</answer>"
    offsets = [(0, 8), (8, 9), (9, 10), (10, 11), (11, 13), (13, 14), (14, 23)]
    spans = token_spans(offsets, [(8, 10), (12, 14)])
    assert spans == [[1, 2], [4, 5]]
    adv = per_token_advantages(7, 0.3, spans, [1.0, -1.0])
    assert adv.tolist() == [0.3, 1.0, 1.0, 0.3, -1.0, -1.0, 0.3]


def test_padding_is_seeded_by_instance_and_text_and_stays_out_of_group_statistics():
    from training.env import RankingEnv, _Instance

    env = RankingEnv("flexrec", "causal_swap", uncertainty=False)
    for key in ("a", "b"):
        env.instances[key] = _Instance(key, 4, np.array([1.0, 0.0, 0.5, 0.2]), np.zeros(4), 1.0)
    short = "<answer>C2</answer>"
    # the same unparseable or short output gets the same padding wherever it sits in a batch
    assert env.parse("a", short, None).order == env.parse("a", short, None).order
    orders = {tuple(env.parse(k, short, None).order) for k in ("a", "b")} | \
             {tuple(env.parse("a", t, None).order) for t in (short, short + " ", "<answer>C2, </answer>")}
    assert len(orders) > 1 and all(o[0] == 1 for o in orders)  # the named item leads, the padding varies
    r = env.parse("a", short, None)
    assert r.named == 1 and not r.format_ok
    # padded ranks are left out of the group's mean and deviation
    full = env.parse("a", "<answer>C1, C3, C4, C2</answer>", None)
    item_adv, _ = env.group_advantages([full, r])
    from training.rewards import causal_swap_rewards

    g = np.stack([env.ranked_gains(x)[0] for x in (full, r)])
    rew = causal_swap_rewards(g, np.array([1.0, 1.0]))
    pool = np.concatenate([rew[0], rew[1, :1]])
    np.testing.assert_allclose(item_adv[0], (rew[0] - pool.mean()) / (pool.std() + 1e-4))
    np.testing.assert_allclose(item_adv[1][1:], 0.0)


def test_uncertainty_weight_constants_are_fields():
    from training.advantages import uncertainty_weights
    from training.env import RankingEnv, _Instance

    var = np.array([0.0, 0.5])
    np.testing.assert_allclose(uncertainty_weights(var, eps=0.5, clip=(0.1, 10.0)), [2.0 / 1.5, 1.0 / 1.5])
    for items in (True, False):
        env = RankingEnv("flexrec", "causal_swap", uncertainty=True, uncertainty_eps=0.5, uncertainty_clip=(0.1, 10.0),
                         uncertainty_items=items)
        env.instances["a"] = _Instance("a", 2, np.array([1.0, 0.0]), np.array([0.0, 0.5]), 1.0)
        rs = [env.parse("a", t, None) for t in ("<answer>C1, C2</answer>", "<answer>C2, C1</answer>")]
        plain = RankingEnv("flexrec", "causal_swap", uncertainty=False)
        plain.instances = env.instances
        w_item, w_seq = env.group_advantages(rs)
        p_item, p_seq = plain.group_advantages(rs)
        assert not np.allclose(w_seq, p_seq)  # the sequence advantages are weighted either way
        assert np.allclose(np.stack(w_item), np.stack(p_item)) != items


def test_token_offsets_are_linear_and_match_the_prefix_decodes(tmp_path):
    from flexrec_bench.ranking.tiny import build_tokenizer
    from training.advantages import _quadratic_offsets, token_offsets

    import re

    from training.advantages import token_spans

    tok = build_tokenizer(tmp_path, extra_texts=["视频 美食 caption"])
    for text in ("<answer>C3, C1, C12, C2</answer>", "<think>先看历史: 美食, 搞笑 ✓</think><answer>C2 > C1</answer>",
                 "plain ids C1 C2 and ünïcödé"):
        ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        got, ref = token_offsets(tok, ids), _quadratic_offsets(tok, ids)
        assert got[0] == ref[0]  # the same text
        offs = got[1]
        assert offs[0][0] == 0 and offs[-1][1] == len(got[0])
        assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(offs, offs[1:]))  # contiguous, in order
        ids_at = [(m.start(), m.end()) for m in re.finditer(r"C\d+", got[0])]
        assert token_spans(offs, ids_at) == token_spans(ref[1], ids_at)  # every id's tokens, as before
    # linear: a 600-token completion decodes a window per token, not every prefix
    calls = {"n": 0, "chars": 0}
    real = tok.decode

    def counting(ids, **kw):
        calls["n"] += 1
        calls["chars"] += len(ids)
        return real(ids, **kw)

    ids = tok(", ".join(f"C{i}" for i in range(1, 200)), add_special_tokens=False)["input_ids"]
    tok.decode = counting
    try:
        token_offsets(tok, ids)
    finally:
        tok.decode = real
    assert calls["chars"] < 25 * len(ids)  # the prefix decodes would read about len(ids)**2 / 2 tokens
