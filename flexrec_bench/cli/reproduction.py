"""The paper's tables and figures: reproduce."""

from __future__ import annotations

import typer

from reproduce.config import ReproduceConfig

from flexrec_bench.cli._app import _options, app
from flexrec_bench.cli._fields import Extra, config_command


@app.command("reproduce")
@config_command(ReproduceConfig, skip=("backend",), parse={"sets": _options, "options": _options},
                flags={"test_limit": ("--limit",), "sets": ("--set",), "options": ("--option", "-o")},
                extra={"quiet": Extra(bool, False, "no progress bars")})
def reproduce_cmd(cfg: ReproduceConfig, quiet: bool = False) -> None:
    """Run the grid of one of the paper's tables or figures and write it in the paper's layout (markdown, PNG,
    JSON) with 95% CIs, the paper-comparable means and the paper's numbers beside ours. Finished cells are reused."""
    from leaderboard.schema import load_paper
    from reproduce import run_grid

    result = run_grid(cfg, [r.model_dump() for r in load_paper().reported_in_paper], progress=not quiet)
    ran = sum(1 for r in result["rows"] if not r["missing"])
    typer.echo(f"{cfg.name}: {ran} of {len(result['rows'])} cells run; wrote {cfg.out}/{cfg.name}/{cfg.name}.md, "
               f".png and .json")
