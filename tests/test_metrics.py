from __future__ import annotations

import math

import numpy as np
import pytest

from flexrec_bench.foundation.metrics import parse_metric, per_instance_scores
from flexrec_bench.scoring.summary import bootstrap_ci, summarize
from flexrec_bench.ranking.permutations import check_permutations, scores_to_order
from flexrec_bench.foundation.errors import FlexRecError


def test_hand_computed_golden_case():
    rel = np.array([[0.0, 1.0, 0.5, 0.0]])
    relevant = np.array([[False, True, False, False]])
    order = np.array([[0, 2, 1, 3]])  # ranks: pos0 (0), pos2 (0.5), pos1 (1.0), pos3
    s = per_instance_scores(order, rel, relevant, ("ndcg@2", "ndcg@4", "recall@2", "recall@3", "precision@2", "mrr@2", "mrr@3"))
    dcg2 = 0 + 0.5 / math.log2(3)
    idcg2 = 1.0 + 0.5 / math.log2(3)
    assert s["ndcg@2"][0] == pytest.approx(dcg2 / idcg2)
    assert s["ndcg@4"][0] == pytest.approx((dcg2 + 1.0 / math.log2(4)) / idcg2)
    assert s["recall@2"][0] == 0.0 and s["recall@3"][0] == 1.0
    assert s["precision@2"][0] == 0.0
    assert s["mrr@2"][0] == 0.0 and s["mrr@3"][0] == pytest.approx(1 / 3)


def test_instances_without_relevant_items_are_undefined_excluded_and_counted():
    rel = np.zeros((3, 3))
    rel[1, 0] = 1
    rel[2, 1] = 0.2  # graded gain but no relevant item: NDCG defined, Recall/Precision/MRR not
    relevant = rel >= 1
    names = ("ndcg@3", "recall@3", "precision@3", "mrr@3")
    s = per_instance_scores(np.array([[0, 1, 2], [0, 1, 2], [1, 0, 2]]), rel, relevant, names)
    assert np.isnan(s["ndcg@3"][0]) and s["ndcg@3"][1:].tolist() == [1.0, 1.0]
    for name in names[1:]:
        assert np.isnan(s[name][[0, 2]]).all() and s[name][1] in (1.0, 1 / 3)
    rep = summarize(s, relevant, samples=100, seed=0, relevance=rel)
    assert rep.n_no_relevant == 2 and rep.n_no_gain == 1
    assert rep.metrics["ndcg@3"].mean == 1.0 and rep.metrics["ndcg@3"].n == 2
    assert rep.metrics["recall@3"].mean == 1.0 and rep.metrics["recall@3"].n == 1
    assert rep.metrics["ndcg@3"].ci95 == (1.0, 1.0)


def test_metric_defined_nowhere_has_no_mean():
    rel = np.zeros((2, 3))
    s = per_instance_scores(np.array([[0, 1, 2], [2, 1, 0]]), rel, rel > 0, ("ndcg@3", "mrr@3"))
    rep = summarize(s, rel > 0, samples=50, seed=0, relevance=rel)
    assert rep.metrics["ndcg@3"].mean is None and rep.metrics["ndcg@3"].n == 0
    assert "undefined" in rep.table()


def test_mrr_cutoff_beyond_the_list_gives_no_credit_without_a_hit():
    rel = np.array([[0.0, 0.0, 1.0]])
    s = per_instance_scores(np.array([[0, 1, 2]]), rel, rel > 0, ("mrr@2", "mrr@3", "mrr@4", "mrr@50"))
    assert s["mrr@2"][0] == 0.0 and s["mrr@3"][0] == s["mrr@4"][0] == s["mrr@50"][0] == pytest.approx(1 / 3)
    # the reliability probe's case (no hit, k past the list): once 1/(K+1) = 0.25, now undefined, never credit
    none = per_instance_scores(np.array([[0, 1, 2]]), np.zeros((1, 3)), np.zeros((1, 3), bool), ("mrr@3", "mrr@4"))
    assert np.isnan(none["mrr@3"][0]) and np.isnan(none["mrr@4"][0])
    # a relevant item hidden behind padding is never hit: 0, not 1/(K+1)
    padded = per_instance_scores(np.array([[0, 1, -1]]), np.array([[0.0, 0.0, 1.0]]),
                                 np.array([[False, False, True]]), ("mrr@4",))
    assert padded["mrr@4"][0] == 0.0


def test_padding_slots_are_ignored():
    rel = np.array([[1.0, 0.0, 0.0]])
    s = per_instance_scores(np.array([[1, 0, -1]]), rel, rel > 0, ("ndcg@3", "precision@3"))
    assert s["ndcg@3"][0] == pytest.approx(1 / math.log2(3))
    assert s["precision@3"][0] == pytest.approx(1 / 3)


def test_parity_with_pytrec_eval_on_random_graded_data():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    n, k = 300, 30
    grades = rng.integers(0, 4, size=(n, k)) * (rng.random((n, k)) < 0.4)
    grades[:, 0] = np.maximum(grades[:, 0], 1)  # at least one relevant (pytrec drops queries without)
    scores = rng.permutation(n * k).reshape(n, k).astype(float)  # distinct: no tie-rule differences
    qrel = {f"q{i}": {f"d{j}": int(grades[i, j]) for j in range(k)} for i in range(n)}
    run = {f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(k)} for i in range(n)}
    ev = pytrec_eval.RelevanceEvaluator(qrel, {"ndcg_cut.5,10,30", "recall.5,10", "P.5"})
    ref = ev.evaluate(run)
    order = scores_to_order(scores, np.ones((n, k), bool))
    ours = per_instance_scores(order, grades.astype(float), grades > 0,
                               ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "recall@10", "precision@5"))
    for ours_name, ref_name in [("ndcg@5", "ndcg_cut_5"), ("ndcg@10", "ndcg_cut_10"), ("ndcg@30", "ndcg_cut_30"),
                                ("recall@5", "recall_5"), ("recall@10", "recall_10"), ("precision@5", "P_5")]:
        expected = np.array([ref[f"q{i}"][ref_name] for i in range(n)])
        np.testing.assert_allclose(ours[ours_name], expected, atol=1e-9, err_msg=ours_name)


def test_mrr_matches_definition_on_random_data():
    rng = np.random.default_rng(1)
    rel = (rng.random((200, 10)) < 0.2).astype(float)
    order = np.argsort(rng.random((200, 10)), axis=1)
    got = per_instance_scores(order, rel, rel > 0, ("mrr@5",))["mrr@5"]
    for i in range(200):
        hits = [r + 1 for r, p in enumerate(order[i][:5]) if rel[i, p] > 0]
        if rel[i].any():
            assert got[i] == pytest.approx(1 / hits[0] if hits else 0.0)
        else:
            assert np.isnan(got[i])  # undefined: nothing to find


def test_constant_scores_do_not_get_a_perfect_ranking():
    rel = np.zeros((500, 30))
    rel[:, 0] = 1  # the relevant item is always first in candidate order
    order = scores_to_order(np.zeros((500, 30)), np.ones((500, 30), bool), seed=0)
    mrr = per_instance_scores(order, rel, rel > 0, ("mrr@5",))["mrr@5"].mean()
    assert mrr < 0.2  # random ties, not candidate order (which would give 1.0)
    assert not (scores_to_order(np.zeros((5, 30)), np.ones((5, 30), bool), 0) ==
                scores_to_order(np.zeros((5, 30)), np.ones((5, 30), bool), 1)).all()


def test_bootstrap_ci_contains_mean_and_is_seeded():
    x = np.random.default_rng(3).random((2, 400))
    a, b = bootstrap_ci(x, 500, seed=7), bootstrap_ci(x, 500, seed=7)
    np.testing.assert_array_equal(a, b)
    assert (a[:, 0] < x.mean(1)).all() and (x.mean(1) < a[:, 1]).all()
    half = (a[:, 1] - a[:, 0]) / 2
    np.testing.assert_allclose(half, 1.96 * x.std(1) / np.sqrt(400), rtol=0.2)


def test_metric_names_and_permutation_check():
    assert parse_metric("NDCG@7") == ("ndcg", 7)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric("map@5")
    mask = np.array([[True, True, False]])
    check_permutations(np.array([[1, 0, -1]]), mask)
    with pytest.raises(FlexRecError, match="row 0 is not a permutation"):
        check_permutations(np.array([[1, 1, -1]]), mask)


def test_poisson_bootstrap_agrees_with_the_classical_one_within_resampling_error():
    """The Poisson bootstrap's intervals against the classical percentile bootstrap (n instances drawn
    with replacement), on metrics with undefined instances, over 4,000 resamples each."""
    rng = np.random.default_rng(11)
    n = 3000
    x = np.where(rng.random((3, n)) < 0.6, rng.beta(2, 5, (3, n)), np.nan)
    fast = bootstrap_ci(x, 4000, seed=1)
    idx = rng.integers(0, n, (4000, n))
    classical = np.stack([np.nanpercentile(np.nanmean(x[i][idx], axis=1), [2.5, 97.5]) for i in range(3)])
    width = classical[:, 1] - classical[:, 0]
    np.testing.assert_allclose(fast, classical, atol=0.08 * width.max())
    # the same seed, the same intervals, whatever the chunking of the resamples
    import flexrec_bench.scoring.summary as M

    old = M.BOOTSTRAP_CHUNK
    try:
        M.BOOTSTRAP_CHUNK = 7
        small = bootstrap_ci(x, 500, seed=2)
    finally:
        M.BOOTSTRAP_CHUNK = old
    np.testing.assert_allclose(small, bootstrap_ci(x, 500, seed=2), rtol=0, atol=1e-12)
