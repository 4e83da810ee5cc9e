"""The ``flexrec-bench`` command on top of every stage, the one place that reaches needs/, training/, baselines/, leaderboard/ and reproduce/ (heavy libraries only inside the commands that need them)."""

from __future__ import annotations

import sys

import typer

from flexrec_bench.cli._app import DataOpt, DatasetOpt, app  # noqa: F401  (the app, for tests and plugins)
from flexrec_bench.foundation.errors import FlexRecError


def main() -> None:
    from flexrec_bench.foundation.secrets import redact_text

    try:
        app()
    except FlexRecError as exc:
        typer.echo(f"error: {redact_text(str(exc))}", err=True)
        sys.exit(2)


# the command groups register themselves on ``app``
from flexrec_bench.cli import data, evaluation, train, reproduction, board, models  # noqa: E402,F401,I001
