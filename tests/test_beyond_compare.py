"""Beyond-accuracy metrics and the paired comparison of runs, against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from flexrec_bench.scoring.beyond import beyond_accuracy, gini
from flexrec_bench.cli import app
from flexrec_bench.scoring.compare import holm, paired_test
from flexrec_bench.building.splits import load_split
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval

runner = CliRunner()


def test_gini_and_holm_by_hand():
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # (2*4 - 4 - 1) * 4 / (4 * 4)
    assert gini(np.zeros(3)) == 0.0
    # Holm: sorted p (0.01, 0.02, 0.04) x (3, 2, 1) = (0.03, 0.04, 0.04), monotone
    adj = holm([0.04, 0.01, None, 0.02])
    assert adj[1] == pytest.approx(0.03) and adj[3] == pytest.approx(0.04) and adj[0] == pytest.approx(0.04)
    assert adj[2] is None
    a = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert paired_test(a, a, "wilcoxon") == 1.0  # no difference at all
    b = a + np.array([0.10, 0.12, 0.09, 0.11, 0.10, 0.13])
    assert paired_test(a, b, "t") < 1e-4 and paired_test(a, b, "wilcoxon") == pytest.approx(0.03125)  # 2 / 2^6


def test_a_zero_mean_difference_of_mostly_tied_rankers_is_not_significant():
    """Two rankers tie on 900 of 1,000 instances; of the rest, 90 favour B by 0.001 and 10 favour A by
    0.009: the mean difference is 0. Wilcoxon with zero_method="wilcox" drops the ties and finds p ~ 3e-9."""
    from flexrec_bench.scoring.compare import DEFAULT_TEST, MetricComparison, PairComparison, format_table

    a = np.random.default_rng(0).random(1000)
    d = np.zeros(1000)
    d[:90], d[90:100] = 0.001, -0.009
    assert abs(d.mean()) < 1e-12 and DEFAULT_TEST == "t"
    p = paired_test(a, a + d, DEFAULT_TEST)
    assert p > 0.99
    assert paired_test(a, a + d, "wilcoxon") > 1e-6  # ties kept (zsplit): far weaker than the 3e-9 that dropped them
    row = MetricComparison("ndcg@30", 1000, float(a.mean()), float((a + d).mean()), float(d.mean()), (-1e-3, 1e-3), p, p)
    table = format_table([PairComparison("popularity", "star", 1000, DEFAULT_TEST, [row])])
    assert table.splitlines()[0].startswith("A popularity  vs  B star") and " *" not in table.split("\n* p")[0]


def test_beyond_accuracy_by_hand(ml100k):
    split = load_split(ml100k, "ml-100k", "interest", "test").head(2)
    order = np.tile(np.arange(split.k), (2, 1))  # both lists: candidates in presented order
    rep = beyond_accuracy(order, split, ks=(2,))
    items = split.items
    index = {iid: i for i, iid in enumerate(items["item_id"])}
    tops = [list(c[:2]) for c in split.frame["candidates"][:2]]
    shown = {x for t in tops for x in t}
    assert rep.values["coverage@2"] == pytest.approx(len(shown) / len(items))
    train = items["train_count"].to_numpy(float)
    p = (train + 1) / (train.sum() + len(items))
    nov = [np.mean([-np.log2(p[index[x]]) for x in t]) for t in tops]
    np.testing.assert_allclose(rep.per_instance["novelty@2"], nov)
    emb = split.embeddings
    for i, (x, y) in enumerate(tops):
        u, v = emb[index[x]], emb[index[y]]
        cos = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
        assert rep.per_instance["ild@2"][i] == pytest.approx(1 - cos, abs=1e-6)
    exposure = np.zeros(len(items))
    for t in tops:
        for x in t:
            exposure[index[x]] += 1
    assert rep.values["gini@2"] == pytest.approx(gini(exposure))


def test_niche_and_trend_shares(ml100k):
    for need, name in (("niche", "niche_share@5"), ("trend", "trend_share@5")):
        split = load_split(ml100k, "ml-100k", need, "test").head(50)
        rep = beyond_accuracy(np.tile(np.arange(split.k), (len(split), 1)), split)
        assert name in rep.values and 0.0 <= rep.values[name] <= 1.0
    # niche by hand, the build's rule (some_unseen): some of the candidate's topics are not in the shown history
    split = load_split(ml100k, "ml-100k", "niche", "test").head(50)
    items = split.items
    topics = dict(zip(items["item_id"], items["topics"]))
    flags = []
    for hist, cands in zip(split.frame["history"], split.frame["candidates"]):
        seen = set().union(*(set(topics[h]) for h in hist))
        flags.append([bool(len(topics[c])) and not set(topics[c]) <= seen for c in cands[:5]])
    rep = beyond_accuracy(np.tile(np.arange(split.k), (len(split), 1)), split)
    np.testing.assert_allclose(rep.per_instance["niche_share@5"], np.mean(flags, axis=1))


def test_results_files_carry_beyond_metrics_and_compare_prints_p_values(ml100k, tmp_path):
    paths = []
    for model in ("random", "star"):
        res, _, path = run_eval(EvalConfig(model=model, data=str(ml100k), out=str(tmp_path / "res"), bootstrap=100),
                                progress=False)
        assert {"coverage@5", "coverage@10", "novelty@5", "ild@10", "gini@5"} <= set(res.beyond)
        paths.append(str(path))
    r = runner.invoke(app, ["compare", *paths, "--data", str(ml100k), "--bootstrap", "200"])
    assert r.exit_code == 0, r.output
    # the header names A and B in the order given, and the default test is the paired t-test
    assert "A random  vs  B star" in r.output and "paired t" in r.output and "p (Holm)" in r.output
    assert "ndcg@10" in r.output
    r = runner.invoke(app, ["compare", *paths, "--data", str(ml100k), "--bootstrap", "200", "--json", "--test", "t"])
    pair = json.loads(r.output)[0]
    row = next(m for m in pair["metrics"] if m["metric"] == "ndcg@10")
    assert pair["shared"] == 200 and 0 <= row["p"] <= row["p_holm"] <= 1 and row["p"] < 0.05
    assert row["ci95"][0] <= row["diff"] <= row["ci95"][1]
    r = runner.invoke(app, ["compare", *paths, "--data", str(ml100k), "--bootstrap", "0", "--json",
                            "--metrics", "ndcg@10,novelty@5"])  # accuracy and beyond-accuracy names together
    assert r.exit_code == 0, r.output
    assert [m["metric"] for m in json.loads(r.output)[0]["metrics"]] == ["ndcg@10", "novelty@5"]


def test_rows_of_several_seeds_are_compared_on_their_seed_means(ml100k, tmp_path):
    """compare_seed_means: each instance's score averaged over a row's runs, then the paired test;
    a one-run row is its run, and the row means are the runs' means averaged."""
    from flexrec_bench.scoring.compare import compare_runs, compare_seed_means

    paths = {}
    for name, seed in (("popularity", 0), ("random", 0), ("random", 1)):
        _, _, paths[(name, seed)] = run_eval(EvalConfig(model=name, data=str(ml100k), out=str(tmp_path / f"{name}{seed}"),
                                                        limit=30, bootstrap=0, seed=seed), progress=False)
    pairs = compare_seed_means({"pop": [paths["popularity", 0]], "rand": [paths["random", 0], paths["random", 1]]},
                               ml100k, ("ndcg@5",), bootstrap=200)
    (p,) = pairs
    assert (p.a, p.b, p.shared) == ("pop", "rand", 30)
    per_run = [compare_runs([paths["popularity", 0], paths["random", s]], ml100k, ("ndcg@5",), bootstrap=0)[0]
               for s in (0, 1)]
    m = p.metrics[0]
    assert m.mean_a == pytest.approx(per_run[0].metrics[0].mean_a)
    assert m.mean_b == pytest.approx(np.mean([r.metrics[0].mean_b for r in per_run]))
    assert m.diff == pytest.approx(m.mean_b - m.mean_a) and m.ci95 is not None and 0 <= m.p <= 1
    assert per_run[0].metrics[0].mean_b != per_run[1].metrics[0].mean_b  # the seeds did differ
