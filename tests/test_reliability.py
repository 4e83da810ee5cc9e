"""Faults and bad inputs: one-line errors instead of tracebacks, counted skips, and writes that fail
with the path and the cause (crash safety under kill -9 and concurrent writers: test_crash_safety.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat

import pyarrow.parquet as pq
import pytest
import rawfixtures as fx
from faults import BUILD_ARGS, SMALL
from faults import one_line_error as _one_line_error
from faults import run_cli as _cli

from flexrec_bench.building.config import BuildConfig
from flexrec_bench.building.build import build
from flexrec_bench.foundation.errors import DataError, FlexRecError
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval



# -- one-line errors ------------------------------------------------------------------------
@pytest.mark.parametrize("opt,value,expect", [
    ("--stride", "0", "--stride must be an integer >= 1, got 0"),
    ("--train-size", "-5", "--train-size must be an integer >= 1, got -5"),
    ("--test-size", "0", "--test-size must be an integer >= 1, got 0"),
    ("--seed", "-1", "--seed must be an integer >= 0, got -1"),
    ("--embedder", "hashing-0", "--embedder must be hashing-<dim> with 1 <= dim <= 65536"),
    ("--embedder", "hashing-99999999999", "--embedder must be hashing-<dim> with 1 <= dim <= 65536"),
    ("--embeddings", "cached", "--embeddings must be one of auto, pinned, local"),
    ("--candidate-order", "sorted", "--candidate-order must be one of shuffled, retrieval"),
])
def test_build_options_out_of_range_are_one_line_errors(tmp_path, opt, value, expect):
    raw = fx.write_ml1m(tmp_path / "raw")
    r = _cli("build-data", "--raw-dir", str(raw), "--out", str(tmp_path / "out"), *BUILD_ARGS, opt, value)
    assert expect in _one_line_error(r)
    assert not (tmp_path / "out" / "ml-1m").exists()


@pytest.mark.parametrize("bad", ["nan", "inf", "1e30", "-inf"])
def test_non_finite_timestamps_name_file_line_and_field(tmp_path, bad):
    raw = fx.write_ml1m(tmp_path / "raw")
    lines = (raw / "ratings.dat").read_text(encoding="latin-1").splitlines()
    lines[6] = "1::2::4::" + bad
    (raw / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match=rf"ratings.dat:7 \[Timestamp\]: expected a Unix time in seconds, got '{bad}'"):
        build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "out"), **SMALL), progress=False)


def test_ratings_that_name_no_known_movie_are_a_one_line_error(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    (raw / "ratings.dat").write_text("".join(f"{u}::9999{u}::4::88000000{u}\n" for u in range(1, 9)), encoding="latin-1")
    r = _cli("build-data", "--raw-dir", str(raw), "--out", str(tmp_path / "out"), *BUILD_ARGS)
    assert "none of the 8 interactions names an item of the item file" in _one_line_error(r)


def test_doubled_ratings_are_dropped_and_counted(tmp_path):
    raw = fx.write_ml1m(tmp_path / "raw")
    once = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "once"), **SMALL), progress=False)
    text = (raw / "ratings.dat").read_text(encoding="latin-1")
    n = len(text.splitlines())
    u, i, r, t = text.splitlines()[0].split("::")
    other = "1" if r != "1" else "2"  # the same (user, item, time) again with another rating: the last wins
    (raw / "ratings.dat").write_text(text + text + f"{u}::{i}::{other}::{t}\n", encoding="latin-1")
    twice = build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "twice"), **SMALL), progress=False)
    assert twice.manifest["skipped"]["duplicate interaction rows (exact repeats)"] == n
    assert twice.manifest["skipped"]["interactions repeated with another signal at the same time (the last kept)"] == 1
    t = pq.read_table(twice.path / "interest" / "train.parquet").to_pandas()
    assert all(len(set(h)) == len(h) for h in t["history"])  # never 27, 27, 56, 56
    a = pq.read_table(once.path / "niche" / "test.parquet").to_pandas()
    b = pq.read_table(twice.path / "niche" / "test.parquet").to_pandas()
    assert a["instance_id"].tolist() == b["instance_id"].tolist()


@pytest.mark.parametrize("args,expect", [
    (["--metrics", "bogus@5"], "unknown metric 'bogus@5'"),
    (["--bootstrap", "-3"], "--bootstrap must be 0 (no confidence intervals) or 100 to 100000 resamples"),
    (["--bootstrap", "1"], "--bootstrap must be 0 (no confidence intervals) or 100 to 100000 resamples"),
    (["--limit", "-5"], "--limit must be an integer >= 1"),
    (["--limit", "0"], "--limit must be an integer >= 1"),
    (["--seed", "-2"], "--seed must be an integer >= 0"),
])
def test_eval_options_out_of_range_are_one_line_errors_and_write_nothing(tmp_path, args, expect):
    raw = fx.write_ml1m(tmp_path / "raw")
    build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "data"), **SMALL), progress=False)
    r = _cli("eval", "--model", "random", "--dataset", "ml-1m", "--data", str(tmp_path / "data"), "--out",
             str(tmp_path / "res"), "--quiet", *args)
    assert expect in _one_line_error(r)
    assert not (tmp_path / "res").exists()


# -- leaderboard ------------------------------------------------------------------------------
def test_submit_lock_timeout_is_one_line_and_stale_temp_files_go(tmp_path):
    from leaderboard.submit import SubmissionRefused, submit

    raw = fx.write_ml1m(tmp_path / "raw")
    build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "data"), **SMALL), progress=False)
    _, _, path = run_eval(EvalConfig(model="random", dataset="ml-1m", data=str(tmp_path / "data"),
                                     out=str(tmp_path / "res"), bootstrap=100), progress=False)
    lb = tmp_path / "lb" / "leaderboard.json"
    lb.parent.mkdir()

    from conftest import register_build

    register_build(lb, tmp_path / "data", "ml-1m")
    stale = lb.parent / ".leaderboard.json.abc123.tmp"
    stale.write_text("{half a file")
    from flexrec_bench.foundation.lockfile import hold

    with hold(str(lb) + ".lock", 1.0):
        with pytest.raises(SubmissionRefused, match="another submit has held .* for 0 s; try again") as e:
            submit(path, lb, tmp_path / "data", lock_timeout=0.2)
        assert "\n" not in str(e.value)
    submit(path, lb, tmp_path / "data")
    assert not stale.exists() and json.loads(lb.read_text())["entries"]
    assert stat.S_IMODE(lb.stat().st_mode) & 0o044  # readable by a web server running as another user


def test_submit_refuses_too_few_bootstrap_resamples(tmp_path):
    from leaderboard.submit import SubmissionRefused, submit

    raw = fx.write_ml1m(tmp_path / "raw")
    build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(tmp_path / "data"), **SMALL), progress=False)
    _, _, path = run_eval(EvalConfig(model="random", dataset="ml-1m", data=str(tmp_path / "data"),
                                     out=str(tmp_path / "res"), bootstrap=0), progress=False)
    with pytest.raises(SubmissionRefused, match="at least 100 resamples"):
        submit(path, tmp_path / "lb.json", tmp_path / "data")


# -- the second probe (issue "Nothing leaked, nothing trusted unchecked") ------------------------
@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    raw = fx.write_ml1m(root / "raw")
    build(BuildConfig(dataset="ml-1m", raw_dir=str(raw), out=str(root / "data"), **SMALL), progress=False)
    return root


@pytest.mark.parametrize("opt,expect", [
    ("concurrency=abc", "-o concurrency: expects int, got 'abc'"),
    ("max_retries=-1", "-o max_retries: must be >= 0 and <= 50, got -1"),
    ("concurrency=0", "-o concurrency: must be >= 1"),
    ("temperature=hot", "-o temperature: expects float"),
])
def test_ranker_options_are_converted_and_bounded_in_one_line(small_build, opt, expect):
    r = _cli("eval", "--model", "openai:m", "--dataset", "ml-1m", "--data", str(small_build / "data"), "--out",
             str(small_build / "res-opt"), "--quiet", "-o", opt, "-o", "api_key=sk-x", "-o", "base_url=http://127.0.0.1:9")
    assert expect in _one_line_error(r)


@pytest.mark.parametrize("args,expect", [
    (["eval", "--model", "random", "--bootstrap", "99999999999"], "--bootstrap must be 0"),
    (["build-data", "--embedder", "hashing-99999999999"], "1 <= dim <= 65536"),
    (["build-data", "--need-option", "trend.alpha=nan"], "trend alpha must be a number in [0, 1]"),
    (["build-data", "--need-option", "trend.alpha=5"], "trend alpha must be a number in [0, 1]"),
    (["train-critic", "--epochs", "0"], "critic epochs must be an integer >= 1"),
    (["train-critic", "--device", "bogus"], "critic device must be auto, cpu, mps, cuda or cuda:N"),
])
def test_sizes_and_label_options_are_checked_before_any_work(small_build, args, expect):
    extra = ["--dataset", "ml-1m", "--data", str(small_build / "data")] if args[0] in ("eval", "train-critic") else \
        ["--dataset", "ml-1m", "--raw-dir", str(small_build / "raw"), "--out", str(small_build / "never")]
    r = _cli(*args, *extra, "--quiet")
    assert expect in _one_line_error(r)
    assert not (small_build / "never").exists()


def test_a_results_file_with_an_absurd_bootstrap_is_refused(small_build, tmp_path):
    from leaderboard.submit import SubmissionRefused, submit

    _, _, path = run_eval(EvalConfig(model="random", dataset="ml-1m", data=str(small_build / "data"),
                                     out=str(tmp_path / "res"), bootstrap=100), progress=False)
    d = json.loads(path.read_text())
    d["bootstrap"]["samples"] = 10 ** 12
    path.write_text(json.dumps(d))
    with pytest.raises(SubmissionRefused, match=r"bootstrap.samples: Input should be less than or equal to 100000"):
        submit(path, tmp_path / "lb.json", small_build / "data")


def test_writes_to_a_full_disk_a_read_only_folder_or_a_folder_are_one_line(small_build, tmp_path):
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        if os.access(tmp_path / "ro", os.W_OK):  # root ignores the mode bits
            pytest.skip("running as root: a read-only folder is still writable")
        r = _cli("eval", "--model", "random", "--dataset", "ml-1m", "--data", str(small_build / "data"), "--out",
                 str(tmp_path / "ro" / "res"), "--quiet", "--bootstrap", "0")
        assert "cannot write" in _one_line_error(r) and "permission denied" in r.stderr
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_write_errors_name_the_path_and_the_cause(tmp_path, monkeypatch):
    import errno

    from flexrec_bench.foundation.io import write_json_atomic, write_text_atomic

    (tmp_path / "folder").mkdir()
    with pytest.raises(FlexRecError, match=r"cannot write .*folder: it is a folder; nothing was changed there"):
        write_json_atomic(tmp_path / "folder", {"a": 1})
    real_replace = os.replace

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    (tmp_path / "kept.txt").write_text("old")
    with pytest.raises(FlexRecError, match=r"cannot write .*kept.txt: the disk is full"):
        write_text_atomic(tmp_path / "kept.txt", "new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / "kept.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # nothing half-written


def test_leaderboard_files_that_are_not_json_or_are_folders_are_one_line(tmp_path):
    (tmp_path / "lb.json").write_bytes(b"\xff\xfe not utf-8")
    r = _cli("leaderboard", "--leaderboard", str(tmp_path / "lb.json"))
    assert "not UTF-8" in _one_line_error(r)
    (tmp_path / "dir").mkdir()
    r = _cli("leaderboard", "--leaderboard", str(tmp_path / "dir"))
    assert "is a folder" in _one_line_error(r)


def test_critic_state_corrupt_and_metrics_published_with_the_weights(small_build, tmp_path):
    from training.critic import CriticConfig, state_path, train_critic

    out = tmp_path / "critic"
    train_critic(small_build / "data", "ml-1m", CriticConfig(epochs=1, max_pairs=200, seed=0), out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a run killed after writing its new critic but before publishing it leaves the old one whole
    r = _cli("train-critic", "--dataset", "ml-1m", "--data", str(small_build / "data"), "--out", str(out),
             "--epochs", "1", "--max-pairs", "200", "--seed", "1", "--quiet", env={"FLEXREC_FAULT": "critic:written"})
    assert r.returncode != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    state_path(out).write_bytes(b"not a torch file")
    r = _cli("train-critic", "--dataset", "ml-1m", "--data", str(small_build / "data"), "--out", str(out),
             "--epochs", "1", "--max-pairs", "200", "--resume", "--quiet")
    assert "is not a critic state" in _one_line_error(r)


def test_the_default_critic_folder_survives_a_rebuild(small_build, tmp_path):
    from training.config import default_critic_dir

    d = default_critic_dir(small_build / "data", "ml-1m")
    assert (small_build / "data" / "ml-1m").resolve() not in d.resolve().parents


def test_raw_files_cut_off_or_with_a_bom_or_empty_say_so(tmp_path):
    from flexrec_bench.datasets.movielens import read_ml1m

    d = fx.write_ml1m(tmp_path / "raw")
    text = (d / "ratings.dat").read_bytes()
    (d / "ratings.dat").write_bytes(text.rstrip(b"\n")[:-3])  # cut off mid-line
    with pytest.raises(DataError, match=r"ratings.dat:\d+: the last line has no line end: the file looks cut off"):
        read_ml1m(d)
    (d / "ratings.dat").write_bytes(text)
    movies = (d / "movies.dat").read_bytes()
    (d / "movies.dat").write_bytes(b"\xef\xbb\xbf" + movies)  # an editor's byte-order mark
    raw = read_ml1m(d)
    assert raw.items["item_id"].iloc[0] == movies.split(b"::")[0].decode()
    assert not any("missing from the item file" in k for k in raw.skipped)
    (d / "movies.dat").write_bytes(b"")
    with pytest.raises(DataError, match=r"movies.dat: no movies read"):
        read_ml1m(d)


def test_results_from_another_build_and_null_rows_name_the_cause(small_build, tmp_path):
    import pyarrow as pa

    from leaderboard.submit import SubmissionRefused, submit

    data = small_build / "data"
    from conftest import register_build

    board = register_build(tmp_path / "lb.json", data, "ml-1m")
    _, _, path = run_eval(EvalConfig(model="random", dataset="ml-1m", data=str(data), out=str(tmp_path / "res"),
                                     bootstrap=100), progress=False)
    rk = path.parent / "rankings.parquet"
    t = pq.read_table(rk)
    grown = pa.table({"instance_id": t.column("instance_id").to_pylist() + ["999@9"],
                      "ranked": t.column("ranked").to_pylist() + [t.column("ranked").to_pylist()[0]]})
    pq.write_table(grown, rk)
    d = json.loads(path.read_text())
    d["rankings"]["sha256"] = hashlib.sha256(rk.read_bytes()).hexdigest()
    path.write_text(json.dumps(d))
    with pytest.raises(SubmissionRefused, match=r"1 instance\(s\) this build does not have .*another build"):
        submit(path, board, data)
    nulls = t.column("ranked").to_pylist()
    nulls[2] = None
    pq.write_table(pa.table({"instance_id": t.column("instance_id"), "ranked": pa.array(nulls, t.column("ranked").type)}),
                   rk)
    d["rankings"]["sha256"] = hashlib.sha256(rk.read_bytes()).hexdigest()
    path.write_text(json.dumps(d))
    with pytest.raises(SubmissionRefused, match=r"row 2: ranked is null"):
        submit(path, board, data)
