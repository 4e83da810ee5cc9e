"""One benchmark on every machine: a build from pinned embeddings is the registered build under
another CPU's kernels, a build that computes its own embeddings says so, and `verify-build` says how
a build that is not the registered one differs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import rawfixtures as fx
from conftest import register_build
from typer.testing import CliRunner

from flexrec_bench.building.config import BuildConfig
from flexrec_bench.building.build import build
from flexrec_bench.cli import app
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval
from flexrec_bench.foundation.io import sha256_file, write_json_atomic
from leaderboard.submit import DEFAULT_PATH, SubmissionRefused, load, submit

runner = CliRunner()


@pytest.mark.slow
def test_another_cpus_kernels_build_the_registered_fingerprint(tmp_path):
    """README command 1's build, in two processes and homes: one with torch's portable kernels
    (ATEN_CPU_CAPABILITY=default, as on a CPU without AVX), one with this machine's best. Both are the
    build registered in the committed leaderboard, and neither imports torch (nothing is embedded)."""
    registered = load(DEFAULT_PATH).registered_builds["ml-100k"].fingerprint
    fps = []
    for name, capability in (("portable", "default"), ("best", None)):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        env["FLEXREC_HOME"] = str(tmp_path / f"home-{name}")
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        out = tmp_path / f"out-{name}"
        code = ("import sys; from flexrec_bench.cli import main; sys.argv = ['flexrec-bench', 'build-data', '--out', "
                f"{str(out)!r}, '--quiet']\ntry:\n    main()\nfinally:\n    print('torch imported:', 'torch' in sys.modules)")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "pinned embeddings: the fingerprint is the same on every machine" in r.stdout
        assert f"this is the registered ml-100k build {registered}" in r.stdout
        assert "torch imported: False" in r.stdout
        fps.append(json.loads((out / "ml-100k" / "manifest.json").read_text())["fingerprint"])
    assert fps == [registered, registered]


def test_a_build_that_computes_its_embeddings_says_so(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    small = ["--train-size", "30", "--test-size", "10", "--candidates", "8", "--history", "6", "--min-history", "3",
             "--quiet"]
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "o"),
                            "--embeddings", "local", *small])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().splitlines()[-3].strip() == ("embeddings computed on this machine: the fingerprint is "
                                                         "machine-specific")
    m = json.loads((tmp_path / "o" / "ml-1m" / "manifest.json").read_text())
    assert m["embedder"]["machine_specific"] and m["embedder"]["note"].startswith("embeddings computed on this machine")
    # the model-free embedders count and hash exactly: their vectors are the same on every machine
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "h"),
                            "--embedder", "ngrams-64", *small])
    assert r.exit_code == 0 and "model-free embedder: the same vectors, and fingerprint, on every machine" in r.output
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "p"),
                            "--embedder", "hashing-32", "--embeddings", "pinned", "--quiet"])
    assert r.exit_code != 0 and "no pinned hashing-32 embeddings are published for ml-1m" in str(r.exception)
    # ml-1m's pinned vectors cover the release's movies, not this fixture's made-up titles
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "q"),
                            "--embeddings", "pinned", "--train-size", "30", "--test-size", "10", "--quiet"])
    assert r.exit_code != 0 and "have no pinned vector" in str(r.exception)


SMALL = dict(train_size=200, test_size=100, val_size=50)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A small default ML-100K build registered on a board of its own, and a results file on it."""
    root = tmp_path_factory.mktemp("reg")
    build(BuildConfig(out=str(root / "data"), **SMALL), progress=False)
    board = register_build(root / "lb" / "leaderboard.json", root / "data")
    _, _, path = run_eval(EvalConfig(model="star", need="niche", data=str(root / "data"), out=str(root / "res"),
                                     bootstrap=100), progress=False)
    return root, board, path


def test_verify_build_says_how_a_build_differs(registered, tmp_path):
    root, board, _ = registered
    r = runner.invoke(app, ["verify-build", "--data", str(root / "data"), "--leaderboard", str(board)])
    assert r.exit_code == 0 and "is the registered one" in r.output
    build(BuildConfig(out=str(tmp_path / "other"), candidates=25, need_options={"niche": {"bonus": 2.0}}, **SMALL),
          progress=False)
    r = runner.invoke(app, ["verify-build", "--data", str(tmp_path / "other"), "--leaderboard", str(board)])
    assert r.exit_code == 1, r.output
    assert "differs in config.candidates: registered 30, here 25" in r.output
    assert "differs in needs.niche" in r.output
    assert "100 of 100 registered instances here" in r.output and "candidate sets differ in 100.0%" in r.output
    assert "niche: instances differ in 100.0%" in r.output and "fix: rebuild" in r.output
    # the same instances with other niche labels: only the labels differ
    build(BuildConfig(out=str(tmp_path / "relabel"), need_options={"niche": {"bonus": 2.0}}, **SMALL), progress=False)
    r = runner.invoke(app, ["verify-build", "--data", str(tmp_path / "relabel"), "--leaderboard", str(board)])
    assert "candidate sets differ in 0.0%" in r.output and "interest: instances differ in 0.0%" in r.output
    niche = [ln for ln in r.output.splitlines() if ln.strip().startswith("niche:")][0]
    assert "differ in 0.0%" not in niche and float(niche.rsplit(" ", 1)[1]) > 0


def test_submit_names_the_fix_and_checks_labels_against_the_registered_build(registered, tmp_path):
    root, board, path = registered
    # a copy of the registered build relabelled and resealed (new sha256 in its manifest, same
    # fingerprint): eval scores it, but its labels are not the registered build's
    copy = tmp_path / "copy"
    shutil.copytree(root / "data" / "ml-100k", copy / "ml-100k", symlinks=False)
    t = pq.read_table(copy / "ml-100k" / "niche" / "test.parquet").to_pandas()
    t.at[0, "relevance"] = [1.0] * len(t.at[0, "relevance"])
    t.to_parquet(copy / "ml-100k" / "niche" / "test.parquet")
    m = json.loads((copy / "ml-100k" / "manifest.json").read_text())
    rel = "niche/test.parquet"
    m["outputs"][rel] = {"sha256": sha256_file(copy / "ml-100k" / rel), "bytes": (copy / "ml-100k" / rel).stat().st_size}
    write_json_atomic(copy / "ml-100k" / "manifest.json", m)
    _, _, forged = run_eval(EvalConfig(model="oracle", need="niche", data=str(copy), out=str(tmp_path / "res"),
                                       bootstrap=100), progress=False)
    with pytest.raises(SubmissionRefused, match="1 niche/test instance.* differ from the registered build's labels"):
        submit(forged, board, copy)
    # a results file from another build: one line that names the fix
    other = json.loads(path.read_text())
    other["dataset"]["fingerprint"] = "0123456789abcdef"
    p = tmp_path / "o" / "results.json"
    p.parent.mkdir()
    p.write_text(json.dumps(other))
    with pytest.raises(SubmissionRefused) as exc:
        submit(p, board, root / "data")
    msg = str(exc.value)
    assert "\n" not in msg and "fix: rebuild with pinned embeddings" in msg and "verify-build" in msg
    entry, _ = submit(path, board, root / "data")  # the honest one is accepted
    assert entry.results.metrics_over_all["recall@5"].n == entry.verification.instances
