"""Training: train-critic, train, config show, train-baseline, make-tiny-model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from training.config import (ALGOS, BACKENDS, ESTIMATORS, ITEM_REWARD_VARIANTS, PRESETS, REWARD_SIGNALS,
                             CriticConfig)

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.cli._app import DataOpt, DatasetOpt, _csv, _options, app
from flexrec_bench.cli._fields import Extra, config_command


@app.command("train-critic")
@config_command(CriticConfig, help_suffix={"split": " (three comma-separated shares)"}, extra={
    "dataset": Extra(str, "ml-100k", "built dataset"),
    "data": Extra(Path, Path("data"), "the --out of build-data"),
    "out": Extra(Optional[Path], None, "checkpoint directory (default <data>/critics/<dataset>, where "
                                        "`train --algo flexrec` finds it)"),
    "resume": Extra(bool, False, "continue a stopped run from its critic_state.pt (saved every epoch)"),
    "quiet": Extra(bool, False, "no progress bars")})
def train_critic_cmd(ccfg: CriticConfig, dataset: str = "ml-100k", data: Path = Path("data"),
                     out: Optional[Path] = None, resume: bool = False, quiet: bool = False) -> None:
    """Train the uncertainty critic on observed interactions; report MSE, MAE and correlations."""
    from training.config import default_critic_dir
    from training.critic import train_critic

    dest = out or default_critic_dir(data, dataset)
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
    algo: Annotated[str, typer.Option(help=" | ".join(ALGOS))] = "flexrec",
    model: Annotated[str, typer.Option(help="policy: Hugging Face name or local path")] = "",
    dataset: DatasetOpt = "ml-100k",
    need: Annotated[str, typer.Option(help="comma-separated training needs (several = joint training)")] = "interest",
    eval_need: Annotated[Optional[str], typer.Option(help="comma-separated validation needs (default: --need)")] = None,
    data: DataOpt = Path("data"),
    config: Annotated[Optional[Path], typer.Option(help="YAML config (default training/configs/<algo>.yaml)")] = None,
    backend: Annotated[str, typer.Option(help=f"{' | '.join(BACKENDS)}: local is TRL (CPU or a few GPUs), verl "
                                              f"is GPUs + vLLM")] = "local",
    critic: Annotated[Optional[Path], typer.Option(help="critic checkpoint directory (with --set reward_signal=critic)")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="checkpoint directory")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="optimizer steps")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=(
        "key=value (repeatable): a flexrec field or any trl.GRPOConfig field. Ablation axes: "
        f"item_reward={'|'.join(ITEM_REWARD_VARIANTS)}; reward_signal={'|'.join(REWARD_SIGNALS)}; "
        f"uncertainty=true|false; estimator={'|'.join(ESTIMATORS)} (ppo: --backend verl only); "
        "reasoning=true|false"))] = None,
    preset: Annotated[Optional[str], typer.Option(help=f"{' | '.join(PRESETS)} (smoke: a CPU run in about a minute): "
                                                       "training/configs/presets/<name>.yaml on top of the config")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the newest checkpoint in --output-dir")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the fully resolved config (TRL arguments or verl overrides) "
                                               "and exit without loading a model")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Post-train an LLM ranker: FlexRec, Rec-R1 or Rank-GRPO (GRPO locally with TRL; GRPO or PPO on verl).
    Every field, with its type, value and source: `flexrec-bench config show --algo ALGO [--preset P]`."""
    from training.config import algo_config, layered_config

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
        from training.config import reward_signal_line

        from flexrec_bench.foundation.secrets import redact

        resolved = resolve(cfg)
        # the resolved reward signal with its reason, first in the printed JSON (stdout stays one JSON document)
        typer.echo(json.dumps(redact({"reward_signal": reward_signal_line(cfg), **resolved}), indent=2, default=str))
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


config_app = typer.Typer(help="Training configurations: every field with its type, value and source.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show_cmd(
    algo: Annotated[str, typer.Option(help=" | ".join(ALGOS))] = "flexrec",
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
    dataset: DatasetOpt = "ml-100k",
    data: DataOpt = Path("data"),
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
        from flexrec_bench.foundation.registry import did_you_mean

        raise FlexRecError(f"unknown baseline {name!r}; {did_you_mean(name, ['bert4rec', 'tallrec'])}. "
                           "STAR is `eval --model star`; Rec-R1 and Rank-GRPO are `train --algo rec-r1|rank-grpo`.")


@app.command("make-tiny-model")
def make_tiny_model_cmd(
    out: Annotated[Path, typer.Argument(help="directory to write the model and tokenizer to")],
    hidden_size: Annotated[int, typer.Option(help="hidden size")] = 64,
    layers: Annotated[int, typer.Option(help="decoder layers")] = 2,
    seed: Annotated[int, typer.Option(help="initialisation seed")] = 0,
) -> None:
    """Write a random-init Qwen2 causal LM with a locally trained tokenizer (no download), for smoke runs."""
    from flexrec_bench.ranking.tiny import build_tiny_model

    typer.echo(f"wrote {build_tiny_model(out, hidden_size=hidden_size, layers=layers, seed=seed)}")
