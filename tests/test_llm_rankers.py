from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval
from flexrec_bench.scoring.results import ResultsFile
from conftest import JSONHandler


@pytest.mark.slow
def test_hf_tiny_model_end_to_end(ml100k, tiny_model, tmp_path):
    r = CliRunner().invoke(app, ["eval", "--model", f"hf:{tiny_model}", "--data", str(ml100k), "--out", str(tmp_path),
                                 "--limit", "4", "--quiet", "-o", "batch_size=2", "-o", "max_new_tokens=12"])
    assert r.exit_code == 0, r.output
    files = list(tmp_path.rglob("results.json"))
    assert len(files) == 1
    res = ResultsFile.model_validate_json(files[0].read_text())
    assert res.parse.instances == 4 and res.model.revision.startswith("local-")
    assert res.model.config["max_new_tokens"] == 12
    import pyarrow.parquet as pq

    t = pq.read_table(files[0].parent / "rankings.parquet").to_pandas()
    assert len(t) == 4 and all(len(x) == 30 for x in t["ranked"]) and "output" in t.columns
    assert "reasoning" in t.columns  # the think text, kept beside the raw output


class _FakeOpenAI(JSONHandler):
    calls: list = []
    fail_first = 0
    delay = 0.0
    inflight = 0
    max_inflight = 0
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.calls.append(body)
            cls.inflight += 1
            cls.max_inflight = max(cls.max_inflight, cls.inflight)
        try:
            if cls.delay:
                import time

                time.sleep(cls.delay)
            self._answer(body)
        finally:
            with cls.lock:
                cls.inflight -= 1

    def _answer(self, body):
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.reply(429, headers={"Retry-After": "0"})
            return
        if not self.headers.get("Authorization", "").startswith("Bearer sk-test"):
            self.reply(401, {"error": "bad key"})
            return
        k = body["messages"][1]["content"].count("\n[C")
        answer = "<answer>" + ", ".join(f"C{i}" for i in range(k, 0, -1)) + "</answer>"
        self.reply(200, {"model": body["model"], "choices": [{"message": {"role": "assistant", "content": answer}}]})


@pytest.fixture
def fake_openai():
    _FakeOpenAI.calls, _FakeOpenAI.fail_first, _FakeOpenAI.delay, _FakeOpenAI.max_inflight = [], 0, 0.0, 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_openai_ranker_retries_caches_and_resumes(ml100k, tmp_path, fake_openai):
    _FakeOpenAI.fail_first = 1
    opts = {"base_url": fake_openai, "api_key": "sk-test", "cache_dir": str(tmp_path / "cache"),
            "requests_per_minute": "0", "batch_size": "2"}
    cfg = EvalConfig(model="openai:gpt-4o", data=str(ml100k), out=str(tmp_path / "res"), limit=3, options=opts,
                     bootstrap=0)
    res, _, _ = run_eval(cfg, progress=False)
    assert len(_FakeOpenAI.calls) == 4  # one 429 retried
    assert res.parse.complete == 3 and res.parse.missing_items == 0
    assert _FakeOpenAI.calls[-1]["model"] == "gpt-4o" and _FakeOpenAI.calls[-1]["temperature"] == 0.0
    run_eval(cfg, progress=False)  # a re-run (or a resumed crash) is served from the cache
    assert len(_FakeOpenAI.calls) == 4


def test_openai_ranker_sends_requests_concurrently_and_a_rerun_sends_none(ml100k, tmp_path, fake_openai):
    _FakeOpenAI.delay = 0.2
    opts = {"base_url": fake_openai, "api_key": "sk-test", "cache_dir": str(tmp_path / "c")}  # defaults otherwise
    cfg = EvalConfig(model="openai:gpt-4o", data=str(ml100k), out=str(tmp_path / "res"), limit=40, options=opts,
                     bootstrap=0)
    res, _, _ = run_eval(cfg, progress=False)
    assert len(_FakeOpenAI.calls) == 40 and res.parse.complete == 40
    assert 8 <= _FakeOpenAI.max_inflight <= 16  # bounded concurrency (default 16)
    assert res.model.config["concurrency"] == 16 and res.model.config["requests_per_minute"] == 0.0
    run_eval(cfg, progress=False)
    assert len(_FakeOpenAI.calls) == 40  # the rerun was served from the cache
    _FakeOpenAI.max_inflight = 0
    opts1 = {**opts, "cache_dir": str(tmp_path / "c1"), "concurrency": "1"}
    run_eval(EvalConfig(model="openai:gpt-4o", data=str(ml100k), out=str(tmp_path / "r1"), limit=3, options=opts1,
                        bootstrap=0), progress=False)
    assert _FakeOpenAI.max_inflight == 1


def test_openai_ranker_rate_limit_spaces_requests(ml100k, tmp_path, fake_openai):
    import time

    opts = {"base_url": fake_openai, "api_key": "sk-test", "cache_dir": str(tmp_path / "c"),
            "requests_per_minute": "300"}  # one request every 0.2 s
    t0 = time.monotonic()
    run_eval(EvalConfig(model="openai:gpt-4o", data=str(ml100k), out=str(tmp_path), limit=4, options=opts, bootstrap=0),
             progress=False)
    assert len(_FakeOpenAI.calls) == 4 and time.monotonic() - t0 >= 0.6


def test_openai_ranker_bad_key_is_a_clear_error(ml100k, tmp_path, fake_openai):
    opts = {"base_url": fake_openai, "api_key": "wrong", "cache_dir": str(tmp_path / "c")}
    with pytest.raises(FlexRecError, match="HTTP 401"):
        run_eval(EvalConfig(model="openai:gpt-4o", data=str(ml100k), out=str(tmp_path), limit=1, options=opts),
                 progress=False)


def test_vllm_missing_is_reported(ml100k, tmp_path):
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm installed")
    except ImportError:
        pass
    with pytest.raises(FlexRecError, match=r"pip install 'flexrec-bench\[vllm\]'"):
        run_eval(EvalConfig(model="vllm:some/model", data=str(ml100k), out=str(tmp_path), limit=1), progress=False)


def test_model_argument_rules(ml100k, tmp_path):
    with pytest.raises(FlexRecError, match="needs an argument"):
        run_eval(EvalConfig(model="hf", data=str(ml100k), out=str(tmp_path)), progress=False)
    with pytest.raises(FlexRecError, match="takes no argument"):
        run_eval(EvalConfig(model="star:x", data=str(ml100k), out=str(tmp_path)), progress=False)
    with pytest.raises(FlexRecError, match="does not take option"):
        run_eval(EvalConfig(model="star", data=str(ml100k), out=str(tmp_path), options={"bogus": "1"}), progress=False)


def test_api_keys_never_reach_results_cache_or_leaderboard(ml100k, tmp_path, fake_openai, monkeypatch):
    from leaderboard.submit import submit

    secret = "sk-test-SECRET123"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ENVSECRET456")
    opts = {"base_url": fake_openai, "api_key": secret, "cache_dir": str(tmp_path / "cache"), "requests_per_minute": "0"}
    res, _, path = run_eval(EvalConfig(model="openai:gpt-4o", data=str(ml100k), out=str(tmp_path / "res"), options=opts,
                                       bootstrap=100), progress=False)
    assert res.config["options"]["api_key"] == "<redacted>"

    (tmp_path / "lb").mkdir()
    from conftest import register_build

    register_build(tmp_path / "lb" / "leaderboard.json", ml100k)
    submit(path, tmp_path / "lb" / "leaderboard.json", ml100k)
    from leaderboard.render import render
    from leaderboard.submit import load

    render(load(tmp_path / "lb" / "leaderboard.json"), tmp_path / "site")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "leaderboard.json" for p in files) and any(p.suffix == ".json" for p in (tmp_path / "cache").rglob("*"))
    for p in files:
        blob = p.read_bytes()
        for s in (b"SECRET123", b"ENVSECRET456"):
            assert s not in blob, (p, s)


def test_redaction_rule():
    from flexrec_bench.foundation.secrets import redact

    got = redact({"api_key": "a", "apiKey": "b", "hf_token": "c", "max_new_tokens": 9, "keys_seen": 3,
                  "base_url": "https://u:pw@host/v1", "nested": [{"client_secret": "d"}], "token": None})
    assert got == {"api_key": "<redacted>", "apiKey": "<redacted>", "hf_token": "<redacted>", "max_new_tokens": 9,
                   "keys_seen": 3, "base_url": "https://<redacted>@host/v1", "nested": [{"client_secret": "<redacted>"}],
                   "token": None}


def test_llm_schedules_batch_as_asked_and_outputs_stay_in_instance_order(ml100k):
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.ranking.prompts import split_messages
    from flexrec_bench.ranking.rankers.hf import HFRanker
    from flexrec_bench.ranking.rankers.llm import LLMRanker
    from flexrec_bench.ranking.rankers.vllm import VLLMRanker

    split = load_split(ml100k, "ml-100k", "interest", "test").head(7)

    class Echo(HFRanker):  # the hf ranker's schedule, a fake model
        def generate(self, batch, max_new_tokens):
            self.batches.append(len(batch))
            return ["<answer>C1</answer>" + m[-1]["content"][-30:] for m in batch]

    ranker = Echo("fake", batch_size=3, progress=False)
    ranker.batches = []
    ranker.count_tokens = lambda text: None
    res = ranker.rank(split)
    assert ranker.batches == [3, 3, 1]
    for i in range(7):  # each output sits with its own instance, whatever the batch order
        assert res.outputs[i].endswith(split_messages(split, i, ranker.prompt)[-1]["content"][-30:])
    msgs = [split_messages(split, i, ranker.prompt) for i in range(7)]
    lengths = [sum(len(m["content"]) for m in msg) for msg in msgs]
    flat = [i for b in ranker.schedule(msgs) for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    assert LLMRanker.schedule(ranker, msgs) == [[0, 1, 2], [3, 4, 5], [6]]  # the default: consecutive
    assert VLLMRanker.schedule(ranker, msgs) == [list(range(7))]  # vLLM: the whole split in one call


def test_hf_dtype_auto_is_fp32_on_cpu():
    import torch

    from flexrec_bench.ranking.rankers.hf import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(FlexRecError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


@pytest.fixture
def hub_down(monkeypatch):
    """HF_ENDPOINT at a closed local port (connections refused at once), HF_HUB_OFFLINE unset."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connections are refused at once
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    from flexrec_bench.ranking.models import hub_reachable

    assert not hub_reachable()


def test_hf_fails_fast_with_a_hint_when_the_hub_is_unreachable(ml100k, tmp_path, hub_down):
    t0 = time.monotonic()
    with pytest.raises(FlexRecError, match="^model hf:nobody/no-such-model-xyz: the Hugging Face hub cannot be reached .* HF_HUB_OFFLINE=1"):
        run_eval(EvalConfig(model="hf:nobody/no-such-model-xyz", data=str(ml100k), out=str(tmp_path), limit=1,
                            bootstrap=0), progress=False)
    assert time.monotonic() - t0 < 15  # not transformers' five retries with back-off (about 25 s)


def test_train_fails_fast_with_the_same_hint_when_the_hub_is_unreachable(ml100k, tmp_path, hub_down):
    from typer.testing import CliRunner

    from flexrec_bench.cli import app

    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["train", "--model", "nobody/no-such-model-xyz", "--data", str(ml100k),
                                 "--output-dir", str(tmp_path / "run"), "--max-steps", "1"])
    assert isinstance(r.exception, FlexRecError), r.output  # the CLI's entry point prints it as one line
    assert str(r.exception).startswith("--model nobody/no-such-model-xyz: the Hugging Face hub cannot be reached")
    assert time.monotonic() - t0 < 30  # not five retries with back-off
