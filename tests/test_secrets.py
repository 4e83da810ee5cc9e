"""No planted secret reaches any file or stream that eval, submit, render, train (smoke), its
dry run, train-critic or train-baseline write: keys in ranker options, in the environment, in a
URL's user:password and query, and a hub token given to the trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest
from conftest import JSONHandler

PLANTED = ("PLANTEDKEY1", "PLANTEDPW2", "PLANTEDQ3", "PLANTEDHUB4", "PLANTEDENV5", "PLANTEDENV6")


class _Chat(JSONHandler):
    auth: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).auth.append(self.headers.get("Authorization", ""))
        k = body["messages"][1]["content"].count("\n[C")
        answer = "<answer>" + ", ".join(f"C{i}" for i in range(1, k + 1)) + "</answer>"
        self.reply(200, {"choices": [{"message": {"role": "assistant", "content": answer}}]})


def _cli(args, env, cwd):
    r = subprocess.run([sys.executable, "-m", "flexrec_bench.cli", *args], capture_output=True, text=True, env=env,
                       cwd=cwd, timeout=900)
    return r


@pytest.mark.slow
def test_planted_secrets_reach_no_file_and_no_stream(ml100k, tiny_model, tmp_path):
    import base64

    from conftest import register_build

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    env = {**os.environ, "FLEXREC_HOME": str(tmp_path / "home"), "OPENAI_API_KEY": "sk-PLANTEDENV5",
           "HF_TOKEN": "hf_PLANTEDENV6"}
    board = register_build(tmp_path / "lb" / "leaderboard.json", ml100k)
    streams = []
    try:
        # a key in the options and one in the URL's query
        r = _cli(["eval", "--model", "openai:gpt-4o", "--data", str(ml100k), "--out", str(tmp_path / "res"),
                  "--bootstrap", "100", "--quiet", "-o", "api_key=sk-PLANTEDKEY1",
                  "-o", f"base_url=http://127.0.0.1:{port}/v1?key=PLANTEDQ3"], env, tmp_path)
        assert r.returncode == 0, r.stderr
        streams.append(r)
        # credentials in the URL work, as basic authentication (no key at all here)
        no_key = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}
        r = _cli(["eval", "--model", "openai:gpt-4o-mini", "--data", str(ml100k), "--out", str(tmp_path / "res2"),
                  "--limit", "2", "--bootstrap", "0", "--quiet", "-o",
                  f"base_url=http://alice:PLANTEDPW2@127.0.0.1:{port}/v1"], no_key, tmp_path)
        assert r.returncode == 0, r.stderr
        assert _Chat.auth[-1] == "Basic " + base64.b64encode(b"alice:PLANTEDPW2").decode()
        streams.append(r)
        # an unreachable URL with credentials: the one-line error names the host, not the password
        r = _cli(["eval", "--model", "openai:gpt-4o", "--data", str(ml100k), "--out", str(tmp_path / "res3"),
                  "--limit", "1", "--quiet", "-o", "base_url=http://alice:PLANTEDPW2@127.0.0.1:9/v1",
                  "-o", "max_retries=0"], env, tmp_path)
        assert r.returncode == 2 and "cannot reach http://127.0.0.1:9/v1" in r.stderr and len(r.stderr.splitlines()) == 1
        streams.append(r)
    finally:
        srv.shutdown()
    results = next((tmp_path / "res").rglob("results.json"))
    for args in (["submit", str(results), "--leaderboard", str(board), "--data", str(ml100k)],
                 ["leaderboard", "--leaderboard", str(board)],
                 ["leaderboard", "render", "--leaderboard", str(board), "--out", str(tmp_path / "site")],
                 ["train", "--model", str(tiny_model), "--data", str(ml100k), "--preset", "smoke", "--max-steps", "1",
                  "--output-dir", str(tmp_path / "ck"), "--set", "hub_token=hf_PLANTEDHUB4", "--quiet"],
                 ["train", "--model", str(tiny_model), "--data", str(ml100k), "--dry-run",
                  "--set", "hub_token=hf_PLANTEDHUB4"],
                 ["train-critic", "--data", str(ml100k), "--out", str(tmp_path / "critic"), "--epochs", "1",
                  "--max-pairs", "300", "--quiet"],
                 ["train-baseline", "tallrec", "--model", str(tiny_model), "--data", str(ml100k), "--out",
                  str(tmp_path / "tallrec"), "--max-steps", "1", "--limit", "4", "--quiet"]):
        r = _cli(args, env, tmp_path)
        assert r.returncode == 0, (args[0], r.stderr[-2000:])
        streams.append(r)
    assert (tmp_path / "ck" / "final").exists() and list((tmp_path / "ck").rglob("training_args.bin"))
    for r in streams:
        for s in PLANTED:
            assert s not in r.stdout and s not in r.stderr, (r.args[3:5], s)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 50
    for p in files:
        blob = p.read_bytes()
        for s in PLANTED:
            assert s.encode() not in blob, (p.relative_to(tmp_path), s)
    saved = json.loads((tmp_path / "ck" / "train_config.json").read_text())
    assert saved["flexrec"]["trl"]["hub_token"] == "<redacted>"


def test_redaction_of_urls_and_free_text():
    from flexrec_bench.foundation.secrets import is_secret_name, redact, redact_text, redact_url, remember, split_credentials

    assert redact_url("https://u:pw@host:8/v1?key=abc&model=m") == "https://<redacted>@host:8/v1?key=<redacted>&model=m"
    assert redact_url("https://host/v1?access_token=x") == "https://host/v1?access_token=<redacted>"
    assert not any(is_secret_name(n) for n in ("max_tokens", "instance_key", "keys_seen", "max_new_tokens"))
    assert all(is_secret_name(n) for n in ("api_key", "apiKey", "hub_token", "key", "password", "Authorization"))
    remember("sk-free-text-secret")
    assert redact_text("failed with sk-free-text-secret at http://a:b@h/x") == \
        "failed with <redacted> at http://<redacted>@h/x"
    assert redact({"note": "token sk-free-text-secret", "instance_key": "i|1"}) == \
        {"note": "token <redacted>", "instance_key": "i|1"}
    assert split_credentials("http://al%40ice:p%3Aw@h:9/v1") == ("http://h:9/v1", ("al@ice", "p:w"))
    assert split_credentials("http://h/v1") == ("http://h/v1", None)
