"""The Typer app of ``flexrec-bench`` and the options its command groups share (each group's module
imports these from here; the package's ``__init__`` imports the groups, so nothing imports it back)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flexrec_bench.foundation.errors import FlexRecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Need-aware LLM recommendation: build datasets, evaluate rankers, train, submit.")

#: the two options every command on a built dataset takes
DatasetOpt = Annotated[str, typer.Option(help="built dataset")]
DataOpt = Annotated[Path, typer.Option(help="the --out of build-data")]


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _options(pairs: list[str] | None) -> dict:
    from flexrec_bench.foundation.secrets import is_secret_name, remember

    out = {}
    for p in pairs or []:
        key, sep, val = p.partition("=")
        if not sep or not key:
            raise FlexRecError(f"--option expects key=value, got {p!r}")
        key = key.strip().replace("-", "_")
        if is_secret_name(key):
            remember(val)  # never written anywhere from here on (flexrec_bench.foundation.secrets)
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
