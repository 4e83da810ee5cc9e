"""The leaderboard: submit, leaderboard (table, verify, render)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flexrec_bench.cli._app import app

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
    typer.echo(f"{'replaced' if replaced else 'added'}: {entry.label()} on {r.dataset.name}/{r.dataset.need}/"
               f"{r.dataset.split} (re-scored {entry.verification.instances} instances) to {leaderboard or DEFAULT_PATH}")


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
