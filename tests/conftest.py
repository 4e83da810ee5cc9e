from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


class JSONHandler(BaseHTTPRequestHandler):
    """Base of the tests' local HTTP servers (OpenAI-compatible fakes): one way to answer, no logs."""

    def reply(self, status: int, payload=None, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {**({"Content-Type": "application/json"} if payload is not None else {}), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if payload is not None:
            self.wfile.write(json.dumps(payload).encode())

    def log_message(self, *a):
        pass


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Downloads and embedding caches go to a per-session directory, never the user's cache."""
    home = tmp_path_factory.mktemp("flexrec_home")
    old = os.environ.get("FLEXREC_HOME")
    os.environ["FLEXREC_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    yield home
    if old is None:
        os.environ.pop("FLEXREC_HOME", None)
    else:
        os.environ["FLEXREC_HOME"] = old


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory, _isolated_home):
    """The bundled MovieLens-100K, built end to end with the default embedder (small samples)."""
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build

    out = tmp_path_factory.mktemp("data")
    build(BuildConfig(out=str(out), train_size=400, test_size=200, val_size=100), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from flexrec_bench.ranking.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def register_build(board: Path, data_dir: Path, dataset: str = "ml-100k") -> Path:
    """Register a local build on the leaderboard file ``board`` (its digests go beside it)."""
    from leaderboard.builds import register

    register(data_dir, dataset, board, f"flexrec-bench build-data --dataset {dataset}", allow_machine_specific=True)
    return board


def fake_registration(fingerprint: str):
    """A registered build that exists only as a fingerprint (for refusals checked before its digests)."""
    from leaderboard.schema import RegisteredBuild

    return RegisteredBuild(fingerprint=fingerprint, digests="builds/none.json", digests_sha256="0" * 64, command="x")


@pytest.fixture
def results(ml100k, tmp_path):
    """Random and STAR run by the one evaluator on the fixture build: the results files the board tests submit."""
    from flexrec_bench.scoring.eval_config import EvalConfig
    from flexrec_bench.scoring.evaluator import run_eval

    out = {}
    for model in ("random", "star"):
        _, _, path = run_eval(EvalConfig(model=model, data=str(ml100k), out=str(tmp_path / "res"), bootstrap=100),
                              progress=False)
        out[model] = path
    return out
