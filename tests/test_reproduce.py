"""`flexrec-bench reproduce`: a table's or figure's grid, evaluated by the one evaluator, written in
the paper's layout with CIs, the paper-comparable means and the paper's numbers beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import FlexRecError
from leaderboard.schema import load_paper
from reproduce import ReproduceConfig, cells, markdown, paper_numbers

runner = CliRunner()


def _reported() -> list[dict]:
    return [r.model_dump() for r in load_paper().reported_in_paper]


def test_grids_follow_the_papers_rows():
    t7 = cells(ReproduceConfig(table=7, model="m"))
    assert [c.label for c in t7][:3] == ["GRPO / Independent contribution", "GRPO / Swap-based contribution (non-causal)",
                                         "GRPO / CausalSwap reward (ours)"]
    assert all(c.missing and "verl" in c.missing for c in t7[3:]) and all(c.sets["estimator"] == "ppo" for c in t7[3:])
    t8 = cells(ReproduceConfig(table=8, model="m"))
    assert [c.sets["reward_signal"] for c in t8] == ["observed", "user_knn", "item_knn", "critic", "critic"]
    assert [c.sets.get("uncertainty") for c in t8] == [False, None, None, False, True]
    t1 = cells(ReproduceConfig(table=1, model="m"))
    assert next(c for c in t1 if c.label == "GPT-4o").missing  # no OpenAI model given
    assert [c.algo for c in t1 if c.algo] == ["rec-r1", "rank-grpo", "flexrec"]
    # Tables 2 and 6 train on interest and test on niche / trend; Table 3 is product search
    assert ReproduceConfig(table=2, model="m").test_needs == ("niche",)
    assert ReproduceConfig(table=6, model="m").test_needs == ("trend",)
    assert ReproduceConfig(table=2, model="m").train_need == "interest"
    t3 = ReproduceConfig(table=3, model="m", dataset="esci")
    assert t3.train_need == t3.test_needs[0] == "search" and cells(t3)[0].missing
    assert ReproduceConfig(figure=3, model="m", dataset="toy").test_needs == ("toy",)
    t9 = cells(ReproduceConfig(table=9, model="m"))
    assert [c.label for c in t9][-3:] == ["Qwen2.5-3B + PPO", "Qwen2.5-3B + Rec-R1", "Qwen2.5-3B + Rank-GRPO"]
    f2 = ReproduceConfig(figure=2, model="m")
    assert f2.test_needs == ("interest", "niche", "trend")
    assert cells(f2)[0].train_needs == ("interest", "niche", "trend") and cells(f2)[-1].base
    f3 = cells(ReproduceConfig(figure=3, model="m"))
    assert [c.algo for c in f3] == ["rec-r1", "rank-grpo", "flexrec", "flexrec", "flexrec", None]
    assert [c.sets.get("item_reward") for c in f3 if c.algo == "flexrec"] == ["independent", "noncausal_swap",
                                                                              "causal_swap"]
    for bad, match in (({"table": 4}, "Table 4 is the critic's"), ({"figure": 1}, "the method's diagram"),
                       ({}, "exactly one of"), ({"table": 1, "figure": 2}, "exactly one of"),
                       ({"table": 1, "seeds": 0}, "--seeds")):
        with pytest.raises(FlexRecError, match=match):
            cells(ReproduceConfig(model="m", **bad))


def test_paper_numbers_sit_beside_ours():
    rep = _reported()
    assert paper_numbers(rep, ReproduceConfig(table=7, model="m"), "GRPO / CausalSwap reward (ours)")["ndcg@5"] == 0.607
    kuairec = ReproduceConfig(table=1, model="m", dataset="kuairec")
    assert paper_numbers(rep, kuairec, "Qwen2.5-3B-Instruct + FlexRec")["mrr@5"] == 0.840
    assert paper_numbers(rep, ReproduceConfig(table=1, model="m"), "Qwen2.5-3B-Instruct + FlexRec") == {}  # no ML-100K
    assert paper_numbers(rep, ReproduceConfig(table=2, model="m", dataset="ml-1m"), "STAR")["ndcg@10"] == 0.791
    assert paper_numbers(rep, ReproduceConfig(table=9, model="m", dataset="kuairec"), "Qwen2.5-3B + SFT")["ndcg@5"] == 0.585
    table = {"kind": "table", "number": 8, "model": "m", "dataset": "ml-100k", "train_need": "interest",
             "test_needs": ["interest"], "miniature": False, "seeds": 1, "metrics": ["ndcg@5"], "paper_dataset": "",
             "rows": [{"label": "Raw critic", "missing": None, "paper": {"ndcg@5": 0.566},
                       "needs": {"interest": {"metrics": {"ndcg@5": {"mean": 0.5, "ci95": [0.4, 0.6]}},
                                              "metrics_over_all": {"ndcg@5": {"mean": 0.45, "ci95": [0.35, 0.55]}}}},
                       "vs_base": {"interest": {"ndcg@5": {"mean_diff": 0.1, "p_fisher": 0.004}}}},
                      {"label": "Item-KNN CF", "missing": "why", "needs": {}, "paper": {"ndcg@5": 0.417}}]}
    md = markdown(table)
    # ours (defined instances), then the paper-comparable mean over all instances, then the paper's value
    assert "| Raw critic | 0.500 [0.400, 0.600] | 0.450 [0.350, 0.550] | 0.566 | +0.100 (p 0.004) |" in md
    assert "| Item-KNN CF | not run |  | 0.417 |  |" in md
    assert "- Item-KNN CF: why" in md


@pytest.mark.slow
def test_table7_miniature_runs_every_cell_it_can_and_resumes(tiny_model, ml100k, tmp_path):
    args = ["reproduce", "--table", "7", "--model", str(tiny_model), "--data", str(ml100k), "--out", str(tmp_path),
            "--miniature", "--limit", "8", "--bootstrap", "100", "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "3 of 6 cells run" in r.output
    out = tmp_path / "table7"
    table = json.loads((out / "table7.json").read_text())
    ran = [row for row in table["rows"] if not row["missing"]]
    assert [row["axes"]["item_reward"] for row in ran] == ["independent", "noncausal_swap", "causal_swap"]
    for row in ran:
        got = row["needs"]["interest"]
        assert row["runs"][0]["results"]["interest"]["instances"] == 8 and got["metrics"]["ndcg@5"]["ci95"] is not None
        assert got["metrics_over_all"]["ndcg@5"]["mean"] <= got["metrics"]["ndcg@5"]["mean"]
        assert row["paper"]["ndcg@5"] > 0
    # each trained cell ran with its own axis value
    runs = tmp_path / "runs" / "ml-100k" / "interest"
    item_rewards = sorted(json.loads(p.read_text())["flexrec"]["item_reward"] for p in runs.glob("*/seed0/train_config.json"))
    assert item_rewards == ["causal_swap", "independent", "noncausal_swap"]
    md = (out / "table7.md").read_text()
    assert "| GRPO / CausalSwap reward (ours) | " in md and "| PPO / CausalSwap reward (ours) | not run |  | 0.621 |" in md
    assert (out / "table7.png").stat().st_size > 5000
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/seed0/final/config.json")}
    scored = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("results.json")}
    r = runner.invoke(app, args)  # a re-run reuses the finished cells and their scores
    assert r.exit_code == 0, r.output
    assert stamps and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(scored) == 3 and {p: p.stat().st_mtime_ns for p in scored} == scored


@pytest.mark.slow
def test_table2_and_figure2_run_in_miniature(tiny_model, ml100k, tmp_path):
    """Table 2 trains on interest and tests on niche; Figure 2 trains one model on all three needs
    beside one per need, and tests each on every need. Both on CPU, in miniature."""
    common = ["--model", str(tiny_model), "--data", str(ml100k), "--out", str(tmp_path), "--miniature", "--limit", "6",
              "--bootstrap", "100", "--quiet"]
    r = runner.invoke(app, ["reproduce", "--figure", "2", *common])
    assert r.exit_code == 0, r.output
    fig = json.loads((tmp_path / "figure2" / "figure2.json").read_text())
    joint = fig["rows"][0]
    assert joint["train_needs"] == ["interest", "niche", "trend"] and set(joint["needs"]) == {"interest", "niche", "trend"}
    cfg = json.loads((tmp_path / "runs" / "ml-100k" / "interest+niche+trend" / _slug(joint["label"]) / "seed0" /
                      "train_config.json").read_text())
    assert cfg["flexrec"]["needs"] == ["interest", "niche", "trend"]
    assert "vs_base" in joint and (tmp_path / "figure2" / "figure2.png").stat().st_size > 5000
    r = runner.invoke(app, ["reproduce", "--table", "2", *common])
    assert r.exit_code == 0, r.output
    t2 = json.loads((tmp_path / "table2" / "table2.json").read_text())
    assert t2["train_need"] == "interest" and t2["test_needs"] == ["niche"]
    ran = [row for row in t2["rows"] if not row["missing"]]
    assert {row["label"] for row in ran} >= {"BERT4Rec", "STAR", "Qwen2.5-3B-Instruct + TALLRec",
                                            "Qwen2.5-3B-Instruct + FlexRec"}
    flex = next(row for row in ran if row["label"].endswith("FlexRec"))
    train_cfg = json.loads((tmp_path / "runs" / "ml-100k" / "interest" / _slug(flex["label"]) / "seed0" /
                            "train_config.json").read_text())
    assert train_cfg["flexrec"]["needs"] == ["interest"] and "niche" in train_cfg["flexrec"]["eval_needs"]
    assert "## test need: niche" in (tmp_path / "table2" / "table2.md").read_text()


def _slug(label: str) -> str:
    from reproduce.cells import slug

    return slug(label)


@pytest.mark.slow
def test_table8_miniature_runs_on_the_toy_with_its_critic(tiny_model, tmp_path):
    """Table 8's grid on the sparse toy with the critic of known noise: the observed-labels row and
    both critic rows train (the critic's imputations reach their rewards), the KNN rows say why not."""
    from flexrec_bench.datasets.toy import write_toy_build, write_toy_critic

    data = tmp_path / "data"
    write_toy_build(data, {"train": 40, "val": 8, "test": 8}, observed_fraction=0.25)
    critic = write_toy_critic(data)
    r = runner.invoke(app, ["reproduce", "--table", "8", "--model", str(tiny_model), "--dataset", "toy", "--need", "toy",
                            "--data", str(data), "--out", str(tmp_path / "out"), "--critic", str(critic),
                            "--miniature", "--bootstrap", "100", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "3 of 5 cells run" in r.output
    table = json.loads((tmp_path / "out" / "table8" / "table8.json").read_text())
    ran = {row["label"]: row for row in table["rows"] if not row["missing"]}
    assert list(ran) == ["Observed labels only (ours: no imputation)", "Raw critic", "FlexRec: Uncertainty-aware Critic"]
    runs = tmp_path / "out" / "runs" / "toy" / "toy"
    cfgs = {p.parts[-3]: json.loads(p.read_text())["flexrec"] for p in runs.glob("*/seed0/train_config.json")}
    assert {c["reward_signal"] for c in cfgs.values()} == {"observed", "critic"}
    weighted = cfgs["flexrec-uncertainty-aware-critic"]
    assert weighted["uncertainty"] is True and weighted["critic"] == str(critic)
    log = [json.loads(line) for line in (runs / "flexrec-uncertainty-aware-critic" / "seed0" / "train_log.jsonl").open()]
    assert any("flexrec/adv_weight_min" in row for row in log)   # the weight acted on the critic's variances


def test_rows_pick_cells_by_their_words_and_keep_the_base_model():
    from reproduce.cells import select_rows

    f3 = cells(ReproduceConfig(figure=3, model="m"))
    assert [c.label for c in select_rows(f3, "rec-r1, causalswap")] == [
        "Sequence-level GRPO (Rec-R1)", "CausalSwap (FlexRec)", "Base model (step 0)"]
    assert select_rows(f3, None) == f3
    t1 = cells(ReproduceConfig(table=1, model="m"))
    assert [c.label for c in select_rows(t1, "star")] == ["STAR"]  # no trained row: no base model added
    # an exact name wins over the rows that start with it
    assert [c.label for c in select_rows(t1, "qwen2.5-3b-instruct")] == ["Qwen2.5-3B-Instruct"]
    assert [c.label for c in select_rows(t1, "FlexRec")] == ["Qwen2.5-3B-Instruct", "Qwen2.5-3B-Instruct + FlexRec"]
    with pytest.raises(FlexRecError, match=r"'grpo' matches 2 rows \(sequence-level-grpo-rec-r1, rank-level-rank-grpo\)"):
        select_rows(f3, "grpo")
    with pytest.raises(FlexRecError, match=r"'rec-r2' matches no row \(did you mean 'rec-r1'\?\)"):
        select_rows(f3, "rec-r2")


def test_eval_options_go_to_the_llm_cells_only_and_the_page_says_them():
    from reproduce.grid import _eval_options

    cfg = ReproduceConfig(figure=3, model="m", options={"constrained": "true"}, miniature=True)
    assert _eval_options(cfg, "hf:m") == {"max_new_tokens": "16", "constrained": "true"}
    assert _eval_options(cfg, "openai:gpt") == {"constrained": "true"}
    assert _eval_options(cfg, "star") == _eval_options(cfg, "bert4rec:x") == {}
    table = {"kind": "figure", "number": 3, "model": "m", "dataset": "ml-100k", "train_need": "interest",
             "test_needs": ["interest"], "miniature": False, "seeds": 1, "metrics": ["ndcg@5"], "paper_dataset": None,
             "rows_selected": "causalswap", "sets": {"lora": "true"},
             "options": {"constrained": "true", "api_key": "sk-live-secret-123"},
             "rows": [{"label": "Base model (step 0)", "missing": None, "paper": {},
                       "runs": [{"results": {"interest": {"echo_share": 0.75}}}],
                       "needs": {"interest": {"metrics": {"ndcg@5": {"mean": 0.5, "ci95": [0.4, 0.6]}},
                                              "metrics_over_all": {"ndcg@5": {"mean": 0.45, "ci95": [0.35, 0.55]}}}}}]}
    md = markdown(table)
    assert "Rows run: `--rows causalswap`" in md and "`--set` for every trained cell: `lora=true`" in md
    assert "`constrained=true`" in md and "sk-live-secret-123" not in md
    assert md.rstrip().endswith("| 0.75 |")  # the echo share of the presented order


def test_rows_that_match_nothing_fail_in_one_line(tmp_path):
    """A typo in --rows is reported before anything is checked, loaded or written."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "from flexrec_bench.cli import main; main()", "reproduce", "--figure",
                        "3", "--model", "m", "--data", str(tmp_path / "none"), "--rows", "causal-swop",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--rows 'causal-swop' matches no row (did you mean 'causalswap'?)" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_figure3_runs_the_rows_named_with_the_constrained_decoder(tiny_model, ml100k, tmp_path):
    """`--rows` runs part of a grid (the base model with it); `-o` reaches every LLM cell's
    evaluation; the curves and the table carry the echo share of the presented order."""
    args = ["reproduce", "--figure", "3", "--model", str(tiny_model), "--data", str(ml100k), "--out", str(tmp_path),
            "--miniature", "--limit", "6", "--bootstrap", "100", "--quiet", "--rows", "causalswap",
            "-o", "constrained=true", "--set", "constrained_decoding=true"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "2 of 2 cells run" in r.output
    fig = json.loads((tmp_path / "figure3" / "figure3.json").read_text())
    assert [row["label"] for row in fig["rows"]] == ["CausalSwap (FlexRec)", "Base model (step 0)"]
    assert [p.name for p in (tmp_path / "runs" / "ml-100k" / "interest").iterdir()] == ["causalswap-flexrec"]
    for row in fig["rows"]:
        res = row["runs"][0]["results"]["interest"]
        assert json.loads(open(res["path"]).read())["model"]["config"]["constrained"] is True
        assert 0 <= res["echo_share"] <= 1
    assert fig["options"] == {"constrained": "true"} and "vs_base" in fig["rows"][0]
    curve = fig["curves"]["CausalSwap (FlexRec)"]
    assert curve["steps"] and len(curve["echo"]["mean"]) == len(curve["steps"])
    assert curve["format_ok"]["mean"] == [1.0] * len(curve["steps"])  # the constraint writes only permutations
    md = (tmp_path / "figure3" / "figure3.md").read_text()
    assert "`-o` for every LLM cell: `constrained=true`" in md and "| echo |" in md


def test_a_finished_cell_is_not_scored_again_unless_its_configuration_changed(ml100k, tmp_path):
    from flexrec_bench.scoring.eval_config import EvalConfig
    from reproduce.grid import evaluate_cell

    cfg = EvalConfig(model="popularity", data=str(ml100k), out=str(tmp_path), limit=6, bootstrap=0)
    res, path = evaluate_cell(cfg, progress=False)
    stamp = path.stat().st_mtime_ns
    again, same = evaluate_cell(EvalConfig(model="popularity", data=str(ml100k), out=str(tmp_path), limit=6,
                                           bootstrap=0), progress=False)
    assert same == path and path.stat().st_mtime_ns == stamp and again.metrics == res.metrics
    more, _ = evaluate_cell(EvalConfig(model="popularity", data=str(ml100k), out=str(tmp_path), limit=8,
                                       bootstrap=0), progress=False)
    assert more.dataset.instances == 8 and path.stat().st_mtime_ns != stamp  # another limit: scored anew


def test_options_an_llm_ranker_does_not_take_fail_before_any_training(tiny_model, ml100k, tmp_path):
    """-o is checked against the grid's LLM rankers first: no cell trains, and the key is not echoed."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "from flexrec_bench.cli import main; main()", "reproduce", "--figure",
                        "3", "--model", str(tiny_model), "--data", str(ml100k), "--rows", "causalswap", "--miniature",
                        "-o", "api_key=sk-never-shown-123", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "model 'hf' does not take option(s) api_key" in r.stderr and "sk-never-shown-123" not in r.stderr + r.stdout
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.slow
def test_jobs_train_the_seeds_side_by_side_and_the_table_reuses_them(tiny_model, ml100k, tmp_path):
    """`--jobs 2`: two seeds of a cell train at the same time in their own processes, and the table is
    assembled from their runs and results (nothing is trained or scored twice)."""
    args = ["reproduce", "--figure", "3", "--model", str(tiny_model), "--data", str(ml100k), "--out", str(tmp_path),
            "--miniature", "--limit", "6", "--bootstrap", "100", "--quiet", "--rows", "causalswap", "--seeds", "2",
            "--jobs", "2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    fig = json.loads((tmp_path / "figure3" / "figure3.json").read_text())
    assert [len(row["runs"]) for row in fig["rows"]] == [2, 1]
    runs = tmp_path / "runs" / "ml-100k" / "interest" / "causalswap-flexrec"
    span = {s: ((runs / s / "train_config.json").stat().st_mtime, (runs / s / "final" / "config.json").stat().st_mtime)
            for s in ("seed0", "seed1")}
    assert span["seed0"][0] < span["seed1"][1] and span["seed1"][0] < span["seed0"][1]  # they overlapped
    scored = [Path(run["results"]["interest"]["path"]).stat().st_mtime for row in fig["rows"] for run in row["runs"]]
    again = runner.invoke(app, args)  # everything reused: the same results files, untouched
    assert again.exit_code == 0, again.output
    assert [Path(run["results"]["interest"]["path"]).stat().st_mtime for row in fig["rows"] for run in row["runs"]] == scored


def test_a_failing_worker_is_named_in_one_error():
    from reproduce.grid import in_parallel

    assert in_parallel([(abs, (-2,)), (abs, (3,))], jobs=2, progress=False) == [2, 3]
    assert in_parallel([(abs, (-2,))], jobs=1, progress=False) == [2]
    with pytest.raises(FlexRecError, match="int failed in its worker: invalid literal"):
        in_parallel([(int, ("x",))], jobs=2, progress=False)
    with pytest.raises(FlexRecError, match="--jobs must be >= 1"):
        ReproduceConfig(model="m", figure=3, jobs=0).kind


def test_rows_name_the_model_run_and_keep_the_papers_row():
    from reproduce.report import row_name

    assert row_name("Qwen2.5-3B-Instruct + FlexRec", "/m/smollm2-135m-instruct-b179") == \
        "smollm2-135m-instruct-b179 + FlexRec (paper: Qwen2.5-3B-Instruct + FlexRec)"
    assert row_name("Qwen2.5-3B + SFT", "hf:/x/tiny") == "tiny + SFT (paper: Qwen2.5-3B + SFT)"
    assert row_name("Qwen2.5-3B-Instruct + Rec-R1", "Qwen/Qwen2.5-3B-Instruct") == "Qwen2.5-3B-Instruct + Rec-R1"
    assert row_name("STAR", "/m/tiny") == "STAR"
    table = {"kind": "table", "number": 1, "model": "/m/tiny", "dataset": "ml-100k", "train_need": "interest",
             "test_needs": ["interest"], "miniature": True, "seeds": 1, "metrics": ["ndcg@5"], "paper_dataset": None,
             "rows": [{"label": "Qwen2.5-3B-Instruct + FlexRec", "missing": "why", "needs": {}, "paper": {}}]}
    assert "| tiny + FlexRec (paper: Qwen2.5-3B-Instruct + FlexRec) | not run |" in markdown(table)


def test_a_metric_defined_on_no_instance_leaves_vs_base_blank():
    """A tiny --limit can leave NDCG undefined on every shared instance: no mean difference, no crash."""
    table = {"kind": "figure", "number": 3, "model": "/m/tiny", "dataset": "ml-100k", "train_need": "interest",
             "test_needs": ["interest"], "miniature": True, "seeds": 1, "metrics": ["ndcg@5"], "paper_dataset": None,
             "rows": [{"label": "CausalSwap (FlexRec)", "missing": None, "paper": {},
                       "needs": {"interest": {"metrics": {"ndcg@5": {"mean": None, "ci95": None}},
                                              "metrics_over_all": {"ndcg@5": {"mean": 0.0, "ci95": [0.0, 0.0]}}}},
                       "vs_base": {"interest": {"ndcg@5": {"mean_diff": None, "p_fisher": None}}}}]}
    assert "| CausalSwap (FlexRec) |" in markdown(table)
