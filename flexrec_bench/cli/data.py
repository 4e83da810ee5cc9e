"""Datasets: ls, download, embeddings export, build-data, verify-build, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.building.config import BuildConfig
from flexrec_bench.cli._app import DataOpt, DatasetOpt, _csv, _need_options, app
from flexrec_bench.cli._fields import Extra, config_command

@app.command("ls")
def ls_cmd() -> None:
    """List the datasets, needs and models known to the registries."""
    from flexrec_bench.datasets import DATASETS
    from flexrec_bench.building.labeling import NEEDS
    from flexrec_bench.ranking.rankers import RANKERS

    typer.echo("datasets:")
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        typer.echo(f"  {name:10s} {spec.description} (needs: {', '.join(spec.default_needs)})")
    typer.echo("needs:")
    for name in NEEDS.names():
        cls = NEEDS.get(name)
        typer.echo(f"  {name:10s} {cls.label_source}")
    typer.echo("models (--model):")
    for name in RANKERS.names():
        typer.echo(f"  {name}")


@app.command("download")
def download_cmd(
    dataset: Annotated[Optional[str], typer.Option(help="dataset whose official raw files to fetch (see `flexrec-bench ls`)")] = None,
    embeddings: Annotated[Optional[str], typer.Option(help="dataset whose pinned embeddings to fetch (verified by sha256 and size) into $FLEXREC_HOME/embeddings/pinned/")] = None,
    embedder: Annotated[str, typer.Option(help="with --embeddings: the embedder whose artifact to fetch")] = "all-MiniLM-L6-v2",
    from_url: Annotated[Optional[str], typer.Option("--from", help="with --embeddings: the base URL the artifacts are published under (<base>/<file>)")] = None,
    raw_dir: Annotated[Optional[Path], typer.Option(help="where to put the raw files; default $FLEXREC_HOME/raw/<dataset>")] = None,
) -> None:
    """Fetch a dataset's official files, or its pinned embeddings (checksum-verified, resumable, atomic)."""
    from flexrec_bench.datasets import DATASETS
    from flexrec_bench.datasets.download import fetch
    from flexrec_bench.foundation.io import sha256_file

    if (dataset is None) == (embeddings is None):
        raise FlexRecError("download needs exactly one of --dataset D (raw files) or --embeddings D (pinned embeddings)")
    if embeddings is not None:
        from flexrec_bench.datasets.download import DownloadSpec
        from flexrec_bench.datasets.pinned import BUNDLED_DIR, find, pinned_dir

        spec = DATASETS.get(embeddings)
        art = find(spec.embeddings, embedder)
        if art is None:
            raise FlexRecError(f"no pinned {embedder} embeddings are published for {embeddings} (published: "
                               f"{', '.join(a.embedder for a in spec.embeddings) or 'none'}); its builds compute them on "
                               f"the machine that builds (`flexrec-bench embeddings export` makes an artifact)")
        if from_url is None:
            if art.bundled:
                typer.echo(f"{BUNDLED_DIR / art.filename}: bundled with flexrec-bench, nothing to download")
                return
            raise FlexRecError(f"{art.filename} is not bundled: pass --from <base URL> where it is published")
        path = fetch(DownloadSpec(f"{from_url.rstrip('/')}/{art.filename}", art.filename, sha256=art.sha256,
                                  size=art.size), pinned_dir())
        typer.echo(f"{path} (sha256 {art.sha256[:12]}…, {art.texts} vectors): builds of {embeddings} with "
                   f"{embedder} use it")
        return
    from flexrec_bench.foundation.paths import raw_dir as default_raw

    spec = DATASETS.get(dataset)
    dest = raw_dir or default_raw(dataset)
    if spec.manual_instructions:
        raise FlexRecError(spec.manual_instructions.format(raw_dir=dest))
    for d in spec.downloads:
        path = fetch(d, dest)
        note = "" if d.sha256 else f" (no published sha256; this file's is {sha256_file(path)})"
        typer.echo(f"{path}{note}")
    typer.echo(f"done: build with `flexrec-bench build-data --dataset {dataset}`")


emb_app = typer.Typer(help="Pinned embeddings: the vectors every machine builds a dataset from.")
app.add_typer(emb_app, name="embeddings")


@emb_app.command("export")
def embeddings_export_cmd(
    dataset: Annotated[str, typer.Option(help="dataset whose texts to embed")] = "ml-100k",
    out: Annotated[Path, typer.Option(help="artifact file to write (<dataset>.<embedder>.npz)")] = Path("embeddings.npz"),
    raw_dir: Annotated[Optional[Path], typer.Option(help="raw files (as for build-data)")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="embedder (as for build-data; default: the dataset's)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Embed every text a build of the dataset uses, on this machine, and write a pinned artifact to publish."""
    from flexrec_bench.building.build import export_embeddings

    art = export_embeddings(BuildConfig(dataset=dataset, raw_dir=str(raw_dir) if raw_dir else None, embedder=embedder),
                            out, progress=not quiet, device=device)
    typer.echo(f"wrote {out}: {art.texts} vectors, {art.size} bytes, sha256 {art.sha256}")
    typer.echo(f"publish it and add to the {dataset} DatasetSpec: {art!r}")


@app.command("verify-build")
def verify_build_cmd(
    dataset: DatasetOpt = "ml-100k",
    data: DataOpt = Path("data"),
    path: Annotated[Optional[Path], typer.Option("--leaderboard", help="leaderboard file")] = None,
) -> None:
    """Is this build the registered one? If not, how it differs (inputs, candidate sets, labels). Exits 1 if it differs."""
    from leaderboard.builds import compare, format_comparison
    from leaderboard.submit import DEFAULT_PATH, load

    board_path = path or DEFAULT_PATH
    c = compare(data, dataset, load(board_path), board_path.parent)
    typer.echo(format_comparison(c))
    if not c["same"]:
        raise typer.Exit(1)


@app.command("build-data")
@config_command(BuildConfig, parse={"needs": _csv, "need_options": _need_options},
                flags={"need_options": ("--need-option",), "esci_locale": ("--esci-locale", "--locale"),
                       "formula_audit": ("--formula-audit/--no-formula-audit",)},
                help_suffix={"needs": " (comma-separated)", "need_options": " (need.field=value, repeatable: "
                             "niche.rule=none_seen, trend.window_seconds=604800, interest.watch_ratio_cap=3)",
                             "split_fractions": " (three comma-separated shares)"},
                extra={"device": Extra(str, "auto", "embedding device: auto (CUDA when present), cpu, cuda, cuda:1 "
                                                    "(speed only: not part of the build's fingerprint)"),
                       "quiet": Extra(bool, False, "no progress bars")})
def build_data_cmd(cfg: BuildConfig, device: str = "auto", quiet: bool = False) -> None:
    """Build a dataset: STAR candidates and need labels, written to Parquet with a manifest and a leak audit."""
    from flexrec_bench.building.build import build

    dataset, out = cfg.dataset, cfg.out
    res = build(cfg, progress=not quiet, device=device)
    m = res.manifest
    typer.echo(f"built {res.path} (fingerprint {m['fingerprint']}): {m['counts']['items']} items, "
               f"{m['counts']['interactions']} interactions")
    for need, c in m["counts"]["instances"].items():
        typer.echo(f"  {need}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    if m["skipped"]:
        typer.echo("  skipped: " + "; ".join(f"{k}: {v}" for k, v in m["skipped"].items()))
    typer.echo("  stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.stage_seconds.items()))
    audit = m["audit"]
    if audit["leak_free"]:
        typer.echo("  leak audit: ok (presented order independent of the labels; `flexrec-bench audit` for the figures)")
    else:
        typer.echo(f"  leak audit: LEAKS in {', '.join(audit['flagged'])} (candidate order {cfg.candidate_order}); "
                   f"run `flexrec-bench audit --dataset {dataset} --data {out}` for the figures", err=True)
    emb = m["embedder"]
    typer.echo(f"  {emb['note']}" + (f" ({emb['artifact']['file']})" if emb["artifact"] and not emb["machine_specific"]
                                     else ""))
    typer.echo(_registered_line(dataset, m["fingerprint"]))
    if audit.get("formula_skipped"):
        typer.echo(f"  formula audit: skipped (--no-formula-audit): no formula or need-blind ceiling was computed; "
                   f"`flexrec-bench audit --dataset {dataset} --data {out}` runs it on this build")
    else:
        typer.echo(_ceiling_line(m))


def _ceiling_line(manifest: dict) -> str:
    """The build's last line: each need's formula ceiling (NDCG@10 on test of the best ranker of
    shown inputs, flexrec_bench.building.formula_audit), its need-blind ceiling (ranking by the interest
    labels) and the candidate recall that caps every metric."""
    from flexrec_bench.building.formula_audit import solvable_line

    recall = (manifest.get("candidate_quality") or {}).get("test", {}).get("recall")
    formula = (manifest.get("audit") or {}).get("formula") or {}
    return (f"  formula ceiling NDCG@10 (test): {solvable_line(formula) or '-'}; candidate recall (test): "
            f"{'-' if recall is None else f'{recall:.3f}'} of held-out positives among the candidates")


def _registered_line(dataset: str, fingerprint: str) -> str:
    """Whether a build is the one the leaderboard accepts results on."""
    from leaderboard.submit import DEFAULT_PATH, load

    reg = load(DEFAULT_PATH).registered_builds.get(dataset)
    if reg is None:
        return f"  {dataset} has no registered build: results on it are not accepted by `flexrec-bench submit`"
    if reg.fingerprint == fingerprint:
        return f"  this is the registered {dataset} build {fingerprint}: `flexrec-bench submit` accepts results on it"
    return (f"  this is not the registered {dataset} build {reg.fingerprint}: `flexrec-bench verify-build --dataset "
            f"{dataset}` says how it differs")


@app.command("audit")
def audit_cmd(
    dataset: DatasetOpt = "ml-100k",
    data: DataOpt = Path("data"),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the full audit as JSON here")] = None,
    sample: Annotated[Optional[int], typer.Option("--audit-sample", help="the formula audit fits its rankers on at most "
                                                  "this many train instances, a seeded sample (bounds its cost; "
                                                  "default 2000, as in build-data)")] = None,
) -> None:
    """Leak audit: does the presented candidate order predict the labels? Exits 1 if it does. Also
    each need's formula ceiling: how far rankers fitted on what a ranker is shown get (a need they
    solve is reported as solvable from what the ranker is shown, not as a leak)."""
    from flexrec_bench.building.audit import audit_build, format_audit
    from flexrec_bench.foundation.io import write_json_atomic

    from flexrec_bench.building.formula_audit import FIT_INSTANCES

    if sample is not None and sample < 1:
        raise typer.BadParameter(f"must be an integer >= 1 (train instances the formula audit fits on), got {sample}",
                                 param_hint="--audit-sample")
    summary = audit_build(data, dataset, sample=FIT_INSTANCES if sample is None else sample)
    typer.echo(format_audit(summary))
    if json_out:
        write_json_atomic(json_out, summary)
    if not summary["leak_free"]:
        typer.echo(f"{dataset}: the presented candidate order predicts the labels ({summary['rule']})", err=True)
        raise typer.Exit(1)


@app.command("publish-build")
def publish_build_cmd(
    repo_id: Annotated[str, typer.Option("--repo-id", help="the Hub dataset repo, owner/name")],
    dataset: DatasetOpt = "ml-100k",
    data: DataOpt = Path("data"),
    public: Annotated[bool, typer.Option(help="create the repo public (default: private)")] = False,
) -> None:
    """Push a build (its Parquet files, manifest and dataset card) to the Hugging Face Hub. Refused,
    before any network call, for a malformed repo id or a dataset whose licence forbids redistribution
    (MovieLens)."""
    from flexrec_bench.building.card import publish_build

    url = publish_build(data, dataset, repo_id, private=not public)
    typer.echo(f"published {dataset} to {repo_id}: {url}")
