from __future__ import annotations

import json
import os
import shutil
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import fake_registration
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.scoring.evaluator import run_eval
from flexrec_bench.foundation.io import sha256_file
from leaderboard.schema import SCHEMA_PATH, Leaderboard, json_schema
from leaderboard.submit import SubmissionRefused, load, submit

runner = CliRunner()


def test_committed_schema_is_current():
    committed = json.loads(SCHEMA_PATH.read_text())
    assert committed == json.loads(json.dumps(json_schema())), "run `python -m leaderboard.schema`"


def _registered(ml100k, tmp_path, name="lb.json"):
    """A leaderboard file whose reviewed list registers the fixture's ml-100k build."""

    from conftest import register_build

    return register_build(tmp_path / name, ml100k)


def test_submit_verifies_and_refuses_duplicates(ml100k, tmp_path, results):
    with pytest.raises(SubmissionRefused, match="no build of ml-100k is registered; the registered builds are a reviewed"):
        submit(results["star"], tmp_path / "empty.json", ml100k)  # a first submit registers nothing
    assert not (tmp_path / "empty.json").exists()
    lb = _registered(ml100k, tmp_path)
    entry, replaced = submit(results["star"], lb, ml100k)
    assert not replaced and entry.verification.instances == 200
    board = load(lb)
    assert len(board.entries) == 1 and board.registered_builds["ml-100k"].fingerprint == entry.results.dataset.fingerprint
    assert {"coverage@5", "novelty@10", "ild@5", "gini@10"} <= set(entry.results.beyond)
    with pytest.raises(SubmissionRefused, match="exists; pass --replace"):
        submit(results["star"], lb, ml100k)
    _, replaced = submit(results["star"], lb, ml100k, replace=True)
    assert replaced and len(load(lb).entries) == 1


def _copy(path, tmp_path, name):
    d = tmp_path / name
    shutil.copytree(path.parent, d)
    return d / "results.json"


def _tampered(path, tmp_path, name, edit):
    """A copy of a submission whose results.json was changed by ``edit(data)``."""
    p = _copy(path, tmp_path, name)
    data = json.loads(p.read_text())
    edit(data)
    p.write_text(json.dumps(data))
    return p


def test_refuses_inflated_metrics(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    p = _tampered(results["random"], tmp_path, "inflated", lambda d: d["metrics"]["ndcg@10"].update(mean=0.99))
    with pytest.raises(SubmissionRefused, match=r"metrics.ndcg@10.mean: claimed 0.99, re-scored 0\.1"):
        submit(p, lb, ml100k)
    p = _tampered(results["random"], tmp_path, "plus", lambda d: d["metrics"]["mrr@5"].update(
        mean=d["metrics"]["mrr@5"]["mean"] + 0.001))
    with pytest.raises(SubmissionRefused, match=r"metrics.mrr@5.mean"):
        submit(p, lb, ml100k)


def test_statistics_are_recomputed_not_trusted(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    honest = json.loads(results["star"].read_text())

    def lie(d):
        d["metrics"]["ndcg@10"]["ci95"] = [0.0, 1.0]
        d["metrics"]["ndcg@10"]["n"] = 1
        d["n_no_relevant"], d["dataset"]["instances"] = 0, 5
        d["beyond"] = {"coverage@5": 1.0}
        d["parse"] = {"instances": 200, "complete": 200}

    entry, _ = submit(_tampered(results["star"], tmp_path, "lies", lie), lb, ml100k)
    got = entry.results
    assert got.metrics["ndcg@10"].ci95 == tuple(honest["metrics"]["ndcg@10"]["ci95"])  # recomputed, stored
    assert got.metrics["ndcg@10"].n == honest["metrics"]["ndcg@10"]["n"]
    assert got.n_no_relevant == honest["n_no_relevant"] and got.dataset.instances == 200
    assert got.beyond == honest["beyond"] and got.parse is None  # no raw outputs: no parse statistics
    assert got.provenance.git_commit is None  # a claim nothing can check is dropped


def test_refuses_duplicate_rows_empty_metrics_and_empty_names(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    p = _copy(results["random"], tmp_path, "duprow")
    t = pq.read_table(p.parent / "rankings.parquet")
    _rewrite_rankings(p, pa.concat_tables([t, t.slice(3, 1)]))
    with pytest.raises(SubmissionRefused, match="row 200: instance .* appears twice"):
        submit(p, lb, ml100k)
    with pytest.raises(SubmissionRefused, match="at least one metric"):
        submit(_tampered(results["random"], tmp_path, "nometrics", lambda d: d.update(metrics={})), lb, ml100k)
    with pytest.raises(SubmissionRefused, match="model.name"):
        submit(_tampered(results["random"], tmp_path, "noname", lambda d: d["model"].update(name="")), lb, ml100k)


def test_parse_statistics_are_rederived_from_the_raw_outputs(ml100k, tmp_path, results):
    from flexrec_bench.building.splits import load_split

    lb = _registered(ml100k, tmp_path)
    split = load_split(ml100k, "ml-100k", "interest", "test")
    cands = dict(zip(split.instance_ids, split.frame["candidates"]))

    def with_outputs(name, first_two):
        p = _copy(results["random"], tmp_path, name)
        t = pq.read_table(p.parent / "rankings.parquet").to_pydict()
        t["output"] = [f"<answer>{first_two(list(cands[i]), r)}</answer>" for i, r in zip(t["instance_id"], t["ranked"])]
        _rewrite_rankings(p, pa.table(t))
        return p

    ids = lambda c, items: ", ".join(f"C{c.index(x) + 1}" for x in items)  # noqa: E731
    entry, _ = submit(with_outputs("llm", lambda c, r: ids(c, r[:2]) + ", C99"), lb, ml100k)
    ps = entry.results.parse
    assert (ps.instances, ps.invalid_ids, ps.complete, ps.missing_items) == (200, 200, 0, 200 * 28)
    with pytest.raises(SubmissionRefused, match="does not start with the items its output names"):
        submit(with_outputs("swapped", lambda c, r: ids(c, [r[1], r[0]])), lb, ml100k)


def _rewrite_rankings(p, table: pa.Table) -> None:
    """Replace a submission's rankings and update its checksum (a consistent but wrong submission)."""
    pq.write_table(table, p.parent / "rankings.parquet")
    data = json.loads(p.read_text())
    data["rankings"]["sha256"] = sha256_file(p.parent / "rankings.parquet")
    p.write_text(json.dumps(data))


def test_refuses_non_permutations_and_missing_instances(ml100k, tmp_path, results):
    _registered(ml100k, tmp_path)
    p = _copy(results["random"], tmp_path, "dup")
    t = pq.read_table(p.parent / "rankings.parquet").to_pydict()
    t["ranked"][0] = [t["ranked"][0][0]] * len(t["ranked"][0])
    _rewrite_rankings(p, pa.table(t))
    with pytest.raises(SubmissionRefused, match="not a permutation"):
        submit(p, tmp_path / "lb.json", ml100k)
    p = _copy(results["random"], tmp_path, "missing")
    _rewrite_rankings(p, pq.read_table(p.parent / "rankings.parquet").slice(0, 150))
    with pytest.raises(SubmissionRefused, match="50 instance\\(s\\) missing"):
        submit(p, tmp_path / "lb.json", ml100k)


def test_refuses_tampered_rankings_and_paths_outside(ml100k, tmp_path, results):
    _registered(ml100k, tmp_path)
    p = _copy(results["random"], tmp_path, "tampered")
    with open(p.parent / "rankings.parquet", "ab") as f:
        f.write(b"x")
    with pytest.raises(SubmissionRefused, match="sha256"):
        submit(p, tmp_path / "lb.json", ml100k)
    for evil in ("../star/rankings.parquet", "/etc/passwd", ".."):
        p = _tampered(results["random"], tmp_path, f"evil{len(evil)}", lambda d, e=evil: d["rankings"].update(file=e))
        with pytest.raises(SubmissionRefused, match="plain file name"):
            submit(p, tmp_path / "lb.json", ml100k)
    p = _copy(results["random"], tmp_path, "link")
    (p.parent / "rankings.parquet").unlink()
    os.symlink(results["star"].parent / "rankings.parquet", p.parent / "rankings.parquet")
    with pytest.raises(SubmissionRefused, match="outside|sha256"):
        submit(p, tmp_path / "lb.json", ml100k)


def test_refuses_other_builds_and_bad_json(ml100k, tmp_path, results):
    _registered(ml100k, tmp_path)
    p = _tampered(results["random"], tmp_path, "otherbuild",
                  lambda d: d["dataset"].update(fingerprint="0123456789abcdef"))
    with pytest.raises(SubmissionRefused, match="0123456789abcdef is not the registered ml-100k build"):
        submit(p, tmp_path / "lb.json", ml100k)
    other = tmp_path / "other.json"  # registered for that build, but the local build is another
    other.write_text(Leaderboard(registered_builds={"ml-100k": fake_registration("0123456789abcdef")}).model_dump_json())
    with pytest.raises(SubmissionRefused, match="local ml-100k build"):
        submit(p, other, ml100k)
    board = Leaderboard(registered_builds={"ml-100k": fake_registration("fedcba9876543210")})
    (tmp_path / "reg.json").write_text(board.model_dump_json())
    with pytest.raises(SubmissionRefused, match="not the registered ml-100k build"):
        submit(results["random"], tmp_path / "reg.json", ml100k)
    p = _copy(results["random"], tmp_path, "nan")
    p.write_text(p.read_text().replace('"seed": 0', '"seed": NaN', 1))
    with pytest.raises(SubmissionRefused):
        submit(p, tmp_path / "lb.json", ml100k)
    p = _tampered(results["random"], tmp_path, "need", lambda d: d["dataset"].update(need="fun"))
    with pytest.raises(SubmissionRefused, match="unknown need 'fun'"):
        submit(p, tmp_path / "lb.json", ml100k)


def test_refused_submission_leaves_the_leaderboard_unchanged(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    submit(results["star"], lb, ml100k)
    before = lb.read_bytes()
    p = _tampered(results["random"], tmp_path, "bad", lambda d: d["metrics"]["mrr@5"].update(mean=0.5))
    with pytest.raises(SubmissionRefused):
        submit(p, lb, ml100k)
    assert lb.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".lb")] == []


def test_concurrent_submits_keep_every_entry(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    errors = []

    def go(path):
        try:
            submit(path, lb, ml100k)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(results[m],)) for m in ("random", "star")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and {e.results.model.name for e in load(lb).entries} == {"random", "star"}


def test_an_edited_label_file_is_refused_by_eval_and_submit(ml100k, tmp_path, results):
    """Every label set to 1 in a copy of test.parquet would score ndcg@5 = 1.0 under the registered
    fingerprint; the manifest's sha256 of each file stops it."""
    import numpy as np

    from flexrec_bench.foundation.errors import DataError

    copy = tmp_path / "copy"
    shutil.copytree(ml100k, copy)
    path = (copy / "ml-100k").resolve() / "interest" / "test.parquet"
    t = pq.read_table(path).to_pandas()
    t["relevance"] = [np.ones(len(r), np.float32) for r in t["relevance"]]
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), path)
    with pytest.raises(DataError, match="test.parquet.*does not match the manifest"):
        run_eval(EvalConfig(model="oracle", data=str(copy), out=str(tmp_path / "res2"), bootstrap=0), progress=False)
    with pytest.raises(DataError, match="does not match the manifest"):
        submit(results["star"], _registered(ml100k, tmp_path), copy)


def test_options_make_a_variant_and_another_build_is_never_overwritten(ml100k, tmp_path):
    from flexrec_bench.foundation.errors import FlexRecError

    lb = _registered(ml100k, tmp_path)
    paths = []
    for opts in ({}, {"lam": "0.5"}):
        res, _, path = run_eval(EvalConfig(model="star", data=str(ml100k), out=str(tmp_path / "res"), bootstrap=100,
                                           options=opts), progress=False)
        paths.append(path)
    assert paths[0] != paths[1] and "@" in paths[1].parts[-5]  # its own results folder
    e1, _ = submit(paths[0], lb, ml100k)
    e2, _ = submit(paths[1], lb, ml100k)  # not "exists": another entry
    assert e1.results.model.variant is None and e2.results.model.variant and len(load(lb).entries) == 2
    assert "revision None" not in e1.label() and e2.label() == "star (lam=0.5)"  # the options, not a hash
    with pytest.raises(SubmissionRefused, match=r"an entry for star on interest/test .* exists") as exc:
        submit(paths[0], lb, ml100k)
    assert "revision None" not in str(exc.value)
    # the same results folder on another build is refused before anything is ranked
    other = tmp_path / "other"
    shutil.copytree(ml100k, other)
    m = (other / "ml-100k").resolve() / "manifest.json"
    data = json.loads(m.read_text())
    data["fingerprint"] = "feedfacefeedface"
    m.write_text(json.dumps(data))
    with pytest.raises(FlexRecError, match="holds a result scored on build .*; this build is feedfacefeedface"):
        run_eval(EvalConfig(model="star", data=str(other), out=str(tmp_path / "res"), bootstrap=0), progress=False)


def _rewrite(path, **changes):
    d = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = d
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(json.dumps(d))


def test_oracle_rankings_submitted_as_star_are_refused(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    submit(results["star"], lb, ml100k)
    _, _, oracle = run_eval(EvalConfig(model="oracle", data=str(ml100k), out=str(tmp_path / "or"), bootstrap=100),
                            progress=False)
    fake = tmp_path / "fake"
    shutil.copytree(oracle.parent, fake)
    _rewrite(fake / "results.json", model__name="star", model__id="star", config__model="star")
    with pytest.raises(SubmissionRefused, match="these are not the rankings star produces on this build"):
        submit(fake / "results.json", lb, ml100k, replace=True)
    assert load(lb).entries[0].results.metrics["ndcg@10"].mean < 0.9


def test_replace_needs_the_same_declared_model_or_a_reviewer(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    submit(results["random"], lb, ml100k)
    other = tmp_path / "other"
    shutil.copytree(results["random"].parent, other)
    _rewrite(other / "results.json", model__id="random-v2")
    with pytest.raises(SubmissionRefused, match="same declared model .* --reviewer"):
        submit(other / "results.json", lb, ml100k, replace=True)
    entry, replaced = submit(other / "results.json", lb, ml100k, replace=True, reviewer=True)
    assert replaced and load(lb).entries[0].results.model.id == "random-v2"
    assert submit(results["random"], lb, ml100k, replace=True, reviewer=True)[1]  # back, by a reviewer
    assert len(list((lb.parent / "rankings").glob("*.parquet"))) == 1  # the replaced entry's rankings went


def test_leaderboard_verify_rescores_every_entry_and_fails_on_a_hand_edit(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    for m in ("random", "star"):
        submit(results[m], lb, ml100k)
    ok = runner.invoke(app, ["leaderboard", "verify", "--leaderboard", str(lb), "--data", str(ml100k)])
    assert ok.exit_code == 0 and "2 entries re-scored from their kept rankings: every one holds" in ok.output
    d = json.loads(lb.read_text())
    d["entries"][1]["results"]["metrics"]["ndcg@10"]["mean"] += 0.001  # a hand edit the page would show
    lb.write_text(json.dumps(d))
    bad = runner.invoke(app, ["leaderboard", "verify", "--leaderboard", str(lb), "--data", str(ml100k)])
    assert bad.exit_code == 1 and "metrics.ndcg@10 on the board" in bad.output
    d["entries"][1]["results"]["metrics"]["ndcg@10"]["mean"] -= 0.001
    lb.write_text(json.dumps(d))
    kept = next((lb.parent / "rankings").glob("*.parquet"))
    kept.write_bytes(kept.read_bytes()[:-10])
    bad = runner.invoke(app, ["leaderboard", "verify", "--leaderboard", str(lb), "--data", str(ml100k)])
    assert bad.exit_code == 1 and "is not the rankings the entry names" in bad.output


@pytest.mark.parametrize("name,expect", [
    ("   ", "the model name is blank"),
    ("star\x1b[2J", "control character"),
    ("st\u0430r", "looks like the entry 'star'"),  # a Cyrillic a
])
def test_names_are_printable_and_distinct(ml100k, tmp_path, results, name, expect):
    lb = _registered(ml100k, tmp_path)
    submit(results["star"], lb, ml100k)
    bad = tmp_path / "bad"
    shutil.copytree(results["random"].parent, bad)
    _rewrite(bad / "results.json", model__display_name=name)
    with pytest.raises(SubmissionRefused, match=expect):
        submit(bad / "results.json", lb, ml100k)


def test_only_test_split_results_and_llm_results_with_their_outputs(ml100k, tmp_path, results):
    import pyarrow.parquet as pq

    lb = _registered(ml100k, tmp_path)
    _, _, val = run_eval(EvalConfig(model="random", split="val", data=str(ml100k), out=str(tmp_path / "v"),
                                    bootstrap=100), progress=False)
    with pytest.raises(SubmissionRefused, match="a val-split result; entries are scored on the test split only"):
        submit(val, lb, ml100k)
    llm = tmp_path / "llm"
    shutil.copytree(results["random"].parent, llm)
    _rewrite(llm / "results.json", model__name="openai:gpt-4o", model__id="gpt-4o")
    with pytest.raises(SubmissionRefused, match="no 'output' column: an LLM ranker's entry keeps the raw outputs"):
        submit(llm / "results.json", lb, ml100k)
    assert "output" not in pq.read_table(llm / "rankings.parquet").column_names


def test_another_seed_or_name_of_a_model_is_its_own_entry_and_variants_show_their_options(ml100k, tmp_path, results):
    lb = _registered(ml100k, tmp_path)
    submit(results["random"], lb, ml100k)
    _, _, s7 = run_eval(EvalConfig(model="random", data=str(ml100k), out=str(tmp_path / "r7"), bootstrap=100, seed=7,
                                   name="newcomer-random-s7"), progress=False)
    entry, replaced = submit(s7, lb, ml100k)
    assert not replaced and len(load(lb).entries) == 2 and entry.label() == "newcomer-random-s7 (seed 7)"
    _, _, star = run_eval(EvalConfig(model="star", data=str(ml100k), out=str(tmp_path / "a"), bootstrap=100,
                                     options={"a": "0.7"}), progress=False)
    r = runner.invoke(app, ["submit", str(star), "--leaderboard", str(lb), "--data", str(ml100k)])
    assert r.exit_code == 0, r.output
    assert f"added: star (a=0.7) on ml-100k/interest/test (re-scored 200 instances) to {lb}" in r.output


def test_a_local_model_folder_is_named_by_its_model_card():
    """An hf:<folder> entry from `models install` is labelled by the card's name, not the machine's
    path (the path stays in the entry's provenance); a display name still wins."""
    from pathlib import Path

    from leaderboard.schema import Leaderboard

    board = Leaderboard.model_validate_json((Path(__file__).resolve().parents[1] / "leaderboard" /
                                             "leaderboard.json").read_text())
    entry = next(e for e in board.entries if e.results.model.name.startswith("hf:"))
    assert entry.label().startswith("smollm2-135m-instruct (") and "/tmp/" not in entry.label()
    assert entry.results.model.name.startswith("hf:/") and entry.results.model.config["training"] == "zero-shot"
    named = entry.model_copy(update={"results": entry.results.model_copy(update={
        "model": entry.results.model.model_copy(update={"display_name": "SmolLM2 first-token"})})})
    assert named.label().startswith("SmolLM2 first-token (")
