"""Needs that no formula solves: the formula audit fits rankers on what a ranker is shown and finds
the paper's niche and trend labels solvable; the held-out reading (ours) is not; the default build
does not move."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rawfixtures as fx
from typer.testing import CliRunner

from flexrec_bench.building.build import build
from flexrec_bench.building.config import BuildConfig
from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import ConfigError, FlexRecError
from flexrec_bench.building.formula_audit import ShownInputs, formula_audit
from flexrec_bench.building.labeling import make_need
from flexrec_bench.building.splits import load_split

MID = dict(embedder="hashing-64", train_size=300, test_size=150, val_size=150, candidates=10, history=8,
           min_history=3, stride=2)
runner = CliRunner()


def _inputs(rng, n, k, label):
    """Shown inputs with a similarity and a count column, labels from ``label(sim, count, hidden)``."""
    sim, count, hidden = rng.random((n, k)), rng.poisson(5, (n, k)).astype(float), rng.random((n, k))
    rel = label(sim, count, hidden)
    topics = [[frozenset({"a"}) if j % 2 else frozenset({"b"}) for j in range(k)] for _ in range(n)]
    return ShownInputs(mask=np.ones((n, k), bool), relevance=rel, relevant=rel > np.median(rel), 
                       columns={"retrieval_scores": sim, "recent_count": count}, popularity=np.zeros((n, k)),
                       candidate_topics=topics, history_topics=[frozenset({"a"})] * n)


def _minmax(x):
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    return (x - lo) / (hi - lo)


@pytest.mark.parametrize("label, solvable", [
    (lambda s, c, h: 0.5 * _minmax(s) + 0.5 * _minmax(c), True),   # the paper's trend formula: two shown columns
    (lambda s, c, h: h * (0.5 + 0.5 * _minmax(c)), False),         # a hidden term the ranker is not shown
])
def test_a_formula_of_shown_columns_is_solvable_and_a_hidden_term_is_not(label, solvable):
    rng = np.random.default_rng(0)
    train, test = _inputs(rng, 600, 12, label), _inputs(rng, 300, 12, label)
    f = formula_audit(train, test)
    assert f["solvable"] is solvable, f["scores"]
    if solvable:
        # no single column gets there: only a formula of two does
        assert max(f["scores"]["retrieval_scores"], f["scores"]["recent_count"]) < 0.95 <= f["formula_ceiling"]
    else:
        assert f["formula_ceiling"] < 0.9 and f["scores"]["random"] < f["formula_ceiling"]


def test_the_paper_readings_are_solvable_and_the_heldout_readings_are_not(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw", n_users=120, n_items=150, per_user=30)
    paper = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "p"), **MID), progress=False)
    audit = paper.manifest["audit"]
    assert set(audit["solvable_from_shown"]) == {"niche", "trend"} and "interest" not in audit["solvable_from_shown"]
    for need in ("niche", "trend"):
        lf = audit["formula"][need]["label_formula"]
        # the label rule itself, evaluated on the shipped columns and shown topics, reproduces every instance
        assert lf["evaluated"] and lf["match"] == 1.0 and lf["ndcg@10"] == pytest.approx(1.0)
    assert not audit["formula"]["interest"]["label_formula"]["evaluated"]
    assert audit["leak_free"]  # solvable is reported, not flagged as a leak of order
    held = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "h"),
                             need_options={"niche": {"relevance": "heldout"}, "trend": {"relevance": "heldout"}}, **MID),
                 progress=False)
    ha = held.manifest["audit"]
    assert ha["solvable_from_shown"] == []
    for need in ("niche", "trend"):
        assert ha["formula"][need]["share_of_oracle"] < 0.9
        assert not ha["formula"][need]["label_formula"]["evaluated"]
        assert held.manifest["needs"][need]["label_source"].startswith("held-out (ours)")
    # the held-out labels are the interest gain times the need's own factor, zero where the user gave no signal
    interest = load_split(tmp_path / "h", "ml-1m", "interest", "test")
    niche = load_split(tmp_path / "h", "ml-1m", "niche", "test")
    trend = load_split(tmp_path / "h", "ml-1m", "trend", "test")
    gain = interest.relevance
    assert np.all((niche.relevance == 0) | (gain > 0)) and np.all((trend.relevance == 0) | (gain > 0))
    ratio = np.divide(niche.relevance, gain, out=np.full(gain.shape, np.nan), where=gain > 0)
    assert set(np.round(ratio[gain > 0], 5)) <= {0.5, 1.0}  # bonus 1: (1 + niche) / 2
    tr = np.divide(trend.relevance, gain, out=np.full(gain.shape, np.nan), where=gain > 0)
    assert np.nanmin(tr) >= 0.5 - 1e-6 and np.nanmax(tr) <= 1.0 + 1e-6  # alpha 0.5: 0.5 + 0.5 * minmax(count)
    assert np.array_equal(niche.observed, interest.observed) and not niche.relevant[~interest.relevant].any()
    # the audit command reads the same from the files
    r = runner.invoke(app, ["audit", "--data", str(tmp_path / "h"), "--dataset", "ml-1m"])
    assert r.exit_code == 0, r.output
    assert "formula audit" in r.output and "not a formula of shown inputs" in r.output
    r = runner.invoke(app, ["audit", "--data", str(tmp_path / "p"), "--dataset", "ml-1m"])
    assert r.exit_code == 0 and "SOLVABLE from what the ranker is shown" in r.output


def test_the_reading_option_leaves_the_default_config_and_refuses_bad_values(tmp_path):
    assert "relevance" not in make_need("niche", {}).config()  # the registered build's need config does not move
    assert "relevance" not in make_need("trend", {}).config()
    assert make_need("trend", {"relevance": "heldout"}).config()["relevance"] == "heldout"
    with pytest.raises(ConfigError, match=r"need 'niche': niche relevance must be one of paper, heldout"):
        make_need("niche", {"relevance": "held"})
    raw = fx.write_ml1m(tmp_path / "raw")
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "o"),
                            "--need-option", "trend.relevance=later", "--quiet"])
    # refused before the build starts (the command line prints it as one line and exits 2)
    assert isinstance(r.exception, ConfigError) and "trend relevance must be one of paper, heldout" in str(r.exception)
    assert not (tmp_path / "o" / "ml-1m").exists()
    esci = fx.write_esci(tmp_path / "esci")
    for reading in ("heldout", "mixed"):  # both read a held-out user signal, which ESCI has none of
        r = runner.invoke(app, ["build-data", "--dataset", "esci", "--raw-dir", str(esci), "--out", str(tmp_path / "e"),
                                "--needs", "search,niche", "--need-option", f"niche.relevance={reading}", "--quiet"])
        msg = str(r.exception)
        assert isinstance(r.exception, FlexRecError) and f"niche.relevance={reading}" in msg and "esci" in msg
        assert "\n" not in msg and not (tmp_path / "e" / "esci").exists()
    # the build's last line: each need's formula ceiling and the candidate recall
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "o"),
                            "--embedder", "hashing-32", "--train-size", "30", "--test-size", "10", "--candidates", "8",
                            "--history", "6", "--min-history", "3", "--quiet"])
    assert r.exit_code == 0, r.output
    last = r.output.rstrip().splitlines()[-1]
    assert last.strip().startswith("formula ceiling NDCG@10 (test): interest") and "candidate recall (test):" in last
    m = json.loads((tmp_path / "o" / "ml-1m" / "manifest.json").read_text())
    assert set(m["audit"]["formula"]) == {"interest", "niche", "trend"}


def test_results_declare_what_a_ranker_reads_and_the_page_shows_the_ceiling(ml100k, tmp_path):
    from flexrec_bench.scoring.eval_config import EvalConfig
    from flexrec_bench.scoring.evaluator import run_eval
    from leaderboard.render import render
    from leaderboard.submit import DEFAULT_PATH, load

    reads = {}
    for model in ("popularity", "star", "random"):
        res, _, _ = run_eval(EvalConfig(model=model, data=str(ml100k), need="trend", out=str(tmp_path / "r"),
                                        bootstrap=0), progress=False)
        reads[model] = res.model.reads
    assert reads == {"popularity": ["train_count"], "random": [],
                     "star": ["history", "item_embeddings", "retrieval_scores", "train_interactions"]}
    board = load(DEFAULT_PATH)
    refs = board.registered_builds["ml-100k"].references
    assert refs["trend"].solvable and refs["trend"].label_inputs == ["retrieval_scores", "recent_count"]
    assert not refs["interest"].solvable and refs["interest"].label_inputs == []
    html = render(board, tmp_path / "site").read_text()
    assert html.count('class="reference-row"') == 3  # one formula-ceiling row per (ml-100k, need)
    assert "This need is solvable from what the ranker is shown" in html
    assert "reads the label's inputs: retrieval_scores" in html and "candidate recall 0.020" in html


def test_the_audit_sample_bounds_the_fit_and_a_cap_below_one_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    label = lambda s, c, h: 0.5 * _minmax(s) + 0.5 * _minmax(c)  # noqa: E731
    train, test = _inputs(rng, 600, 12, label), _inputs(rng, 100, 12, label)
    assert formula_audit(train, test)["fit_instances"] == 600  # under the default cap: every instance
    capped = formula_audit(train, test, sample=50)
    assert capped["fit_instances"] == 50 and capped["instances"] == 100  # the cap is on the fit, never the scoring
    assert formula_audit(train, test, sample=50) == capped  # a seeded sample
    for bad in (0, -3):
        with pytest.raises(ValueError, match="sample must be an integer >= 1"):
            formula_audit(train, test, sample=bad)
    raw = fx.write_ml1m(tmp_path / "raw")
    for args in (["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "o"),
                  "--audit-sample", "0", "--quiet"],
                 ["audit", "--dataset", "ml-1m", "--data", str(tmp_path / "o"), "--audit-sample", "-1"]):
        r = runner.invoke(app, args)
        assert r.exit_code != 0
        msg = str(r.exception) if r.exception and not isinstance(r.exception, SystemExit) else r.output
        assert "--audit-sample" in msg and "must be an integer >= 1" in msg, msg
    assert not (tmp_path / "o" / "ml-1m").exists()


def test_a_build_without_the_formula_audit_is_the_same_data_and_says_so_last(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    args = ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--embedder", "hashing-32", "--train-size", "30",
            "--test-size", "10", "--candidates", "8", "--history", "6", "--min-history", "3", "--quiet"]
    full = runner.invoke(app, [*args, "--out", str(tmp_path / "full")])
    skip = runner.invoke(app, [*args, "--out", str(tmp_path / "skip"), "--no-formula-audit"])
    assert full.exit_code == 0 and skip.exit_code == 0, skip.output
    last = skip.output.rstrip().splitlines()[-1]
    assert "formula audit: skipped (--no-formula-audit)" in last and "flexrec-bench audit" in last
    a, b = (json.loads((tmp_path / d / "ml-1m" / "manifest.json").read_text()) for d in ("full", "skip"))
    assert a["fingerprint"] == b["fingerprint"]  # how a build is checked is not part of what it holds
    assert b["audit"]["formula_skipped"] is True and b["audit"]["formula"] == {} and "formula_skipped" not in a["audit"]
    assert b["audit"]["leak_free"] and b["audit"]["needs"] == a["audit"]["needs"]  # the leak audit still runs
    # the audit run on its own gives the figures the default build wrote
    r = runner.invoke(app, ["audit", "--dataset", "ml-1m", "--data", str(tmp_path / "skip"), "--json",
                            str(tmp_path / "audit.json")])
    assert r.exit_code == 0, r.output
    later = json.loads((tmp_path / "audit.json").read_text())["formula"]
    for need, f in a["audit"]["formula"].items():
        assert later[need]["formula_ceiling"] == pytest.approx(f["formula_ceiling"], abs=1e-9)
