"""Command-line options derived from a config dataclass: each field's name, type, default and help
(its ``#:`` comment) are written once, on the dataclass, and the command's options follow them.

``config_command(Config, ...)`` turns ``def cmd(cfg: Config, **extra)`` into a Typer command whose
options are the dataclass's fields (plus ``extra``, the command's own non-config options); values
arrive as strings where the field's type is not one Typer reads itself, and go through the one
converter (flexrec_bench.foundation.options).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from flexrec_bench.foundation.options import convert, field_docs

#: field types Typer reads itself (others are given as strings and converted by the one converter)
_PLAIN = (str, int, float, bool)


def _cli_type(hint: Any) -> tuple[Any, bool]:
    """(the annotation Typer sees, whether the value must be converted afterwards)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)]
    base = inner[0] if optional and len(inner) == 1 else hint
    if base in _PLAIN:
        return (Optional[base] if optional else base), False
    return Optional[str], True


@dataclasses.dataclass
class Extra:
    """A command option that is not a config field."""

    annotation: Any
    default: Any
    help: str
    flags: tuple[str, ...] = ()


def config_command(config: type, *, skip: tuple[str, ...] = (), flags: dict[str, tuple[str, ...]] | None = None,
                   parse: dict[str, Callable[[Any], Any]] | None = None, extra: dict[str, Extra] | None = None,
                   help_suffix: dict[str, str] | None = None):
    """Decorate ``fn(cfg, **extra_values)``. ``parse`` maps a field to a function of its raw CLI
    value (a repeatable option's list, a comma list); ``flags`` gives a field other option names."""
    hints = typing.get_type_hints(config)
    docs = field_docs(config)
    flags, parse, extra, help_suffix = flags or {}, parse or {}, extra or {}, help_suffix or {}
    fields = [f for f in dataclasses.fields(config) if f.name not in skip]

    def deco(fn):
        params, convert_later = [], set()
        for f in fields:
            if f.name in parse:
                hint = hints[f.name]
                repeatable = hint is dict or typing.get_origin(hint) is dict  # key=value pairs: a repeatable option
                annotation, later = Optional[list[str]] if repeatable else Optional[str], False
            else:
                annotation, later = _cli_type(hints[f.name])
            if later:
                convert_later.add(f.name)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                default = ...  # a required option
            else:
                default = None if (f.name in parse or later) else (
                    f.default if f.default is not dataclasses.MISSING else f.default_factory())
            names = flags.get(f.name, (f"--{f.name.replace('_', '-')}",))
            text = docs.get(f.name, "") + help_suffix.get(f.name, "")
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[annotation, typer.Option(*names, help=text)]))
        for name, e in extra.items():
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=e.default,
                                            annotation=Annotated[e.annotation, typer.Option(*e.flags, help=e.help)]))

        @functools.wraps(fn)
        def command(**values):
            kwargs = {}
            for f in fields:
                v = values.pop(f.name)
                if f.name in parse:
                    if v is None or v == []:
                        continue
                    v = parse[f.name](v)
                elif f.name in convert_later:
                    if v is None:
                        continue
                    v = convert(v, hints[f.name], f"--{f.name.replace('_', '-')}", f.name)
                kwargs[f.name] = v
            return fn(config(**kwargs), **values)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {}
        return command

    return deco
