from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexrec_bench.building.splits import load_split
from flexrec_bench.cli import app
from flexrec_bench.scoring.results import ResultsFile

runner = CliRunner()


@pytest.mark.slow
def test_bert4rec_trains_in_a_subprocess_and_scores_our_candidates(ml100k, tmp_path, monkeypatch, capfd):
    ck = tmp_path / "b4r"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # RecBole writes log/ and log_tensorboard/ where it runs: never here
    r = runner.invoke(app, ["train-baseline", "bert4rec", "--data", str(ml100k), "--out", str(ck), "--set", "epochs=2",
                            "--set", "n_layers=1", "--set", "hidden_size=16", "--set", "inner_size=32",
                            "--set", "MAX_ITEM_LIST_LENGTH=10"])
    assert r.exit_code == 0, r.output
    err = capfd.readouterr().err + r.output + (getattr(r, "stderr", "") or "")
    assert "bert4rec train: epoch 1 training" in err and "bert4rec train: epoch 2 training" in err  # streamed
    assert list(cwd.iterdir()) == []
    assert (ck / "train.log").exists()
    meta = json.loads((ck / "bert4rec.json").read_text())
    assert meta["overrides"]["hidden_size"] == 16 and meta["train_result"]["n_users"] > 700
    monkeypatch.chdir(tmp_path)  # a relative checkpoint path (the worker runs in its own folder)
    r = runner.invoke(app, ["eval", "--model", "bert4rec:b4r", "--data", str(ml100k), "--out", str(tmp_path / "res"),
                            "--quiet", "--bootstrap", "100"])
    assert r.exit_code == 0, r.output
    res = ResultsFile.model_validate_json(next((tmp_path / "res").rglob("results.json")).read_text())
    assert res.model.name == "bert4rec:b4r" and res.dataset.instances == 200
    assert res.metrics["ndcg@10"].mean > 0
    # --resume goes on from the checkpoint to more epochs: epoch 3 only, the first two are not redone
    r = runner.invoke(app, ["train-baseline", "bert4rec", "--data", str(ml100k), "--out", str(ck), "--set", "epochs=3",
                            "--set", "n_layers=1", "--set", "hidden_size=16", "--set", "inner_size=32",
                            "--set", "MAX_ITEM_LIST_LENGTH=10", "--resume"])
    assert r.exit_code == 0, r.output
    err = capfd.readouterr().err + r.output + (getattr(r, "stderr", "") or "")
    assert "epoch 3 training" in err and "epoch 1 training" not in err and "epoch 2 training" not in err
    assert json.loads((ck / "bert4rec.json").read_text())["train_result"]["start_epoch"] == 2
    # the main process never imported recbole
    import sys

    assert "recbole" not in sys.modules


def test_bert4rec_windows_are_the_training_sequences_cut_back_to_front(ml100k, tmp_path):
    """samples=windows: test and validation rows are leave-last-out; the training part of each
    sequence is covered by windows of max_len items, the newest first, stride apart."""
    import pyarrow.parquet as pq

    from baselines.bert4rec.runner import export_atomic

    d = export_atomic(ml100k, "ml-100k", tmp_path, "windows", max_len=8, stride=3)
    rows = {part: [line.rstrip("\n").split("\t") for line in (d / f"flexrec.{part}.inter").read_text().splitlines()[1:]]
            for part in ("train", "valid", "test")}
    inter = pq.read_table(ml100k / "ml-100k" / "interactions.parquet").to_pandas()
    inter = inter[inter["split"] == "train"].sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    seqs = {str(u): [str(i) for i in g["item_id"]] for u, g in inter.groupby("user_id", sort=False)}
    u, seq = next((u, s) for u, s in seqs.items() if len(s) > 20)
    assert [r for r in rows["test"] if r[0] == u] == [[u, " ".join(seq[-8:-1]), seq[-1]]]  # max_len - 1 + the mask
    assert [r for r in rows["valid"] if r[0] == u] == [[u, " ".join(seq[-9:-2]), seq[-2]]]
    wins = [r[1].split() for r in rows["train"] if r[0] == u]
    train = seq[:-2]
    assert wins[0] == train[-8:] and wins[1] == train[-11:-3]  # newest first, 3 apart
    assert all(len(w) <= 8 for w in wins) and wins[-1][0] == train[0]  # the oldest item is in a window
    assert len(rows["test"]) == sum(len(s) >= 2 for s in seqs.values())
    with pytest.raises(Exception, match="window_stride=9: expected 1..MAX_ITEM_LIST_LENGTH"):
        export_atomic(ml100k, "ml-100k", tmp_path / "x", "windows", max_len=8, stride=9)


@pytest.mark.slow
def test_bert4rec_trains_on_windows_and_scores(ml100k, tmp_path):
    ck = tmp_path / "b4w"
    r = runner.invoke(app, ["train-baseline", "bert4rec", "--data", str(ml100k), "--out", str(ck), "--set", "epochs=1",
                            "--set", "samples=windows", "--set", "n_layers=1", "--set", "hidden_size=16",
                            "--set", "inner_size=32", "--set", "MAX_ITEM_LIST_LENGTH=10", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (ck / "atomic" / "flexrec" / "flexrec.train.inter").exists()
    r = runner.invoke(app, ["eval", "--model", f"bert4rec:{ck}", "--data", str(ml100k), "--out", str(tmp_path / "res"),
                            "--quiet", "--bootstrap", "0"])
    assert r.exit_code == 0, r.output
    res = ResultsFile.model_validate_json(next((tmp_path / "res").rglob("results.json")).read_text())
    assert res.metrics["ndcg@10"].mean > 0


def test_recbole_compat_is_contained():
    """Importing the shim changes nothing; apply() (run only in RecBole's worker) supplies the
    aliases NumPy 2 removed and leaves NumPy 1.x's own ones alone; this process stays unpatched."""
    import subprocess
    import sys

    import numpy as np

    code = (
        "import numpy as np\n"
        "names = ('float_', 'complex_', 'unicode_', 'bool8')\n"
        "before = {n: getattr(np, n, None) for n in names}\n"
        "from baselines.bert4rec import compat\n"
        "assert {n: getattr(np, n, None) for n in names} == before, 'importing applied something'\n"
        "compat.apply()\n"
        "assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.bool8 is np.bool_\n"
        "assert all(before[n] is None or getattr(np, n) is before[n] for n in names)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    if int(np.__version__.split(".")[0]) >= 2:
        assert not hasattr(np, "float_")  # nothing in this test process applied the shim


@pytest.mark.slow
def test_tallrec_lora_sft_checkpoint_loads_in_eval(ml100k, tiny_model, tmp_path):
    r = runner.invoke(app, ["train-baseline", "tallrec", "--model", str(tiny_model), "--data", str(ml100k), "--out",
                            str(tmp_path / "tallrec"), "--max-steps", "2", "--limit", "8", "--quiet"])
    assert r.exit_code == 0, r.output
    final = tmp_path / "tallrec" / "final"
    assert (final / "adapter_config.json").exists()
    cfg = json.loads((final / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16 and set(cfg["target_modules"]) == {"q_proj", "v_proj"}
    r = runner.invoke(app, ["eval", "--model", f"hf:{final}", "--data", str(ml100k), "--out", str(tmp_path / "res"),
                            "--limit", "2", "--quiet", "-o", "max_new_tokens=8"])
    assert r.exit_code == 0, r.output


def test_sft_shown_targets_follow_the_printed_counts_ties_in_the_presented_order(ml100k):
    """targets=shown (issue 46 part 4, ours): the completion is the order a reader of the prompt's
    numbers would write, highest count first, equal counts in the order the prompt shows them."""
    import numpy as np

    from flexrec_bench.foundation.errors import ConfigError
    from flexrec_bench.ranking.prompts import PromptConfig
    from training.sft import shown_scores, sft_rows

    trend = load_split(ml100k, "ml-100k", "trend", "train").head(40)
    count = trend.candidate_column("recent_count")
    assert (count[trend.mask] > 0).any() and (count[trend.mask] == 0).any()  # the fixture holds both
    rows = sft_rows([trend], PromptConfig(), targets="shown")
    for i, row in enumerate(rows):
        ids = [int(t.strip()[1:]) - 1 for t in row["completion"][0]["content"].split("<answer>")[1]
               .split("</answer>")[0].split(",")]
        valid = np.flatnonzero(trend.mask[i])
        want = sorted(valid, key=lambda j: (-count[i, j], j))
        assert ids == want, (i, ids, want)
    assert shown_scores(trend).shape == trend.mask.shape
    interest = load_split(ml100k, "ml-100k", "interest", "train").head(4)
    with pytest.raises(ConfigError, match="prints no number beside its candidates"):
        sft_rows([interest], PromptConfig(), targets="shown")
    with pytest.raises(ConfigError, match="one of ideal, shown, random"):
        sft_rows([trend], PromptConfig(), targets="oracle")


def test_tallrec_config_holds_the_paper_settings():
    from baselines.tallrec import tallrec_settings
    from flexrec_bench.foundation.errors import FlexRecError

    s = tallrec_settings()
    assert (s.lora, s.lora_r, s.lora_alpha, s.lora_dropout, s.target_modules) == (True, 8, 16, 0.05, ("q_proj", "v_proj"))
    assert tallrec_settings(max_steps=3).max_steps == 3
    with pytest.raises(FlexRecError, match="did you mean 'lora_r'"):
        tallrec_settings(lora_rr=4)


def test_unknown_baseline_points_to_the_right_command():
    r = runner.invoke(app, ["train-baseline", "rec-r1"])
    assert r.exit_code != 0
    msg = str(r.exception) + r.output
    assert "unknown baseline 'rec-r1'" in msg and "train --algo rec-r1" in msg


def test_a_recbole_failure_reports_its_cause_not_the_last_log_line(tmp_path):
    import json
    import signal

    import pytest as _pytest

    from baselines.bert4rec.runner import _cause, _run_worker
    from flexrec_bench.foundation.errors import FlexRecError

    spec = {"result_out": str(tmp_path / "train_result.json")}
    (tmp_path / "train_result.json.error").write_text(json.dumps({"type": "RuntimeError", "message": "CUDA out of memory",
                                                                  "where": "trainer.py:12"}))
    assert _cause(1, False, 60, spec) == "RuntimeError: CUDA out of memory (at trainer.py:12)"
    other = {"result_out": str(tmp_path / "x.json")}
    assert _cause(-signal.SIGKILL, False, 60, other) == "killed by SIGKILL (out of memory?)"
    assert _cause(-9, True, 60, other) == "stopped after its timeout of 60 s (timeout_s)"
    # a real worker that cannot finish in 1 s: the timeout is the cause, whatever it printed last
    with _pytest.raises(FlexRecError, match=r"RecBole train failed: (stopped after its timeout of 1 s|\w+Error: )"):
        _run_worker("train", {"data_path": str(tmp_path)}, tmp_path, 1)
