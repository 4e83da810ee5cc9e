"""One generic registry class, used for datasets, needs and rankers.

Entries are either objects registered in code or lazy ``"module:attr"`` targets (from a plugin
entry-point group), imported only when asked for; unknown names get a "did you mean" error.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from flexrec_bench.foundation.errors import FlexRecError

T = TypeVar("T")


class UnknownNameError(FlexRecError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if len(known) > MAX_LISTED and close:  # a long list hides the suggestion
        return hint.lstrip("; ")
    shown = sorted(known)[:MAX_LISTED]
    more = f" (and {len(known) - MAX_LISTED} more)" if len(known) > MAX_LISTED else ""
    return f"known: {', '.join(shown)}{more}{hint}"


MAX_LISTED = 30  #: names listed in full in an unknown-name error


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.group = entry_point_group
        self._objs: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._loaded_eps = False

    def _load_entry_points(self) -> None:
        if self._loaded_eps or self.group is None:
            return
        self._loaded_eps = True
        for ep in metadata.entry_points(group=self.group):
            self._lazy.setdefault(ep.name, ep.value)

    def register(self, name: str, obj: T | None = None, *, lazy: str | None = None,
                 replace: bool = False) -> Callable[[T], T] | T:
        """Register ``obj`` (or a lazy ``"module:attr"``) under ``name``; usable as a decorator.
        A name that is already registered is refused unless ``replace=True``."""
        def check() -> None:
            if not replace and (name in self._objs or name in self._lazy):
                raise FlexRecError(f"{self.kind} {name!r} is already registered "
                                   f"({self._lazy.get(name) or type(self._objs[name]).__name__}); "
                                   f"pass replace=True to override it")
            self._objs.pop(name, None)
            self._lazy.pop(name, None)

        if lazy is not None:
            check()
            self._lazy[name] = lazy
            return lazy  # type: ignore[return-value]
        if obj is None:
            def deco(o: T) -> T:
                check()
                self._objs[name] = o
                return o
            return deco
        check()
        self._objs[name] = obj
        return obj

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(set(self._objs) | set(self._lazy))

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name in self._objs:
            return self._objs[name]
        if name in self._lazy:
            module, _, attr = self._lazy[name].partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._objs[name] = obj
            return obj
        raise UnknownNameError(f"unknown {self.kind} {name!r}; {did_you_mean(name, self.names())}")
