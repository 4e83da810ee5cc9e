"""The ``flexrec-bench`` command. Heavy parts (RecBole, TRL, verl, vLLM, transformers) are imported
only inside the subcommands that need them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import FlexRecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Need-aware LLM recommendation: build datasets, evaluate rankers, train, submit.")


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _options(pairs: list[str] | None) -> dict:
    from .secrets import is_secret_name, remember

    out = {}
    for p in pairs or []:
        key, sep, val = p.partition("=")
        if not sep or not key:
            raise FlexRecError(f"--option expects key=value, got {p!r}")
        key = key.strip().replace("-", "_")
        if is_secret_name(key):
            remember(val)  # never written anywhere from here on (flexrec_bench.secrets)
        out[key] = val
    return out


def _need_options(pairs: list[str] | None) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for p in pairs or []:
        key, sep, val = p.partition("=")
        need, dot, field = key.strip().partition(".")
        if not sep or not dot or not need or not field:
            raise FlexRecError(f"--need-option expects need.field=value (e.g. niche.bonus=1), got {p!r}")
        out.setdefault(need, {})[field.replace("-", "_")] = val
    return out


@app.command("ls")
def ls_cmd() -> None:
    """List the datasets, needs and models known to the registries."""
    from .datasets import DATASETS
    from .need import NEEDS
    from .rankers import RANKERS

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
    from .datasets import DATASETS
    from .download import fetch
    from .io import sha256_file

    if (dataset is None) == (embeddings is None):
        raise FlexRecError("download needs exactly one of --dataset D (raw files) or --embeddings D (pinned embeddings)")
    if embeddings is not None:
        from .download import DownloadSpec
        from .pinned import BUNDLED_DIR, find, pinned_dir

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
    from .paths import raw_dir as default_raw

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
    from .build import BuildConfig, export_embeddings

    art = export_embeddings(BuildConfig(dataset=dataset, raw_dir=str(raw_dir) if raw_dir else None, embedder=embedder),
                            out, progress=not quiet, device=device)
    typer.echo(f"wrote {out}: {art.texts} vectors, {art.size} bytes, sha256 {art.sha256}")
    typer.echo(f"publish it and add to the {dataset} DatasetSpec: {art!r}")


@app.command("verify-build")
def verify_build_cmd(
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
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
def build_data_cmd(
    dataset: Annotated[str, typer.Option(help="ml-100k (offline default), ml-1m, kuairec or esci")] = "ml-100k",
    raw_dir: Annotated[Optional[Path], typer.Option(help="raw files; default: bundled copy (ml-100k) or $FLEXREC_HOME/raw/<dataset>")] = None,
    out: Annotated[Path, typer.Option(help="output root; writes <out>/<dataset>/")] = Path("data"),
    needs: Annotated[Optional[str], typer.Option(help="comma-separated needs (default: the dataset's)")] = None,
    candidates: Annotated[int, typer.Option(help="candidates per instance (STAR top-K)")] = 30,
    history: Annotated[int, typer.Option(help="most recent history items per instance")] = 20,
    min_history: Annotated[int, typer.Option(help="fewest past interactions before a cut point")] = 5,
    stride: Annotated[int, typer.Option(help="interactions between consecutive cut points of a user")] = 5,
    embedder: Annotated[Optional[str], typer.Option(help="sentence-transformers model name/path, hashing-<dim> (word hashing), ngrams-<dim> (character 1-3-gram hashing, reads Chinese), or openai:<model> (an OpenAI-compatible /embeddings endpoint: OPENAI_BASE_URL, OPENAI_API_KEY); default: the dataset's (all-MiniLM-L6-v2; kuairec: ngrams-384)")] = None,
    embeddings: Annotated[str, typer.Option(help="auto: the pinned vectors where published for the dataset and embedder (the same build on every machine), else computed here; pinned: require them; local: compute here (the fingerprint is then machine-specific)")] = "auto",
    train_size: Annotated[int, typer.Option(help="train instances per need")] = 5000,
    val_size: Annotated[Optional[int], typer.Option(help="val instances per need (default: --test-size)")] = None,
    test_size: Annotated[int, typer.Option(help="test instances per need")] = 1000,
    seed: Annotated[int, typer.Option(help="seed of splits and samples; same seed -> byte-identical Parquet")] = 0,
    observed_fraction: Annotated[Optional[float], typer.Option(help="share of interactions kept as observed training signal (default: 0.1 KuaiRec, 1.0 otherwise)")] = None,
    candidate_order: Annotated[str, typer.Option(help="order the ranker sees: 'shuffled' (seeded per instance, label-free) or 'retrieval' (hands STAR's order to the ranker; leaks labels, the audit flags it)")] = "shuffled",
    need_option: Annotated[Optional[list[str]], typer.Option("--need-option", help="label parameter need.field=value, repeatable (e.g. niche.rule=share_unseen, niche.bonus=1, trend.alpha=0.7, interest.watch_ratio_cap=3)")] = None,
    locale: Annotated[str, typer.Option(help="ESCI product locale: us, es or jp")] = "us",
    esci_version: Annotated[str, typer.Option(help="ESCI examples: 'small' (the reduced task-1 set) or 'large'")] = "small",
    ensure_positive: Annotated[bool, typer.Option(help="(ours, off as in the paper) where no future positive was retrieved, put one in place of the weakest candidate (counted in the manifest)")] = False,
    device: Annotated[str, typer.Option(help="embedding device: auto (CUDA when present), cpu, cuda, cuda:1 (speed only: not part of the build's fingerprint)")] = "auto",
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Build a dataset: STAR candidates and need labels, written to Parquet with a manifest and a leak audit."""
    from .build import BuildConfig, build

    cfg = BuildConfig(dataset=dataset, raw_dir=str(raw_dir) if raw_dir else None, out=str(out), needs=_csv(needs),
                      candidates=candidates, history=history, min_history=min_history, stride=stride,
                      embedder=embedder, embeddings=embeddings, train_size=train_size, val_size=val_size, test_size=test_size, seed=seed,
                      observed_fraction=observed_fraction, candidate_order=candidate_order,
                      ensure_positive=ensure_positive, esci_locale=locale, esci_version=esci_version,
                      need_options=_need_options(need_option))
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
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the full audit as JSON here")] = None,
) -> None:
    """Leak audit: does the presented candidate order predict the labels? Exits 1 if it does."""
    from .audit import audit_build, format_audit
    from .io import write_json_atomic

    summary = audit_build(data, dataset)
    typer.echo(format_audit(summary))
    if json_out:
        write_json_atomic(json_out, summary)
    if not summary["leak_free"]:
        typer.echo(f"{dataset}: the presented candidate order predicts the labels ({summary['rule']})", err=True)
        raise typer.Exit(1)


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Option(help="random, popularity, oracle, star, hf:<path>, vllm:<path>, openai:<model>, bert4rec:<ckpt>")] = "star",
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    need: Annotated[str, typer.Option(help="need to score")] = "interest",
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
    limit: Annotated[Optional[int], typer.Option(help="score only the first N instances")] = None,
    out: Annotated[Path, typer.Option(help="results root")] = Path("results"),
    seed: Annotated[int, typer.Option(help="seed of ties, padding and the bootstrap")] = 0,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for the 95% CIs")] = 1000,
    metrics: Annotated[Optional[str], typer.Option(help="comma-separated metrics, name@k (default: ndcg@5,ndcg@10,ndcg@30,recall@5,precision@5,mrr@5)")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="ranker option key=value (e.g. batch_size=4, base_url=..., max_prompt_tokens=2048), repeatable; options that change the output make a variant (its own results folder and leaderboard entry)")] = None,
    name: Annotated[Optional[str], typer.Option(help="display name on the leaderboard (default: the --model string)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Rank a built split with one model and score it with the one evaluator."""
    from .evaluator import EvalConfig, run_eval
    from .metrics import DEFAULT_METRICS

    cfg = EvalConfig(model=model, dataset=dataset, need=need, split=split, data=str(data), limit=limit, out=str(out),
                     seed=seed, bootstrap=bootstrap, metrics=_csv(metrics) or DEFAULT_METRICS, options=_options(option),
                     name=name)
    res, report, path = run_eval(cfg, progress=not quiet)
    typer.echo(f"{model} on {dataset}/{need}/{split} ({res.dataset.instances} instances, fingerprint "
               f"{res.dataset.fingerprint}, {res.provenance.wall_seconds:.1f}s)")
    typer.echo(report.table())
    if res.parse:
        p = res.parse
        typer.echo(f"parse: {p.unparseable} unparseable, {p.invalid_ids} invalid ids, {p.duplicates} duplicates, "
                   f"{p.missing_items} missing items padded, {p.complete}/{p.instances} complete")
    typer.echo(f"wrote {path}")


@app.command("prompt")
def prompt_cmd(
    need: Annotated[str, typer.Option(help="need")] = "interest",
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    index: Annotated[int, typer.Option(help="instance (row) of the split")] = 0,
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
    reasoning: Annotated[bool, typer.Option(help="ask for a <think> block first")] = False,
) -> None:
    """Print the chat prompt every LLM ranker and trainer sends for one instance (docs/prompts.md)."""
    from .data import load_split
    from .prompts import PromptConfig, split_messages

    s = load_split(data, dataset, need, split)
    if not 0 <= index < len(s):
        raise FlexRecError(f"--index must be in 0..{len(s) - 1} for {dataset}/{need}/{split}, got {index}")
    for m in split_messages(s, index, PromptConfig(reasoning=reasoning)):
        typer.echo(f"<{m['role']}>\n{m['content']}\n")


@app.command("compare")
def compare_cmd(
    results: Annotated[list[Path], typer.Argument(help="two or more results.json files (one build, need and split)")],
    data: Annotated[Path, typer.Option(help="the --out of build-data (labels are re-read from here)")] = Path("data"),
    metrics: Annotated[Optional[str], typer.Option(help="comma-separated metrics (default: the runs' shared "
                                                        "metrics and the per-list beyond-accuracy ones)")] = None,
    test: Annotated[str, typer.Option(help="paired test: wilcoxon (signed-rank) or t")] = "wilcoxon",
    bootstrap: Annotated[int, typer.Option(help="paired-bootstrap resamples for the CI of the difference")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of the table")] = False,
) -> None:
    """Compare runs pair by pair on their shared instances: paired bootstrap CI, paired test, Holm correction."""
    from .compare import compare_runs, format_table

    pairs = compare_runs(results, data, tuple(_csv(metrics) or ()) or None, test, bootstrap, seed)
    typer.echo(json.dumps([p.to_dict() for p in pairs], indent=2) if as_json else format_table(pairs))


@app.command("train-critic")
def train_critic_cmd(
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
    out: Annotated[Optional[Path], typer.Option(help="checkpoint directory (default <data>/critics/<dataset>, where `train --algo flexrec` finds it)")] = None,
    epochs: Annotated[int, typer.Option(help="training epochs")] = 30,
    max_pairs: Annotated[Optional[int], typer.Option(help="subsample observed pairs (quick runs)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the 8:1:1 split and initialisation")] = 0,
    patience: Annotated[Optional[int], typer.Option(help="(ours, off: the paper trains every epoch) stop after this many epochs without a better validation MSE")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda")] = "auto",
    resume: Annotated[bool, typer.Option(help="continue a stopped run from its critic_state.pt (saved every epoch)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Train the uncertainty critic on observed interactions; report MSE, MAE and correlations."""
    from training.config import default_critic_dir
    from training.critic import CriticConfig, train_critic

    dest = out or default_critic_dir(data, dataset)
    ccfg = CriticConfig(epochs=epochs, max_pairs=max_pairs, seed=seed, patience=patience, device=device)
    _, rep = train_critic(data, dataset, ccfg, dest, progress=not quiet, resume=resume)
    typer.echo(f"critic on {dataset} ({rep['device']}): pairs {rep['pairs']}; kept epoch {rep['epoch_kept']} of "
               f"{rep['epochs_run']} run")
    typer.echo(f"  test MSE {rep['test_mse']:.4f} (predicting the training mean: {rep['baseline_mse_predict_mean']:.4f}), "
               f"MAE {rep['test_mae']:.4f}")
    typer.echo(f"  Pearson(mean, label) {rep['test_pearson_mean']:.3f}, "
               f"Pearson(variance, squared error) {rep['test_pearson_var_sqerr']:.3f}")
    typer.echo(f"wrote {dest}/critic.pt, metrics.json and table4.md")


@app.command("train")
def train_cmd(
    algo: Annotated[str, typer.Option(help="flexrec, rec-r1 or rank-grpo")] = "flexrec",
    model: Annotated[str, typer.Option(help="policy: Hugging Face name or local path")] = "",
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    need: Annotated[str, typer.Option(help="comma-separated training needs (several = joint training)")] = "interest",
    eval_need: Annotated[Optional[str], typer.Option(help="comma-separated validation needs (default: --need)")] = None,
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
    config: Annotated[Optional[Path], typer.Option(help="YAML config (default training/configs/<algo>.yaml)")] = None,
    backend: Annotated[str, typer.Option(help="local (TRL, CPU or a few GPUs) or verl (GPUs + vLLM)")] = "local",
    critic: Annotated[Optional[Path], typer.Option(help="critic checkpoint directory (with --set reward_signal=critic)")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="checkpoint directory")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="optimizer steps")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=(
        "key=value (repeatable): a flexrec field or any trl.GRPOConfig field. Ablation axes: "
        "item_reward=sequence|independent|noncausal_swap|causal_swap; "
        "reward_signal=observed|item_knn|user_knn|critic; uncertainty=true|false; "
        "estimator=grpo|ppo (ppo: --backend verl only); reasoning=true|false"))] = None,
    preset: Annotated[Optional[str], typer.Option(help="smoke (a CPU run in about a minute), paper or gpu: "
                                                       "training/configs/presets/<name>.yaml on top of the config")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the newest checkpoint in --output-dir")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the fully resolved config (TRL arguments or verl overrides) "
                                               "and exit without loading a model")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Post-train an LLM ranker: FlexRec, Rec-R1 or Rank-GRPO (GRPO locally with TRL; GRPO or PPO on verl).
    Every field, with its type, value and source: `flexrec-bench config show --algo ALGO [--preset P]`."""
    from training.config import BACKENDS, algo_config, layered_config

    if backend not in BACKENDS:
        raise FlexRecError(f"unknown --backend {backend!r}: local or verl")
    if not quiet and not dry_run:  # the first sign of life: TRL (which checks the config) takes seconds to import
        typer.echo(f"train: {algo} on {dataset}/{need}, model {model or '?'}{f', preset {preset}' if preset else ''}; "
                   f"loading TRL, the data and the model", err=True)
    cfg_path = config or algo_config(algo)
    if config is not None and not config.exists():
        raise FlexRecError(f"{config}: no such training config")
    overrides = {"algo": algo, "model": model, "dataset": dataset, "needs": need, "eval_needs": eval_need,
                 "data": str(data), "critic": str(critic) if critic else None,
                 "output_dir": str(output_dir) if output_dir else None, "max_steps": max_steps}
    cfg, _ = layered_config(cfg_path if cfg_path.exists() else None, preset, overrides, _options(set_))
    if dry_run:
        if backend == "local":
            from training.local import dry_run as resolve
        else:
            from training.verl_backend import dry_run as resolve
        from .secrets import redact

        typer.echo(json.dumps(redact(resolve(cfg)), indent=2, default=str))
        return
    if backend == "local":
        from training.local import train_local

        final = train_local(cfg, progress=not quiet, resume=resume)
    else:
        if resume:
            raise FlexRecError("--resume is for the local backend; verl resumes with its own trainer.resume_mode")
        from training.verl_backend import launch_verl

        final = launch_verl(cfg)
    typer.echo(f"checkpoint: {final} (evaluate with `flexrec-bench eval --model hf:{final}`)")


@app.command("reproduce")
def reproduce_cmd(
    model: Annotated[str, typer.Option(help="base LLM of every trained row (Hugging Face name or local path)")],
    table: Annotated[Optional[int], typer.Option(help="the paper's table whose grid to run: 1, 2, 3, 6, 7, 8 or 9")] = None,
    figure: Annotated[Optional[int], typer.Option(help="the paper's figure to run: 2 (joint training), 3 (reward designs) or 4 (reward signals)")] = None,
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
    out: Annotated[Path, typer.Option(help="output folder (runs/, results/ and table<N>/ or figure<N>/ with .md, .png, .json)")] = Path(
        "benchmarks/out/reproduce"),
    need: Annotated[Optional[str], typer.Option(help="need the trained rows learn (default: the dataset's first need: interest; search on ESCI)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="RL steps per trained cell (default: the configs')")] = None,
    seeds: Annotated[int, typer.Option(help="training runs per trained cell (seeds --seed, --seed + 1, ...)")] = 1,
    limit: Annotated[Optional[int], typer.Option(help="first N test instances (default: all)")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for the 95% CIs (0 or >= 100)")] = 1000,
    seed: Annotated[int, typer.Option(help="the first training seed (and the evaluation's)")] = 0,
    critic: Annotated[Optional[Path], typer.Option(help="Table 8 / Figure 4: a trained critic (default: train one)")] = None,
    openai_model: Annotated[Optional[str], typer.Option(help="the GPT-4o row's model (OpenAI-compatible)")] = None,
    miniature: Annotated[bool, typer.Option(help="CPU smoke preset: 2 steps, tiny batches, a few instances (every cell runs; the numbers mean nothing)")] = False,
    preset: Annotated[Optional[str], typer.Option(help="training preset for every trained cell (e.g. miniature: the toy dataset's, benchmarks/miniature.py)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="training option for every cell, key=value")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Run the grid of one of the paper's tables or figures and write it in the paper's layout (markdown, PNG,
    JSON) with 95% CIs, the paper-comparable means and the paper's numbers beside ours. Finished cells are reused."""
    from leaderboard.schema import load_paper
    from reproduce import ReproduceConfig, run_grid

    cfg = ReproduceConfig(model=model, table=table, figure=figure, dataset=dataset, data=str(data), out=str(out),
                          need=need, steps=steps, seeds=seeds, test_limit=limit, bootstrap=bootstrap, seed=seed,
                          critic=str(critic) if critic else None, openai_model=openai_model, miniature=miniature,
                          preset=preset, sets=_options(set_))
    result = run_grid(cfg, [r.model_dump() for r in load_paper().reported_in_paper], progress=not quiet)
    ran = sum(1 for r in result["rows"] if not r["missing"])
    typer.echo(f"{cfg.name}: {ran} of {len(result['rows'])} cells run; wrote {out}/{cfg.name}/{cfg.name}.md, .png "
               f"and .json")


config_app = typer.Typer(help="Training configurations: every field with its type, value and source.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show_cmd(
    algo: Annotated[str, typer.Option(help="flexrec, rec-r1 or rank-grpo")] = "flexrec",
    preset: Annotated[Optional[str], typer.Option(help="smoke, paper or gpu")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key=value (repeatable)")] = None,
    all_fields: Annotated[bool, typer.Option("--all", help="also every TRL field left at its default")] = False,
) -> None:
    """List the training fields (flexrec-bench's own and TRL's GRPOConfig), with type, value and source."""
    from training.config import algo_config, describe, layered_config

    path = algo_config(algo)
    cfg, source = layered_config(path if path.exists() else None, preset, {"algo": algo}, _options(set_))
    rows = [r for r in describe(cfg, source) if all_fields or r["source"] != "trl.GRPOConfig default"]
    width = max(len(r["field"]) for r in rows)
    for r in rows:
        typer.echo(f"{r['field']:<{width}}  {r['value']:<24} {r['type']:<22} {r['source']:<26} {r['help']}")
    if not all_fields:
        typer.echo("(TRL fields at GRPOConfig's defaults are left out: --all lists them; any of them works with --set)")


@app.command("train-baseline")
def train_baseline_cmd(
    name: Annotated[str, typer.Argument(help="bert4rec or tallrec")],
    dataset: Annotated[str, typer.Option(help="built dataset")] = "ml-100k",
    data: Annotated[Path, typer.Option(help="the --out of build-data")] = Path("data"),
    out: Annotated[Optional[Path], typer.Option(help="checkpoint directory (default checkpoints/<name>-<dataset>)")] = None,
    model: Annotated[str, typer.Option(help="tallrec: base LLM (name or path)")] = "",
    need: Annotated[str, typer.Option(help="tallrec: comma-separated training needs")] = "interest",
    max_steps: Annotated[Optional[int], typer.Option(help="tallrec: SFT steps")] = None,
    limit: Annotated[Optional[int], typer.Option(help="tallrec: first N training instances per need")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="bert4rec: RecBole config key=value; tallrec: SFT setting key=value (repeatable)")] = None,
    resume: Annotated[bool, typer.Option(help="bert4rec: continue an interrupted run, or a finished one to more --set epochs=N")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Train a baseline; evaluate it with `eval --model bert4rec:<dir>` or `--model hf:<dir>/final`."""
    sets = _options(set_)
    dest = out or Path("checkpoints") / f"{name}-{dataset}"
    if name == "bert4rec":
        import yaml

        from baselines.bert4rec.runner import Bert4RecSettings, train_bert4rec

        # RecBole's own config keys (no schema here): values read as YAML scalars, RecBole checks them
        sets = {k: yaml.safe_load(v) for k, v in sets.items()}
        final = train_bert4rec(data, dataset, dest, Bert4RecSettings(overrides=sets), progress=not quiet, resume=resume)
        typer.echo(f"checkpoint: {final} (evaluate with `flexrec-bench eval --model bert4rec:{final}`)")
    elif name == "tallrec":
        if not model:
            raise FlexRecError("tallrec needs --model (the base LLM)")
        from baselines.tallrec import tallrec_settings, train_tallrec

        if max_steps is not None:
            sets["max_steps"] = max_steps
        final = train_tallrec(model, data, dataset, list(_csv(need) or ("interest",)), dest, tallrec_settings(**sets),
                              limit=limit, progress=not quiet)
        typer.echo(f"checkpoint: {final} (evaluate with `flexrec-bench eval --model hf:{final}`)")
    else:
        from .registry import did_you_mean

        raise FlexRecError(f"unknown baseline {name!r}; {did_you_mean(name, ['bert4rec', 'tallrec'])}. "
                           "STAR is `eval --model star`; Rec-R1 and Rank-GRPO are `train --algo rec-r1|rank-grpo`.")


@app.command("submit")
def submit_cmd(
    results: Annotated[Path, typer.Argument(help="a results.json written by `flexrec-bench eval`")],
    leaderboard: Annotated[Optional[Path], typer.Option(help="leaderboard file (default leaderboard/leaderboard.json)")] = None,
    data: Annotated[Path, typer.Option(help="the locally built datasets to re-score against")] = Path("data"),
    replace: Annotated[bool, typer.Option(help="replace an existing entry with the same key (a run of the same declared model)")] = False,
    reviewer: Annotated[bool, typer.Option(help="a reviewer's replacement: allow --replace by a run that declares another model configuration")] = False,
) -> None:
    """Verify a results file (schema, fingerprint, permutations, re-scored metrics) and add it."""
    from leaderboard.submit import DEFAULT_PATH, submit

    entry, replaced = submit(results, leaderboard or DEFAULT_PATH, data, replace, reviewer=reviewer)
    r = entry.results
    typer.echo(f"{'replaced' if replaced else 'added'}: {r.model.name} on {r.dataset.name}/{r.dataset.need}/"
               f"{r.dataset.split} (re-scored {entry.verification.instances} instances)")


lb_app = typer.Typer(help="Show the leaderboard, or render it as a static page.", invoke_without_command=True,
                     no_args_is_help=False)
app.add_typer(lb_app, name="leaderboard")


@lb_app.callback()
def leaderboard_cmd(
    ctx: typer.Context,
    dataset: Annotated[Optional[str], typer.Option(help="only this dataset")] = None,
    need: Annotated[Optional[str], typer.Option(help="only this need")] = None,
    path: Annotated[Optional[Path], typer.Option("--leaderboard", help="leaderboard file")] = None,
) -> None:
    """Print the leaderboard tables."""
    if ctx.invoked_subcommand is not None:
        return
    from leaderboard.submit import DEFAULT_PATH, load, table

    typer.echo(table(load(path or DEFAULT_PATH), dataset, need))


@lb_app.command("verify")
def leaderboard_verify_cmd(
    path: Annotated[Optional[Path], typer.Option("--leaderboard", help="leaderboard file")] = None,
    data: Annotated[Path, typer.Option(help="the locally built registered datasets to re-score against")] = Path("data"),
) -> None:
    """Re-score every entry from the rankings the board keeps; exits 1 if any entry does not hold."""
    from leaderboard.submit import DEFAULT_PATH, load, verify_board

    board_path = path or DEFAULT_PATH
    problems = verify_board(board_path, data)
    n = len(load(board_path).entries)
    for p in problems:
        typer.echo(f"FAIL {p}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{n} entries re-scored from their kept rankings: every one holds")


@lb_app.command("render")
def render_cmd(
    out: Annotated[Path, typer.Option(help="output folder for index.html")] = Path("site"),
    path: Annotated[Optional[Path], typer.Option("--leaderboard", help="leaderboard file")] = None,
) -> None:
    """Write the leaderboard as a static HTML page (tables with CIs and provenance, bar charts)."""
    from leaderboard.render import render
    from leaderboard.submit import DEFAULT_PATH, load

    typer.echo(f"wrote {render(load(path or DEFAULT_PATH), out)}")


@app.command("make-tiny-model")
def make_tiny_model_cmd(
    out: Annotated[Path, typer.Argument(help="directory to write the model and tokenizer to")],
    hidden_size: Annotated[int, typer.Option(help="hidden size")] = 64,
    layers: Annotated[int, typer.Option(help="decoder layers")] = 2,
    seed: Annotated[int, typer.Option(help="initialisation seed")] = 0,
) -> None:
    """Write a random-init Qwen2 causal LM with a locally trained tokenizer (no download), for smoke runs."""
    from .tiny import build_tiny_model

    typer.echo(f"wrote {build_tiny_model(out, hidden_size=hidden_size, layers=layers, seed=seed)}")


def main() -> None:
    from .secrets import redact_text

    try:
        app()
    except FlexRecError as exc:
        typer.echo(f"error: {redact_text(str(exc))}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
