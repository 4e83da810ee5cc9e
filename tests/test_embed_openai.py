"""``--embedder openai:<model>`` against an OpenAI-compatible embeddings server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import numpy as np
import pytest
import rawfixtures as fx

from flexrec_bench.building.config import BuildConfig
from flexrec_bench.building.build import build
from flexrec_bench.building.embed import Embedder, hashing_embed
from flexrec_bench.foundation.errors import FlexRecError
from conftest import JSONHandler


class _Embeddings(JSONHandler):
    calls: list = []
    fail_first = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "n": len(body["input"]), "model": body["model"],
                                 "auth": self.headers.get("Authorization")})
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.reply(503, headers={"Retry-After": "0"})
            return
        if self.path != "/v1/embeddings" or self.headers.get("Authorization") != "Bearer sk-emb-KEY":
            self.reply(401, {"error": "bad key"})
            return
        vecs = hashing_embed(body["input"], 16) * 3.0  # not unit length: the client normalises
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)][::-1]
        self.reply(200, {"object": "list", "data": data, "model": body["model"]})


@pytest.fixture
def server(monkeypatch):
    _Embeddings.calls, _Embeddings.fail_first = [], 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{srv.server_address[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-emb-KEY")
    yield srv
    srv.shutdown()


def test_openai_embedder_batches_orders_normalises_and_retries(server):
    _Embeddings.fail_first = 1
    texts = [f"movie {i} drama" for i in range(300)]
    got = Embedder("openai:text-embedding-004", progress=False).encode(texts)
    assert got.shape == (300, 16)
    np.testing.assert_allclose(got, hashing_embed(texts, 16), atol=1e-6)  # order restored, unit length
    assert [c["n"] for c in _Embeddings.calls] == [256, 256, 44]  # one 503 retried, then two batches
    assert all(c["model"] == "text-embedding-004" for c in _Embeddings.calls)


def test_build_with_openai_embedder_and_its_cache(server, tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    cfg = dict(dataset="ml-1m", raw_dir=str(raw), embedder="openai:text-embedding-004", train_size=30, test_size=10,
               val_size=10, candidates=8, history=6, min_history=3, stride=3)
    res = build(BuildConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    emb = res.manifest["embedder"]
    assert emb["name"] == "openai:text-embedding-004" and emb["dim"] == 16
    assert emb["machine_specific"] and emb["artifact"] is None  # nothing pinned for this embedder: said so
    n = len(_Embeddings.calls)
    assert n >= 1
    build(BuildConfig(out=str(tmp_path / "b"), **cfg), progress=False)  # served from the embedding cache
    assert len(_Embeddings.calls) == n
    assert b"sk-emb-KEY" not in (res.path / "manifest.json").read_bytes()


def test_openai_embedder_errors_are_one_line(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    with pytest.raises(FlexRecError, match="embedder openai:m: .* answered HTTP 401") as e:
        Embedder("openai:m", progress=False).encode(["a"])
    assert "\n" not in str(e.value) and "wrong" not in str(e.value)
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(FlexRecError, match="no API key"):
        Embedder("openai:m", progress=False).encode(["a"])
