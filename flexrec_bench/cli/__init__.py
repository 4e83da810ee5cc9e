"""The ``flexrec-bench`` command, the composition root: the one place that reaches every layer
(the core, needs/, training/, baselines/, leaderboard/, reproduce/). One module per command group;
heavy parts (RecBole, TRL, verl, vLLM, transformers) are imported only inside the commands that
need them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FlexRecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Need-aware LLM recommendation: build datasets, evaluate rankers, train, submit.")

#: the two options every command on a built dataset takes
DatasetOpt = Annotated[str, typer.Option(help="built dataset")]
DataOpt = Annotated[Path, typer.Option(help="the --out of build-data")]


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _options(pairs: list[str] | None) -> dict:
    from ..secrets import is_secret_name, remember

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


def main() -> None:
    from ..secrets import redact_text

    try:
        app()
    except FlexRecError as exc:
        typer.echo(f"error: {redact_text(str(exc))}", err=True)
        sys.exit(2)


# the command groups register themselves on ``app``
from . import data, evaluation, train, reproduction, board, models  # noqa: E402,F401,I001
