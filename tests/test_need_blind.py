"""Issue 47: the need-blind ceiling (ranking by the interest labels, scored under the need's) beside
the formula ceiling, and the ``mixed`` reading of niche and trend (ours) that a need-blind ranker
does not solve."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rawfixtures as fx
from typer.testing import CliRunner

from flexrec_bench.building.build import build
from flexrec_bench.building.config import BuildConfig
from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import ConfigError
from flexrec_bench.building.formula_audit import NEED_BLIND, add_need_blind, need_blind_audit
from flexrec_bench.building.labeling import make_need, minmax
from flexrec_bench.building.splits import load_split

MID = dict(embedder="hashing-64", train_size=300, test_size=150, val_size=150, candidates=10, history=8,
           min_history=3, stride=2)
runner = CliRunner()


def test_need_blind_audit_scores_the_interest_order_under_the_need_labels():
    rng = np.random.default_rng(0)
    mask = np.ones((50, 8), bool)
    interest = rng.random((50, 8))
    same = need_blind_audit(interest, interest, interest > 0.5, mask)
    assert same["need_blind_ceiling"] == pytest.approx(1.0) and same["need_blind"]
    other = need_blind_audit(interest, 1.0 - interest, interest < 0.5, mask)  # the need reverses the order
    assert other["need_blind_ceiling"] < 0.7 and not other["need_blind"]
    ref = need_blind_audit(interest, interest, interest > 0.5, mask, reference=True)
    assert not ref["need_blind"] and ref["need_blind_reference"]  # the interest need is the reference, never flagged
    empty = need_blind_audit(interest, np.zeros_like(interest), mask & False, mask)
    assert empty["need_blind_ceiling"] is None
    # a build without the interest need says why, and one on other instances is not compared
    f = {"niche": {}}
    add_need_blind(f, {"niche": (interest, interest > 0.5, mask)})
    assert f["niche"]["need_blind_ceiling"] is None and "interest" in f["niche"]["need_blind_why"]
    f = {"niche": {}, "interest": {}}
    add_need_blind(f, {"niche": (interest[:10], interest[:10] > 0.5, mask[:10]), "interest": (interest, interest > .5, mask)})
    assert f["niche"]["need_blind_ceiling"] is None and f["interest"]["need_blind_reference"]


def test_heldout_is_need_blind_and_mixed_is_a_blend_that_the_audit_reports(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw", n_users=120, n_items=150, per_user=30)
    held = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "h"),
                             need_options={"niche": {"relevance": "heldout"}, "trend": {"relevance": "heldout"}}, **MID),
                 progress=False)
    fa = held.manifest["audit"]["formula"]
    assert fa["interest"]["need_blind_reference"] and fa["interest"]["need_blind_ceiling"] == pytest.approx(1.0)
    for need in ("niche", "trend"):  # sparse ratings: the rated candidates first already wins
        assert fa[need]["need_blind_ceiling"] >= NEED_BLIND and fa[need]["need_blind"]
    assert set(held.manifest["audit"]["need_blind"]) == {"niche", "trend"}
    mixed = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "m"),
                              need_options={"niche": {"relevance": "mixed"}, "trend": {"relevance": "mixed", "mix": 0.6}},
                              **MID), progress=False)
    ma = mixed.manifest["audit"]
    assert ma["need_blind"] == [] and ma["solvable_from_shown"] == []
    for need in ("niche", "trend"):
        assert ma["formula"][need]["need_blind_ceiling"] < fa[need]["need_blind_ceiling"]
        assert mixed.manifest["needs"][need]["label_source"].startswith("mixed (ours)")
    assert mixed.manifest["needs"]["trend"]["config"]["mix"] == 0.6
    assert "mix" not in mixed.manifest["needs"]["niche"]["config"] or mixed.manifest["needs"]["niche"]["config"]["mix"] == 0.7
    # the labels are the blend: mix * minmax(held-out gain) + (1 - mix) * minmax(shown count)
    gain = load_split(tmp_path / "m", "ml-1m", "interest", "test")
    trend = load_split(tmp_path / "m", "ml-1m", "trend", "test")
    count = trend.candidate_column("recent_count")
    want = 0.6 * minmax(gain.relevance.astype(np.float64), gain.mask) + 0.4 * minmax(count, trend.mask)
    np.testing.assert_allclose(trend.relevance, np.where(trend.mask, want, 0), atol=1e-6)
    # the audit command and the card show the need-blind ceiling beside the formula ceiling
    r = runner.invoke(app, ["audit", "--data", str(tmp_path / "h"), "--dataset", "ml-1m"])
    assert r.exit_code == 0, r.output
    assert "blind" in r.output and "NEED-BLIND: a need-blind ranker solves it" in r.output
    card = (tmp_path / "h" / "ml-1m" / "README.md").read_text()
    assert "need-blind ceiling" in card and "a need-blind ranker solves it" in card


def test_the_build_last_line_names_the_need_blind_ceiling(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "o"),
                            "--embedder", "hashing-32", "--train-size", "30", "--test-size", "10", "--candidates", "8",
                            "--history", "6", "--min-history", "3", "--need-option", "trend.relevance=heldout", "--quiet"])
    assert r.exit_code == 0, r.output
    last = r.output.rstrip().splitlines()[-1]
    assert "need-blind" in last and "trend" in last
    m = json.loads((tmp_path / "o" / "ml-1m" / "manifest.json").read_text())
    assert m["audit"]["formula"]["trend"]["need_blind_ceiling"] is not None


def test_bad_mixed_options_are_refused_before_the_build(tmp_path):
    """(``mixed`` on ESCI: tests/test_formula_audit.py, beside ``heldout``.)"""
    assert "mix" not in make_need("trend", {"relevance": "mixed"}).config()  # the default weight is not written
    with pytest.raises(ConfigError, match=r"need 'niche': niche mix must be a number in \[0, 1\] \(--need-option niche.mix"):
        make_need("niche", {"relevance": "mixed", "mix": 1.5})
    with pytest.raises(ConfigError, match=r"trend relevance must be one of paper, heldout, mixed"):
        make_need("trend", {"relevance": "blend"})
    raw = fx.write_ml1m(tmp_path / "raw")
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "o"),
                            "--need-option", "trend.relevance=mixed", "--need-option", "trend.mix=-0.1", "--quiet"])
    assert isinstance(r.exception, ConfigError) and "trend mix must be a number in [0, 1]" in str(r.exception)
    assert not (tmp_path / "o" / "ml-1m").exists()
