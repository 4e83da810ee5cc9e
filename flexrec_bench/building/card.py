"""A build as a Hugging Face dataset: the dataset card every build writes (``README.md`` with the
YAML front matter the Hub and ``datasets.load_dataset`` read), and ``publish-build``.

The card lists one config per need (its train/validation/test Parquet files) and one for the item
table, with each file's features as Arrow stores them, the source data's licence (the build is
refused a card without one), the citations, the build command and the fingerprint. So
``datasets.load_dataset("<build folder>", "<need>")`` loads a build offline, and the same folder
can be pushed to the Hub, when its licence allows redistribution (MovieLens's does not).
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flexrec_bench.foundation.errors import ConfigError, FlexRecError, MissingCapabilityError

CARD = "README.md"
#: the Hub's dataset repo id: an owner and a name (letters, digits, '-', '_', '.'), at most 96 each
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
FLEXREC_CITATION = """@article{pan2025flexrec,
  title={FlexRec: Adapting LLM-based Recommenders for Flexible Needs via Reinforcement Learning},
  author={Pan et al.}, year={2025}}"""


def _feature(t: pa.DataType) -> dict:
    """An Arrow type as the card's ``dataset_info.features`` entry."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _feature(t.value_type)
        return {"sequence": inner.get("dtype", inner)}
    names = {pa.string(): "string", pa.large_string(): "string", pa.bool_(): "bool", pa.int64(): "int64",
             pa.int32(): "int32", pa.float32(): "float32", pa.float64(): "float64"}
    return {"dtype": names.get(t, str(t))}


def _features(path: Path) -> list[dict]:
    schema = pq.read_schema(path)
    return [{"name": f.name, **_feature(f.type)} for f in schema]


def write_card(root: Path, manifest: dict, spec) -> Path:
    """Write ``README.md`` into the build folder ``root`` (its Parquet files written already)."""
    if not spec.license:
        raise ConfigError(f"{spec.name} has no licence recorded (DatasetSpec.license): a dataset card needs one; "
                          f"add it to the dataset's spec")
    configs, infos = [], []
    for need in manifest["needs"]:
        files = [{"split": HF_SPLITS[s], "path": f"{need}/{s}.parquet"} for s in HF_SPLITS
                 if (root / need / f"{s}.parquet").exists()]
        configs.append({"config_name": need, "data_files": files})
        infos.append({"config_name": need, "features": _features(root / files[0]["path"])})
    configs.append({"config_name": "items", "data_files": [{"split": "train", "path": "items.parquet"}]})
    infos.append({"config_name": "items", "features": _features(root / "items.parquet")})
    meta = {"license": spec.license, **({"license_name": spec.license_name} if spec.license_name else {}),
            "pretty_name": f"flexrec-bench {spec.name} (build {manifest['fingerprint']})",
            "task_categories": ["text-ranking"], "tags": ["recommendation", "llm-ranking", "flexrec-bench"],
            "configs": configs, "dataset_info": infos}
    from flexrec_bench.building.config import BuildConfig

    command = BuildConfig.from_manifest(manifest).command()
    needs = "\n".join(f"- **{n}**: {v['instruction']} Label: {v['label_source']}." for n, v in manifest["needs"].items())
    recall = (manifest.get("candidate_quality") or {}).get("test", {}).get("recall")
    ceilings = _ceilings(manifest)
    body = f"""# flexrec-bench: {spec.name}, build {manifest['fingerprint']}

{spec.description}. Need-aware ranking instances made by `flexrec-bench build-data` (flexrec-bench
{manifest['flexrec_bench_version']}): each row is one instance, a user's history (or a search query)
with a fixed candidate set in presented order, and the need's graded labels per candidate.

- Build command: `{command}` (fingerprint `{manifest['fingerprint']}`; `flexrec-bench verify-build`
  says how another build differs).
- Candidates per instance: {manifest['config'].get('candidates')}; candidate recall on test (held-out positives
  among the candidates): {'-' if recall is None else f'{recall:.3f}'}.
- Load it: `datasets.load_dataset("<this folder>", "<need>")` (configs: {', '.join(c['config_name'] for c in configs)}).
- Score rankings with `flexrec-bench eval`; the labels of `test` are what the leaderboard re-scores.

## Needs
{needs}
{ceilings}
## Licence
{spec.license_text or spec.license}{'' if spec.redistributable else ' **Not for upload**: `flexrec-bench publish-build` refuses it.'}

## Citation
```bibtex
{FLEXREC_CITATION}
{spec.citation}
```
"""
    path = root / CARD
    import yaml

    path.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body,
                    encoding="utf-8")
    return path


def _ceilings(manifest: dict) -> str:
    """The audit's two tests of each need's reading (flexrec_bench.building.formula_audit), as a Markdown table."""
    audit = manifest.get("audit") or {}
    formula = audit.get("formula") or {}
    if audit.get("formula_skipped"):
        return ("The formula audit was skipped for this build (`--no-formula-audit`); `flexrec-bench audit` runs it "
                "on the files.\n")
    if not formula:
        return ""

    def num(v):
        return "-" if v is None else f"{v:.3f}"

    rows = []
    for need, f in formula.items():
        blind = "reference" if f.get("need_blind_reference") else num(f.get("need_blind_ceiling"))
        flags = [w for w, on in (("solvable from what the ranker is shown", f.get("solvable")),
                                 ("a need-blind ranker solves it", f.get("need_blind"))) if on]
        rows.append(f"| {need} | {num(f.get('formula_ceiling'))} | {blind} | {num((f.get('scores') or {}).get('oracle'))} "
                    f"| {'; '.join(flags) or '-'} |")
    return ("\n## What the labels measure (NDCG@10 on test)\n"
            "Formula ceiling: the best ranker fitted on train from what a ranker is shown. Need-blind ceiling: "
            "ranking by the interest labels, which ignores the need line. A reading measures need-awareness "
            "only when both stay well below the oracle (`flexrec-bench audit`).\n\n"
            "| need | formula ceiling | need-blind ceiling | oracle | flag |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def check_repo_id(repo_id: str) -> None:
    if not REPO_ID.match(repo_id or ""):
        raise ConfigError(f"--repo-id must be owner/name (letters, digits, '-', '_', '.'; at most 96 each), got "
                          f"{repo_id!r}")


def publish_build(data_dir: str | Path, dataset: str, repo_id: str, private: bool = True, token: str | None = None) -> str:
    """Push a build folder to the Hub as a dataset repo; refused before any network call when the
    repo id is malformed, the source licence forbids redistribution, or the build has no card."""
    from flexrec_bench.datasets import DATASETS
    from flexrec_bench.building.splits import build_root, load_manifest

    check_repo_id(repo_id)
    spec = DATASETS.get(dataset)
    if not spec.redistributable:
        raise FlexRecError(f"{dataset}: its source data may not be redistributed ({spec.license_text or spec.license}); "
                           f"publish-build refuses it")
    load_manifest(data_dir, dataset)
    root = build_root(data_dir, dataset)
    if not (root / CARD).is_file():
        raise FlexRecError(f"{root}: no dataset card ({CARD}); rebuild with this version of flexrec-bench")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise MissingCapabilityError("publish-build needs huggingface_hub: pip install huggingface_hub") from None
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(root),
                                 commit_message=f"flexrec-bench build {load_manifest(data_dir, dataset)['fingerprint']}")
    except Exception as exc:  # offline mode, no token, no network: one line
        raise FlexRecError(f"publish-build {repo_id}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                           ) from None
    return str(getattr(info, "commit_url", info))
