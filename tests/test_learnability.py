"""The toy family and the learnability ladder (issue 46): benchmarks/learnability.py's options, the
family's builds, and the unconditional rung learned end to end through the real trainer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from flexrec_bench.datasets.toy import ALT_NEED, NEED, SLOTS, TYPE_NAMES, toy_slots, write_toy_build
from flexrec_bench.building.splits import load_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SIZES = {"train": 40, "val": 10, "test": 10}


def test_the_classic_toy_is_unchanged_by_the_family(tmp_path):
    # the fingerprint of the classic build as it was before the family existed: its default is the same bytes
    root = write_toy_build(tmp_path, {"train": 50, "val": 5, "test": 5})
    assert json.loads((root / "manifest.json").read_text())["fingerprint"] == "c05e0798e4afb39f"
    assert toy_slots()[0] == SLOTS


def test_a_family_member_draws_its_slots_and_the_alt_need_shares_the_instances(tmp_path):
    root = write_toy_build(tmp_path, SIZES, types=6, k=12, slots_seed=5, need_conditional=True)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["config"]["types"] == 6 and manifest["config"]["candidates"] == 12
    main, alt = toy_slots(6, 12, 5)
    assert set(main) == set(TYPE_NAMES[:6]) and all(len(set(v)) == 3 for v in main.values())
    assert all(not set(main[t]) & set(alt[t]) for t in main)  # the two needs want other items
    assert manifest["needs"][ALT_NEED]["instruction"] != manifest["needs"][NEED]["instruction"]
    for split in SIZES:
        a, b = load_split(tmp_path, "toy", NEED, split), load_split(tmp_path, "toy", ALT_NEED, split)
        assert a.frame["query"].tolist() == b.frame["query"].tolist() and a.candidates == b.candidates
        assert a.relevance.shape == (SIZES[split], 12)
        for r, q in enumerate(a.frame["query"]):
            t = q.rsplit(" ", 1)[-1]
            assert np.flatnonzero(a.relevance[r]).tolist() == sorted(main[t])
            assert a.relevance[r, main[t][0]] == 1.0 and b.relevance[r, alt[t][0]] == 1.0
    assert toy_slots(6, 12, 5) != toy_slots(6, 12, 6)  # another seed, another draw
    one = write_toy_build(tmp_path / "one", SIZES, types=1, slots_seed=0)
    assert set(load_split(tmp_path / "one", "toy", NEED, "train").frame["query"]) == {"user type north"}
    assert one.exists()


@pytest.mark.parametrize("kw, message", [
    (dict(types=0), "types must be 1..12"), (dict(k=40), "k (candidates) must be 6..32"),
    (dict(types=3), "give slots_seed to draw slots")])
def test_the_family_refuses_what_it_cannot_draw(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_toy_build(tmp_path, SIZES, **kw)


@pytest.mark.parametrize("argv, message", [
    (["--rung", "fixed", "--types", "3"], "--types must be 1"),
    (["--rung", "conditional", "--design", "causl"], "did you mean 'causal_swap'"),
    (["--rung", "conditional", "--k", "40"], "must be 6..32"),
    (["--rung", "need", "--set", "learnig_rate=1"], "did you mean 'learning_rate'"),
    (["--rung", "conditional", "--seeds", "0"], "--seeds must be at least 1"),
    (["--rung", "conditional", "--preset", "minature"], "did you mean 'miniature'"),
])
def test_learnability_refuses_bad_options_in_one_line(argv, message, capsys):
    import learnability

    with pytest.raises(SystemExit) as exc:
        learnability.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_the_need_rung_takes_its_own_rate_and_budget_unless_told_otherwise():
    import learnability

    need = learnability.parse_args(["--rung", "need", "--design", "causal_swap"])
    assert need.steps == 1500 and need.sets == {"learning_rate": "3e-4"}
    told = learnability.parse_args(["--rung", "need", "--steps", "40", "--set", "learning_rate=1e-3"])
    assert told.steps == 40 and told.sets == {"learning_rate": "1e-3"}
    cond = learnability.parse_args(["--rung", "conditional"])
    assert cond.steps is None and cond.sets == {}  # the preset's 1e-3 and 600 steps
    # the default is the same cell as the explicit options it stands for
    explicit = learnability.parse_args(["--rung", "need", "--design", "causal_swap", "--steps", "1500",
                                        "--set", "learning_rate=3e-4"])
    assert learnability.cell_dir(need, "causal_swap", 0) == learnability.cell_dir(explicit, "causal_swap", 0)


def test_steps_to_threshold_reads_the_first_crossing():
    import learnability

    curve = [(0, 0.4), (25, 0.6), (50, 0.85), (75, 0.82), (100, 0.95)]
    assert [learnability.steps_to(curve, t) for t in (0.5, 0.8, 0.9, 0.99)] == [25, 50, 100, None]
    s = learnability.summarise({"d": [{"final_ndcg@5": 0.9, "steps_to": {"0.5": 25, "0.8": 50, "0.9": None}},
                                      {"final_ndcg@5": 1.0, "steps_to": {"0.5": 50, "0.8": 50, "0.9": 75}}]}, 100)
    assert s["d"]["steps_to_0.9"]["reached"] == 1 and s["d"]["steps_to_0.5"]["mean"] == 37.5
    assert s["d"]["final_ndcg@5"]["ci95"][0] < 0.95 < s["d"]["final_ndcg@5"]["ci95"][1]


@pytest.mark.slow
def test_the_unconditional_rung_is_learned_by_causal_swap(tmp_path):
    """A one-type toy (one fixed target order): from a format warm-up, 20 GRPO steps of causal swap
    with the learnability preset take test N@5 from about random to at least 0.9."""
    import learnability

    out = learnability.main(["--rung", "fixed", "--design", "causal_swap", "--seeds", "1", "--steps", "20",
                             "--warmup-steps", "20", "--hidden", "64", "--out", str(tmp_path),
                             "--set", "eval_steps=10"])
    run = out["runs"]["causal_swap"][0]
    assert run["curve"][0][0] == 0 and run["curve"][0][1] < 0.6  # the start does not know the order
    assert run["final_ndcg@5"] >= 0.9, run
    assert out["summary"]["causal_swap"]["steps_to_0.9"]["reached"] == 1
    assert (tmp_path / "fixed.png").stat().st_size > 1000


def test_stop_at_ndcg_needs_two_validations_at_the_target_and_is_refused_where_it_cannot_act(tmp_path):
    from types import SimpleNamespace

    from training.config import ConfigError, layered_config
    from training.monitor import JsonlAndEval

    helper = JsonlAndEval(SimpleNamespace(stop_at_ndcg=0.9), tmp_path / "log.jsonl", {}, progress=False)
    assert not helper.reached_target()
    helper.val_rows += [{"val/toy/ndcg@5": 0.95, "val/toy-alt/ndcg@5": 0.91}]
    assert not helper.reached_target()  # one validation is not enough
    helper.val_rows += [{"val/toy/ndcg@5": 0.97, "val/toy-alt/ndcg@5": 0.89}]
    assert not helper.reached_target()  # every need must be at the target
    helper.val_rows += [{"val/toy/ndcg@5": 0.97, "val/toy-alt/ndcg@5": 0.93}]
    assert not helper.reached_target()  # ... in two validations in a row
    helper.val_rows += [{"val/toy/ndcg@5": 0.99, "val/toy-alt/ndcg@5": 0.90}]
    assert helper.reached_target()
    for bad, match in ((1.5, "stop_at_ndcg must be in"), (0, "stop_at_ndcg must be in")):
        with pytest.raises(ConfigError, match=match):
            layered_config(None, "learnability", {"model": "m"}, {"stop_at_ndcg": str(bad)})[0].resolved()
    with pytest.raises(ConfigError, match="stop_at_ndcg reads the validations"):
        layered_config(None, "learnability", {"model": "m"}, {"eval_steps": "0"})[0].resolved()
    from flexrec_bench.foundation.errors import MissingCapabilityError
    from training.verl_backend import verl_overrides

    cfg = layered_config(None, "learnability", {"model": "m"}, {"constrained_decoding": "false"})[0].resolved()
    with pytest.raises(MissingCapabilityError, match="stop_at_ndcg is local-backend only"):
        verl_overrides(cfg, tmp_path / "t.parquet", tmp_path / "v.parquet", 1)
