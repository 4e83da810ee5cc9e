"""Registered builds: for each dataset, the one build every leaderboard entry is scored on.

A registration is a reviewed edit, never a submit: ``python -m leaderboard.builds register --dataset
D --data DIR`` writes ``leaderboard/builds/<dataset>-<fingerprint>.json`` (what the build was made
from, and per-instance digests of its test split) and names it in ``registered_builds`` of
leaderboard.json with its sha256. With those digests

- ``flexrec-bench verify-build`` tells a user whose build is not the registered one how it differs
  (inputs, configuration, the share of instances whose candidate sets differ, the largest change in
  an instance's labels), without anyone shipping the labels themselves;
- ``flexrec-bench submit`` checks the labels a result is re-scored against, instance by instance,
  against the registered build's, not only against the submitter's own copy and its manifest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from flexrec_bench.building.splits import SPLITS, DatasetSplit, load_manifest, load_split
from flexrec_bench.foundation.digests import instance_digests, label_digest
from flexrec_bench.foundation.errors import DataError, FlexRecError
from flexrec_bench.foundation.io import sha256_file, write_json_atomic
from flexrec_bench.foundation.paths import data_flag

from .schema import DEFAULT_PATH, Leaderboard, NeedReference, RegisteredBuild, load

#: the splits whose instances are digested one by one (entries are accepted on these only)
REGISTERED_SPLITS = ("test",)


def _inputs(manifest: dict) -> dict:
    """What a build was made from: raw files, embeddings, configuration, label parameters."""
    emb = manifest.get("embedder") or {}
    return {"sources": {k: v["sha256"] for k, v in (manifest.get("sources") or {}).items()},
            "embeddings": {"name": emb.get("name"), "artifact": emb.get("artifact"),
                           "machine_specific": emb.get("machine_specific")},
            "config": {k: v for k, v in (manifest.get("config") or {}).items() if k not in ("out", "raw_dir",
                                                                                             "embeddings")},
            "needs": {n: v.get("config") for n, v in (manifest.get("needs") or {}).items()}}


def record(data_dir: str | Path, dataset: str) -> dict:
    """The registration record of a local build: its inputs, a digest per (need, split), and the
    per-instance digests of REGISTERED_SPLITS (flexrec_bench.foundation.digests.instance_digests)."""
    manifest = load_manifest(data_dir, dataset)
    root = Path(data_dir, dataset).resolve()
    splits, instances = {}, {}
    for need in manifest["needs"]:
        splits[need] = {s: label_digest(pq.read_table(root / need / f"{s}.parquet")) for s in SPLITS}
        for split in REGISTERED_SPLITS:
            d = instance_digests(load_split(data_dir, dataset, need, split).frame)
            shared = instances.setdefault(split, {"instance_id": d["instance_id"], "candidates": d["candidates"],
                                                  "needs": {}})
            if shared["instance_id"] != d["instance_id"]:
                raise DataError(root / need / f"{split}.parquet", "instances differ from the other needs' "
                                                                  "(every need labels the same instances)")
            shared["needs"][need] = {"instance": d["instance"], "relevance_sum": d["relevance_sum"]}
    return {"dataset": dataset, "fingerprint": manifest["fingerprint"], "inputs": _inputs(manifest),
            "split_digests": splits, "instances": instances}


def references(manifest: dict) -> dict[str, NeedReference]:
    """Each need's reference rows from a build's manifest: the formula audit's ceiling and oracle,
    the need-blind ceiling (none for the interest need, whose labels it is), the label's shown
    inputs, and the test split's candidate recall."""
    recall = (manifest.get("candidate_quality") or {}).get("test", {}).get("recall")
    out = {}
    for need, f in ((manifest.get("audit") or {}).get("formula") or {}).items():
        scores = f.get("scores") or {}
        out[need] = NeedReference(formula_ceiling=f.get("formula_ceiling"), ceiling_model=f.get("ceiling_model"),
                                  oracle=scores.get("oracle"), solvable=bool(f.get("solvable")),
                                  label_inputs=(f.get("label_formula") or {}).get("inputs") or [],
                                  candidate_recall=recall,
                                  need_blind_ceiling=None if f.get("need_blind_reference") else f.get("need_blind_ceiling"),
                                  need_blind=bool(f.get("need_blind")))
    return out


def digests_path(reg: RegisteredBuild, board_dir: str | Path) -> Path:
    """The record's file: ``reg.digests`` is relative to the folder of the leaderboard file."""
    return Path(board_dir) / reg.digests


def load_record(reg: RegisteredBuild, board_dir: str | Path) -> dict:
    """A registered build's record, after checking the file against the sha256 the board names."""
    path = digests_path(reg, board_dir)
    if not path.is_file():
        raise FlexRecError(f"{path}: the registered build's digests are missing (leaderboard/builds/ ships with "
                           f"the project)")
    got = sha256_file(path)
    if got != reg.digests_sha256:
        raise DataError(path, f"sha256 {got[:12]}… is not the registered {reg.digests_sha256[:12]}…: the digests "
                              f"were edited; restore the file from the project")
    return json.loads(path.read_text(encoding="utf-8"))


def register(data_dir: str | Path, dataset: str, board_path: str | Path, command: str,
             allow_machine_specific: bool = False) -> RegisteredBuild:
    """Write the record of a local build and name it in the board's ``registered_builds`` (a reviewed
    edit: run by a maintainer, committed with the board; entries on the previous build are left to
    the maintainer to re-seed)."""
    rec = record(data_dir, dataset)
    if not allow_machine_specific and (load_manifest(data_dir, dataset).get("embedder") or {}).get("machine_specific"):
        raise FlexRecError(f"{dataset}: this build computed its embeddings on this machine; register only builds "
                           f"made from pinned embeddings, which every machine reproduces")
    rel = f"builds/{dataset}-{rec['fingerprint']}.json"
    path = Path(board_path).parent / rel
    write_json_atomic(path, rec)
    board = load(board_path)
    old = board.registered_builds.get(dataset)
    reg = RegisteredBuild(fingerprint=rec["fingerprint"], digests=rel, digests_sha256=sha256_file(path),
                          command=command, references=references(load_manifest(data_dir, dataset)))
    board.registered_builds[dataset] = reg
    write_json_atomic(Path(board_path), json.loads(board.model_dump_json()))
    if old is not None and old.digests != rel:
        digests_path(old, Path(board_path).parent).unlink(missing_ok=True)
    return reg


def check_labels(split: DatasetSplit, reg: RegisteredBuild, board_dir: str | Path) -> None:
    """Refuse a split whose instances or labels are not the registered build's, instance by instance."""
    if split.split not in REGISTERED_SPLITS:
        raise FlexRecError(f"{split.dataset}/{split.need}/{split.split}: only the {', '.join(REGISTERED_SPLITS)} "
                           f"split is registered")
    rec = load_record(reg, board_dir).get("instances", {}).get(split.split)
    want = (rec or {}).get("needs", {}).get(split.need)
    if want is None:
        raise FlexRecError(f"the registered {split.dataset} build has no {split.need}/{split.split} labels")
    got = instance_digests(split.frame)
    if got["instance_id"] != rec["instance_id"]:
        raise FlexRecError(f"{split.root}: the {split.split} instances are not the registered build's "
                           f"({len(got['instance_id'])} here, {len(rec['instance_id'])} registered)")
    bad = [i for i, (a, b) in enumerate(zip(got["instance"], want["instance"])) if a != b]
    if bad:
        raise FlexRecError(f"{split.root}: {len(bad)} {split.need}/{split.split} instance(s) differ from the registered "
                           f"build's labels (e.g. {got['instance_id'][bad[0]]!r}): this copy of the build was changed")


def compare(data_dir: str | Path, dataset: str, board: Leaderboard, board_dir: str | Path) -> dict:
    """How a local build differs from the registered one (what ``flexrec-bench verify-build`` prints)."""
    reg = board.registered_builds.get(dataset)
    if reg is None:
        raise FlexRecError(f"no {dataset} build is registered (registered: {', '.join(board.registered_builds) or 'none'})")
    manifest = load_manifest(data_dir, dataset)
    out: dict = {"dataset": dataset, "registered": reg.fingerprint, "local": manifest["fingerprint"], "data": str(data_dir),
                 "same": manifest["fingerprint"] == reg.fingerprint, "inputs": [], "splits": {}}
    if out["same"]:
        return out
    ref = load_record(reg, board_dir)
    mine = _inputs(manifest)
    for part in ("sources", "embeddings", "config", "needs"):
        a, b = ref["inputs"].get(part) or {}, mine.get(part) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out["inputs"].append(f"{part}.{key}: registered {_short(a.get(key))}, here {_short(b.get(key))}")
    local = record(data_dir, dataset)
    for split, r in ref.get("instances", {}).items():
        l_ = local["instances"].get(split, {"instance_id": [], "candidates": [], "needs": {}})
        pos = {iid: i for i, iid in enumerate(l_["instance_id"])}
        common = [(i, pos[iid]) for i, iid in enumerate(r["instance_id"]) if iid in pos]
        info = {"registered_instances": len(r["instance_id"]), "local_instances": len(l_["instance_id"]),
                "common": len(common), "needs": {}}
        info["candidate_sets_differ"] = (sum(r["candidates"][i] != l_["candidates"][j] for i, j in common)
                                         / len(common) if common else None)
        for need, want in r["needs"].items():
            have = l_["needs"].get(need)
            if have is None:
                info["needs"][need] = {"missing": True}
                continue
            diff = [(i, j) for i, j in common if want["instance"][i] != have["instance"][j]]
            info["needs"][need] = {
                "instances_differ": len(diff) / len(common) if common else None,
                "largest_label_sum_change": max((abs(want["relevance_sum"][i] - have["relevance_sum"][j])
                                                 for i, j in diff), default=0.0)}
        out["splits"][split] = info
    return out


def _short(v) -> str:
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def format_comparison(c: dict) -> str:
    if c["same"]:
        return (f"{c['dataset']}: this build is the registered one ({c['local']}): `flexrec-bench submit` accepts "
                f"results on it")
    lines = [f"{c['dataset']}: this build ({c['local']}) is not the registered one ({c['registered']})"]
    lines += [f"  differs in {d}" for d in c["inputs"]] or ["  same inputs and configuration (a code change?)"]
    for split, s in c["splits"].items():
        share = s["candidate_sets_differ"]
        lines.append(f"  {split}: {s['common']} of {s['registered_instances']} registered instances here "
                     f"({s['local_instances']} local); candidate sets differ in "
                     f"{'-' if share is None else f'{100 * share:.1f}%'} of them")
        for need, n in s["needs"].items():
            if n.get("missing"):
                lines.append(f"    {need}: not built here")
            else:
                lines.append(f"    {need}: instances differ in {100 * (n['instances_differ'] or 0):.1f}%; largest change "
                             f"of an instance's label sum {n['largest_label_sum_change']:.4f}")
    lines.append(f"  fix: rebuild with the registered command and pinned embeddings "
                 f"(`flexrec-bench build-data --dataset {c['dataset']} --embeddings pinned{data_flag(c.get('data'), '--out')}`)")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m leaderboard.builds", description="register a build (reviewed edit)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register")
    r.add_argument("--dataset", required=True)
    r.add_argument("--data", default="data")
    r.add_argument("--leaderboard", default=str(DEFAULT_PATH))
    r.add_argument("--command", default=None, help="the command that makes the build (default: build-data --dataset D)")
    a = ap.parse_args(argv)
    reg = register(a.data, a.dataset, a.leaderboard, a.command or f"flexrec-bench build-data --dataset {a.dataset}")
    print(f"registered {a.dataset} build {reg.fingerprint} ({reg.digests}, sha256 {reg.digests_sha256[:12]}…)")


if __name__ == "__main__":
    main(sys.argv[1:])
