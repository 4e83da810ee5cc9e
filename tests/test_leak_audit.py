"""Leak-free instances: the presented candidate order carries no label information, the audit
catches an order that does, undefined metrics are left out (the oracle scores exactly 1), and the
fingerprint names the data, not the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rawfixtures as fx
from typer.testing import CliRunner

from flexrec_bench.building.leak_audit import audit_arrays
from flexrec_bench.building.config import BuildConfig
from flexrec_bench.building.build import build, label_digest
from flexrec_bench.cli import app
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval

MID = dict(embedder="hashing-64", train_size=300, test_size=150, val_size=150, candidates=10, history=8,
           min_history=3, stride=2)


def test_audit_flags_position_that_predicts_the_best_candidate():
    rng = np.random.default_rng(0)
    n, k = 400, 20
    mask = np.ones((n, k), bool)
    rel = rng.random((n, k))
    clean = audit_arrays(rel, mask)
    assert not clean.leak and clean.p_value > 1e-4
    assert abs(clean.ndcg_presented - clean.ndcg_random) < 0.03
    leaky = np.sort(rel, axis=1)[:, ::-1]  # best first, as a retrieval order would present it
    a = audit_arrays(leaky, mask)
    assert a.leak and a.p_value < 1e-10 and a.ndcg_presented == pytest.approx(1.0)
    assert any("presented order" in r for r in a.reasons) and any("reverse" in r for r in a.reasons)
    # the best item always last (the old injected positive): caught through the reverse order
    last = np.zeros((n, k))
    last[:, -1] = 1
    b = audit_arrays(last, mask)
    assert b.leak and b.best_position_counts[-1] == n and b.ndcg_reversed == pytest.approx(1.0)
    # all-zero instances carry no information and are not tested
    none = audit_arrays(np.zeros((5, k)), np.ones((5, k), bool))
    assert none.informative == 0 and not none.leak and none.chi2 is None


def test_audit_handles_ragged_lists_and_few_instances():
    rel = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    mask = np.array([[True, True, False, False], [True, True, True, True], [True, True, True, False]])
    a = audit_arrays(rel, mask)
    assert a.informative == 3 and a.chi2 is None and a.p_value == 1.0 and not a.leak  # too few to test


def test_shuffled_build_is_leak_free_and_retrieval_order_is_caught(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw", n_users=120, n_items=150, per_user=30)
    clean = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "clean"), **MID), progress=False)
    assert clean.manifest["audit"]["leak_free"], clean.manifest["audit"]["flagged"]
    leaky = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "leaky"), candidate_order="retrieval",
                              **MID), progress=False)
    audit = leaky.manifest["audit"]
    assert not audit["leak_free"] and "niche/train" in audit["flagged"] and "trend/train" in audit["flagged"]
    # same candidate sets, only the presented order differs; the audit command agrees with the manifest
    a = pq.read_table(clean.path / "niche" / "test.parquet").to_pandas()
    b = pq.read_table(leaky.path / "niche" / "test.parquet").to_pandas()
    assert [sorted(x) for x in a["candidates"]] == [sorted(x) for x in b["candidates"]]
    assert all(list(s) == sorted(s, reverse=True) for s in b["retrieval_scores"])
    ok = CliRunner().invoke(app, ["audit", "--data", str(tmp_path / "clean"), "--dataset", "ml-1m",
                                  "--json", str(tmp_path / "a.json")])
    assert ok.exit_code == 0, ok.output
    assert "leak-free" in ok.output and json.loads((tmp_path / "a.json").read_text())["leak_free"]
    bad = CliRunner().invoke(app, ["audit", "--data", str(tmp_path / "leaky"), "--dataset", "ml-1m"])
    assert bad.exit_code == 1 and "LEAK" in bad.output


def test_injected_positive_takes_a_random_slot_and_an_unmarked_score(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw", n_users=120, n_items=150, per_user=30)
    res = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "out"), ensure_positive=True,
                            needs=("interest",), **MID), progress=False)
    injected = res.manifest["counts"]["injected_positive"]
    assert injected["train"] > 0 and res.manifest["config"]["ensure_positive"] is True
    t = pq.read_table(res.path / "interest" / "train.parquet").to_pandas()
    positions = [j for r in t["relevant"] for j, x in enumerate(r) if x]
    assert np.mean(np.array(positions) == 9) < 0.3  # the last slot is no longer where positives go
    assert res.manifest["audit"]["needs"]["interest"]["train"]["leak"] is False
    # the injected item took over the replaced slot's score: every instance's scores are those of the
    # build without injection, so no score marks the injected item
    base = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "base"), needs=("interest",), **MID),
                 progress=False)
    u = pq.read_table(base.path / "interest" / "train.parquet").to_pandas()
    assert [sorted(s) for s in u["retrieval_scores"]] == [sorted(s) for s in t["retrieval_scores"]]


@pytest.mark.slow
def test_oracle_scores_exactly_one_and_undefined_instances_are_counted(ml100k, tmp_path):
    for need in ("interest", "niche", "trend"):
        for split in ("val", "test"):
            res, rep, _ = run_eval(EvalConfig(model="oracle", data=str(ml100k), need=need, split=split,
                                              out=str(tmp_path), bootstrap=0), progress=False)
            for name in ("ndcg@5", "ndcg@10", "ndcg@30"):
                assert rep.metrics[name].mean == 1.0, (need, split, name)
                assert rep.metrics[name].n == res.dataset.instances - res.n_no_gain
            assert rep.metrics["recall@5"].n == res.dataset.instances - res.n_no_relevant
    assert res.n_no_relevant >= 0


def test_label_digest_ignores_float_scores_but_not_labels(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    res = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "out"), needs=("trend",),
                            **{**MID, "train_size": 40, "test_size": 10, "val_size": 10}), progress=False)
    t = pq.read_table(res.path / "trend" / "test.parquet")
    d0 = label_digest(t)
    scores = [[x + 1e-7 for x in r] for r in t.column("retrieval_scores").to_pylist()]
    noisy = t.set_column(t.schema.get_field_index("retrieval_scores"), "retrieval_scores",
                         pa.array(scores, t.schema.field("retrieval_scores").type))
    assert label_digest(noisy) == d0
    rel = t.column("relevance").to_pylist()
    rel[0][0] = rel[0][0] + 0.01
    relabelled = t.set_column(t.schema.get_field_index("relevance"), "relevance",
                              pa.array(rel, t.schema.field("relevance").type))
    assert label_digest(relabelled) != d0


@pytest.mark.slow
def test_fingerprint_is_the_same_with_one_thread_or_all_and_any_paths_and_submit_accepts_across_builds(tmp_path):
    """Two builds of the same input in separate processes, one single-threaded, into different
    --out folders and FLEXREC_HOMEs, give one fingerprint (the default embedder, a small sample)."""
    fps = []
    for name, threads in (("a", "1"), ("b", None)):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        env["FLEXREC_HOME"] = str(tmp_path / f"home-{name}")
        if threads:
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        out = tmp_path / f"out-{name}"
        r = subprocess.run([sys.executable, "-m", "flexrec_bench.cli", "build-data", "--out", str(out), "--quiet",
                            "--train-size", "300", "--test-size", "100"], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        fps.append(json.loads((out / "ml-100k" / "manifest.json").read_text())["fingerprint"])
    assert fps[0] == fps[1]
    # an honest result scored on build a is accepted by submit against build b (the other machine's)
    from flexrec_bench.scoring.eval_config import EvalConfig
    from flexrec_bench.scoring.evaluator import run_eval
    from leaderboard.submit import submit

    _, _, path = run_eval(EvalConfig(model="star", data=str(tmp_path / "out-a"), out=str(tmp_path / "res"),
                                     bootstrap=100), progress=False)
    lb = tmp_path / "lb.json"
    from conftest import register_build

    register_build(lb, tmp_path / "out-a")
    entry, _ = submit(path, lb, tmp_path / "out-b")
    assert entry.results.dataset.fingerprint == fps[1] and entry.verification.rescored


def test_audit_flags_a_shipped_column_that_solves_a_need(tmp_path):
    rng = np.random.default_rng(1)
    n, k = 300, 12
    rel = rng.random((n, k))
    mask = np.ones((n, k), bool)
    solved = audit_arrays(rel, mask, columns={"retrieval_scores": rel * 3 + 1})  # a monotone copy of the label
    assert solved.leak and solved.ndcg_by_column["retrieval_scores"] > 0.999
    assert any("retrieval_scores" in r and "one column solves" in r for r in solved.reasons)
    reverse = audit_arrays(rel, mask, columns={"recent_count": -rel})  # in reverse it solves it too
    assert reverse.leak
    noisy = audit_arrays(rel, mask, columns={"retrieval_scores": rel + rng.normal(0, 0.5, rel.shape)})
    assert not noisy.leak and 0.5 < noisy.ndcg_by_column["retrieval_scores"] < 0.98
    # a build whose trend label is the similarity alone (alpha 1) is one that retrieval_scores solves
    raw = fx.write_ml1m(tmp_path / "raw", n_users=120, n_items=150, per_user=30)
    res = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "o"), needs=("trend", "niche"),
                            need_options={"trend": {"alpha": "1"}}, **MID), progress=False)
    audit = res.manifest["audit"]
    assert "trend/test" in audit["flagged"] and not any(f.startswith("niche/") for f in audit["flagged"])
    cols = audit["needs"]["trend"]["test"]["ndcg_by_column"]
    assert cols["retrieval_scores"] >= 0.98 and "recent_count" in cols
    bad = CliRunner().invoke(app, ["audit", "--data", str(tmp_path / "o"), "--dataset", "ml-1m"])
    assert bad.exit_code == 1 and "one column solves" in bad.output
