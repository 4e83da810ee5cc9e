"""Builds, results and downloads that survive kill -9 at every publish step and concurrent writers,
permissions that respect the umask, and downloads whose extraction is part of "done"."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import rawfixtures as fx
from faults import BUILD_ARGS, SMALL
from faults import run_cli as _cli

from flexrec_bench.building.build import build
from flexrec_bench.building.config import BuildConfig
from flexrec_bench.datasets.download import DownloadSpec, fetch
from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval


def _leftovers(out: Path, name: str = "ml-1m") -> list[str]:
    live = (out / name).resolve() if (out / name).exists() else None
    return sorted(p.name for p in out.iterdir()
                  if p.name.startswith(".") and p.name != f".{name}.lock" and p.resolve() != live)


def _complete(root: Path) -> dict:
    m = json.loads((root / "manifest.json").read_text())
    for rel, info in m["outputs"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == info["sha256"], rel
    return m


# -- crash safety ---------------------------------------------------------------------------
@pytest.mark.parametrize("step", ["build:written", "publish:renamed", "publish:linked", "publish:swapped"])
def test_kill_at_each_publish_step_leaves_one_complete_dataset(tmp_path, step):
    raw = fx.write_ml1m(tmp_path / "raw")
    out = tmp_path / "out"
    args = ["build-data", "--raw-dir", str(raw), "--out", str(out), *BUILD_ARGS]
    assert _cli(*args).returncode == 0
    first = _complete(out / "ml-1m")
    r = _cli(*args, "--seed", "1", env={"FLEXREC_FAULT": step})
    assert r.returncode == -9, r.stderr[-800:]  # killed, as by kill -9
    after_kill = _complete(out / "ml-1m")  # the old build or the new one, whole
    assert after_kill["fingerprint"] in (first["fingerprint"],) or after_kill["config"]["seed"] == 1
    r = _cli(*args, "--seed", "2")
    assert r.returncode == 0, r.stderr[-800:]
    assert _complete(out / "ml-1m")["config"]["seed"] == 2
    assert _leftovers(out) == []


def test_kill_while_replacing_an_old_style_folder_recovers(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    out = tmp_path / "out"
    args = ["build-data", "--raw-dir", str(raw), "--out", str(out), *BUILD_ARGS]
    assert _cli(*args).returncode == 0
    real = out / "ml-1m"
    target = real.resolve()
    real.unlink()
    os.replace(target, real)  # a build folder as the previous release wrote it: a plain directory
    assert _cli(*args, "--seed", "1", env={"FLEXREC_FAULT": "publish:moved-legacy"}).returncode == -9
    assert not real.exists()  # the one moment with no folder: the next run restores it
    assert _cli("audit", "--dataset", "ml-1m", "--data", str(out)).returncode == 2
    assert _cli(*args, "--seed", "2").returncode == 0
    assert _complete(real)["config"]["seed"] == 2 and _leftovers(out) == []


def test_concurrent_builds_into_one_folder_all_succeed(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "flexrec_bench.cli", "build-data", "--raw-dir", str(raw), "--out",
                               str(out), *BUILD_ARGS, "--seed", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-1500:]
    assert _complete(out / "ml-1m")["config"]["seed"] in range(4)
    assert _leftovers(out) == []


def test_eval_publishes_results_and_rankings_together(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "data"), **SMALL), progress=False)
    args = ["eval", "--model", "random", "--dataset", "ml-1m", "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "res"), "--quiet", "--bootstrap", "100"]
    assert _cli(*args).returncode == 0
    d = tmp_path / "res" / "random" / "ml-1m" / "interest" / "test"
    before = json.loads((d / "results.json").read_text())
    assert _cli(*args, "--seed", "5", env={"FLEXREC_FAULT": "publish:linked"}).returncode == -9
    now = json.loads((d / "results.json").read_text())
    assert now["rankings"]["sha256"] == before["rankings"]["sha256"]
    assert hashlib.sha256((d / "rankings.parquet").read_bytes()).hexdigest() == now["rankings"]["sha256"]
    assert _cli(*args, "--seed", "6").returncode == 0
    now = json.loads((d / "results.json").read_text())
    assert now["bootstrap"]["seed"] == 6
    assert hashlib.sha256((d / "rankings.parquet").read_bytes()).hexdigest() == now["rankings"]["sha256"]
    assert _leftovers(d.parent, "test") == []


def test_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        raw = fx.write_ml1m(tmp_path / "raw")
        res = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "data"), **SMALL), progress=False)
        _, _, path = run_eval(EvalConfig(model="random", dataset="ml-1m", data=str(tmp_path / "data"),
                                         out=str(tmp_path / "res"), bootstrap=0), progress=False)
        from leaderboard.render import render
        from leaderboard.schema import Leaderboard

        page = render(Leaderboard(), tmp_path / "site")
    finally:
        os.umask(old)
    for p in [res.path.resolve(), *res.path.resolve().rglob("*"), path.parent.resolve(), path.resolve(),
              (path.parent / "rankings.parquet").resolve(), page]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))


# -- downloads --------------------------------------------------------------------------------
def test_download_killed_during_extraction_extracts_on_the_next_run(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
        z.writestr("ml-1m/movies.dat", "1::A (1990)::Drama\n")
    data = buf.getvalue()
    (tmp_path / "ml-1m.zip").write_bytes(data)  # downloaded and verified, then killed while unpacking
    (tmp_path / ".extract-ml-1m.zip.tmp").mkdir()  # the killed extraction's leftovers
    spec = DownloadSpec("http://127.0.0.1:9/ml-1m.zip", "ml-1m.zip", sha256=hashlib.sha256(data).hexdigest(),
                        extract=True)
    fetch(spec, tmp_path, progress=False)  # no network needed: the archive is there, the extraction is not
    assert (tmp_path / "ml-1m" / "movies.dat").read_text() == "1::A (1990)::Drama\n"
    assert not (tmp_path / ".extract-ml-1m.zip.tmp").exists()
    (tmp_path / "ml-1m" / "movies.dat").unlink()
    fetch(spec, tmp_path, progress=False)  # finished once: not unpacked again
    assert not (tmp_path / "ml-1m" / "movies.dat").exists()


def test_unreachable_server_does_not_claim_partial_data(tmp_path):
    spec = DownloadSpec("http://127.0.0.1:9/none.zip", "none.zip")
    with pytest.raises(FlexRecError) as e:
        fetch(spec, tmp_path, progress=False, timeout=2)
    assert "cannot connect" in str(e.value) and "kept" not in str(e.value)


def test_a_killed_render_leaves_no_temp_file_behind_the_next(tmp_path):
    from leaderboard.render import render
    from leaderboard.schema import Leaderboard, PaperResults

    site = tmp_path / "site"
    site.mkdir()
    (site / ".index.html.abc123.tmp").write_text("half a page")
    render(Leaderboard(), site, PaperResults())
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".lock")) == ["index.html"]
