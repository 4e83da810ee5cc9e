"""The hf ranker as a newcomer needs it: answers stop once every candidate is named, a wrong folder is
one line, a killed run resumes from its finished batches, and echoes of the presented order are
counted and warned about."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.ranking.permutations import ParseStats
from flexrec_bench.ranking.parsing import rank_text
from flexrec_bench.ranking.rankers.hf import AnswerComplete, HFRanker
from flexrec_bench.building.splits import load_split

runner = CliRunner()


def test_a_sequence_stops_once_it_has_named_every_candidate(tiny_model):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = tok("Candidates:", return_tensors="pt")["input_ids"]
    texts = ["<answer>C1, C2, C3", "<answer>C1, C2, C2, C9", "<answer>C2</answer>", "<answer>C3, C1"]
    rows = [torch.cat([prompt[0], tok(t, return_tensors="pt", add_special_tokens=False)["input_ids"][0]]) for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.nn.functional.pad(r, (0, width - len(r)), value=tok.pad_token_id) for r in rows])
    stop = AnswerComplete(tok, [3, 3, 3, 3], prompt.shape[1], every=1)
    done = stop(ids, None)
    # all three named; a repeat and an out-of-range id do not count; a closed answer stops; two of three go on
    assert done.tolist() == [True, False, True, False]


def test_a_folder_that_is_not_a_model_is_one_line(tmp_path):
    (tmp_path / "wheel").mkdir()
    (tmp_path / "wheel" / "Model.Q4_1.gguf").write_bytes(b"GGUF")
    with pytest.raises(FlexRecError, match=r"not a Hugging Face model folder.*flexrec-bench models install"):
        HFRanker(str(tmp_path / "wheel"))._load()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(FlexRecError, match=r"cannot load hf model") as exc:
        HFRanker(str(bad))._load()
    assert "\n" not in str(exc.value)


class Echo(HFRanker):
    """A fake model that writes the presented order, and can die after some batches."""

    die_after: int | None = None

    def generate(self, batch, max_new_tokens):
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after:
            raise KeyboardInterrupt("killed")
        return ["<answer>" + ", ".join(f"C{j + 1}" for j in range(k)) + "</answer>" for k in self.batch_sizes_k]


def test_a_killed_run_resumes_from_its_finished_batches(ml100k, tmp_path):
    split = load_split(ml100k, "ml-100k", "interest", "test").head(7)
    side = tmp_path / ".run.partial.jsonl"
    first = Echo("fake", batch_size=3, progress=False)
    first.calls, first.die_after, first.resume_path = 0, 2, side
    first.count_tokens = lambda text: None
    with pytest.raises(KeyboardInterrupt):
        first.rank(split)
    assert len(side.read_text().strip().splitlines()) == 3  # the header and two finished batches
    with open(side, "a") as f:
        f.write('{"cut-by-a-kil')  # a line the kill cut short
    again = Echo("fake", batch_size=3, progress=False)
    again.calls, again.resume_path = 0, side
    again.count_tokens = lambda text: None
    res = again.rank(split)
    assert again.calls == 1  # only the batch that never finished
    fresh = Echo("fake", batch_size=3, progress=False)
    fresh.calls = 0
    fresh.count_tokens = lambda text: None
    ref = fresh.rank(split)
    assert np.array_equal(res.order, ref.order) and res.outputs == ref.outputs
    other = Echo("fake", batch_size=3, progress=False, max_item_chars=99)  # another run: the side file is stale
    other.calls, other.resume_path = 0, side
    other.count_tokens = lambda text: None
    other.rank(split)
    assert other.calls == 3
    # the presented order, echoed: counted, and a warning line
    assert res.parse.echoed == 7 and res.parse.first_shown_first == 7 and res.parse.warnings()


def test_echo_and_first_position_counts():
    stats = ParseStats()
    rng = np.random.default_rng(0)
    rank_text("<answer>C1, C2, C3</answer>", 5, rng, stats)   # a prefix of the presented order
    rank_text("<answer>C2, C1, C3</answer>", 5, rng, stats)   # not an echo
    rank_text("<answer>C1</answer>", 5, rng, stats)           # one id is no echo, but the first shown first
    rank_text("nothing", 5, rng, stats)
    assert stats.echoed == 1 and stats.instances == 4 and 2 <= stats.first_shown_first <= 3
    assert stats.warnings() == []


def test_eval_keeps_no_side_file_after_success_and_prints_the_echo_line(ml100k, tmp_path, tiny_model):
    import torch

    before = torch.get_num_threads()
    r = runner.invoke(app, ["eval", "--model", f"hf:{tiny_model}", "--data", str(ml100k), "--limit", "2",
                            "--bootstrap", "0", "--out", str(tmp_path / "res"), "-o", "max_new_tokens=4",
                            "-o", "threads=1"])
    threads, _ = torch.get_num_threads(), torch.set_num_threads(before)
    assert r.exit_code == 0, r.output
    assert threads == 1
    assert "repeat the presented order" in r.output and "rank the first-shown candidate first" in r.output
    assert not list((tmp_path / "res").rglob("*.partial.jsonl"))
    res = json.loads(next((tmp_path / "res").rglob("results.json")).read_text())
    cfg = res["model"]["config"]
    assert cfg["training"] == "zero-shot" and cfg["stop_at_k"] is True and res["parse"]["echoed"] >= 0
