"""The position-bias probe: a ranker that returns the presented order comes out maximally biased,
order-invariant rankers are not re-run and give tau = 1, and bad --shuffles values are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import ConfigError
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval
from flexrec_bench.ranking.permutations import RankResult
from flexrec_bench.scoring.position_bias import MAX_SHUFFLES, probe, shuffled
from flexrec_bench.ranking.rankers.base import Ranker, make_ranker
from flexrec_bench.building.splits import load_split


class Positional(Ranker):
    """Planted: always the presented order."""

    kind = "positional"

    def rank(self, split) -> RankResult:
        n, k = split.mask.shape
        return RankResult(np.where(split.mask, np.arange(k)[None, :], -1))


def test_a_positional_ranker_is_maximally_biased_and_star_is_not_rerun(ml100k):
    split = load_split(ml100k, "ml-100k", "interest", "test").head(60)
    pos = Positional()
    p = probe(pos, split, pos.rank(split).order, 4, seed=0)
    assert p["first_position_rate"] == 1.0 and p["first_position_chance"] == pytest.approx(1 / 30)
    assert abs(p["kendall_tau"]) < 0.1  # five unrelated orders of the same items
    assert p["rerun"] and p["orders"] == 5 and len(p["metrics"]["ndcg@10"]["per_order"]) == 5
    star = make_ranker("star")
    calls = []
    star.rank = (lambda f: lambda s: calls.append(1) or f(s))(star.rank)
    base = star.rank(split).order
    q = probe(star, split, base, 4, seed=0)
    assert len(calls) == 1 and not q["rerun"] and q["kendall_tau"] == 1.0
    assert q["metrics"]["ndcg@10"]["ci95"][0] == q["metrics"]["ndcg@10"]["ci95"][1]  # the same score in every order
    assert sum(q["instances_by_best_position_quartile"]) > 0


def test_a_shuffled_presentation_keeps_each_candidate_with_its_labels(ml100k):
    split = load_split(ml100k, "ml-100k", "trend", "test").head(20)
    sub, perms = shuffled(split, 1, 0)
    for i, perm in enumerate(perms):
        assert list(sub.candidates[i]) == [split.candidates[i][j] for j in perm]
        assert np.allclose(sub.relevance[i, : len(perm)], split.relevance[i, perm])
        assert np.allclose(sub.candidate_column("recent_count")[i, : len(perm)],
                           split.candidate_column("recent_count")[i, perm])
    assert any(list(p) != sorted(p) for p in perms)


def test_eval_writes_the_probe_and_refuses_bad_values(ml100k, tmp_path):
    res, _, path = run_eval(EvalConfig(model="random", data=str(ml100k), out=str(tmp_path), bootstrap=0, shuffles=2),
                            progress=False)
    pb = json.loads(path.read_text())["position_bias"]
    assert pb["orders"] == 3 and pb["rerun"] and -0.2 < pb["kendall_tau"] < 0.2  # random: a new draw per order
    plain, _, _ = run_eval(EvalConfig(model="random", data=str(ml100k), out=str(tmp_path / "p"), bootstrap=0),
                           progress=False)
    assert plain.position_bias is None and plain.metrics["ndcg@10"].mean == res.metrics["ndcg@10"].mean
    for bad in (-1, MAX_SHUFFLES + 1):
        with pytest.raises(ConfigError, match=rf"--shuffles must be an integer from 0 to {MAX_SHUFFLES}"):
            EvalConfig(model="star", shuffles=bad).validate()
    r = CliRunner().invoke(app, ["eval", "--model", "star", "--data", str(ml100k), "--out", str(tmp_path / "c"),
                                 "--bootstrap", "0", "--shuffles", "2", "--limit", "20"])
    assert r.exit_code == 0, r.output
    assert "position bias over 3 presentations (order-invariant: not re-run)" in r.output and "Kendall tau 1.000" in r.output
