"""One typed conversion for every ``key=value`` option: ranker options (``-o``), label options
(``--need-option``), training options (``train --set``) and SFT options (``train-baseline --set``).

A value given as a string is converted to the field's annotated type with pydantic's lax mode
(``"8"`` -> 8, ``"1e-6"`` -> 1e-06, ``"true"``/``"yes"``/``"1"`` -> True, ``"none"`` -> None where the
field allows it, ``"a,b"`` -> a tuple); a value that does not convert is refused in one line that
names the flag, the field and the expected type. Values that are not strings (YAML, Python) are
checked the same way.
"""

from __future__ import annotations

import typing
from typing import Any

from flexrec_bench.foundation.errors import ConfigError


def type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def convert(value: Any, annotation: Any, flag: str, name: str) -> Any:
    """``value`` as ``annotation`` (a type or typing construct; None or Any: as it is)."""
    from pydantic import TypeAdapter, ValidationError

    if annotation is None or annotation is Any or annotation is typing.Any:
        return value
    text = str(annotation)
    if isinstance(value, str):
        if value.strip().lower() in ("none", "null") and ("None" in text or "Optional" in text):
            return None
        if typing.get_origin(annotation) is not None and "tuple" in text:
            value = tuple(x.strip() for x in value.split(",") if x.strip())
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as e:
        msg = e.errors()[0]["msg"]
        raise ConfigError(f"{flag} {name}: expects {type_name(annotation)}, got {value!r} ({msg})") from None


def init_hints(cls: type) -> dict[str, Any]:
    """The annotated keyword parameters of ``cls.__init__`` and of the classes it passes
    ``**options`` on to (a ranker's options)."""
    import inspect

    hints: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            types = typing.get_type_hints(init)
        except Exception:  # an annotation that does not resolve here: leave those values as given
            types = {}
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.name not in ("self", "arg", "options") and p.name not in hints:
                hints[p.name] = types.get(p.name)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return hints


def check_range(name: str, value, flag: str, lo=None, hi=None) -> None:
    """Refuse a number outside [lo, hi] in one line."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        want = " and ".join(x for x in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if x)
        raise ConfigError(f"{flag} {name}: must be {want}, got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment of each field of a dataclass (its documentation, written once)."""
    import inspect
    import re

    docs = {}
    for klass in reversed(cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = re.match(r"\s+(\w+): .*?#: (.*)$", line)
            if m:
                docs[m.group(1)] = m.group(2).strip()
    return docs
