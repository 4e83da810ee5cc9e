"""Scoring: eval, prompt, compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.scoring.eval_config import EvalConfig
from flexrec_bench.cli._app import DataOpt, DatasetOpt, _csv, _options, app
from flexrec_bench.cli._fields import Extra, config_command

@app.command("eval")
@config_command(EvalConfig, parse={"metrics": _csv, "options": _options},
                flags={"options": ("--option", "-o")},
                help_suffix={"model": " (random, popularity, oracle, star, hf:<path>, vllm:<path>, openai:<model>, "
                                      "bert4rec:<ckpt>)",
                             "metrics": " (comma-separated name@k)",
                             "options": " (key=value, repeatable, e.g. batch_size=4, base_url=...; options that change "
                                        "the output make a variant: its own results folder and leaderboard entry). "
                                        "hf: batch_size (8), max_new_tokens (5 per candidate + 32), max_prompt_tokens "
                                        "(3072), max_item_chars (240), reasoning (false), dtype (auto), device (auto), "
                                        "revision, trust_remote_code (false), sample (false), temperature (1.0), "
                                        "threads (torch's), stop_at_k (true: stop once all K ids are named); "
                                        "docs/usage.md lists every ranker's options"},
                extra={"quiet": Extra(bool, False, "no progress bars")})
def eval_cmd(cfg: EvalConfig, quiet: bool = False) -> None:
    """Rank a built split with one model and score it with the one evaluator."""
    from flexrec_bench.scoring.evaluator import run_eval

    model, dataset, need, split = cfg.model, cfg.dataset, cfg.need, cfg.split
    res, report, path = run_eval(cfg, progress=not quiet)
    typer.echo(f"{model} on {dataset}/{need}/{split} ({res.dataset.instances} instances, fingerprint "
               f"{res.dataset.fingerprint}, {res.provenance.wall_seconds:.1f}s)")
    typer.echo(report.table())
    if res.parse:
        p = res.parse
        typer.echo(f"parse: {p.unparseable} unparseable, {p.invalid_ids} invalid ids, {p.duplicates} duplicates, "
                   f"{p.missing_items} missing items padded, {p.complete}/{p.instances} complete; "
                   f"{p.echoed}/{p.instances} repeat the presented order, {p.first_shown_first}/{p.instances} rank the "
                   f"first-shown candidate first")
        for line in p.warnings():
            typer.echo(line, err=True)
    if res.position_bias:
        from flexrec_bench.scoring.position_bias import format_probe

        typer.echo(format_probe(res.position_bias))
    typer.echo(f"wrote {path}")


@app.command("prompt")
def prompt_cmd(
    need: Annotated[str, typer.Option(help="need")] = "interest",
    dataset: DatasetOpt = "ml-100k",
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    index: Annotated[int, typer.Option(help="instance (row) of the split")] = 0,
    data: DataOpt = Path("data"),
    reasoning: Annotated[bool, typer.Option(help="ask for a <think> block first")] = False,
) -> None:
    """Print the chat prompt every LLM ranker and trainer sends for one instance (docs/prompts.md)."""
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.ranking.prompts import PromptConfig, split_messages

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
    test: Annotated[str, typer.Option(help="paired test: t (of the mean difference, the default) or wilcoxon "
                                           "(signed-rank; exact ties kept, zero_method=zsplit)")] = "t",
    bootstrap: Annotated[int, typer.Option(help="paired-bootstrap resamples for the CI of the difference")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of the table")] = False,
) -> None:
    """Compare runs pair by pair on their shared instances: paired bootstrap CI, paired test, Holm correction."""
    from flexrec_bench.scoring.compare import compare_runs, format_table

    pairs = compare_runs(results, data, tuple(_csv(metrics) or ()) or None, test, bootstrap, seed)
    typer.echo(json.dumps([p.to_dict() for p in pairs], indent=2) if as_json else format_table(pairs))
