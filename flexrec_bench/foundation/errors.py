"""Errors with one-line messages that name the file, the row or field, and what was expected."""

from __future__ import annotations

from pathlib import Path


class FlexRecError(Exception):
    """Base class: every error the toolkit raises on purpose. The CLI prints it as one line."""


class DataError(FlexRecError):
    """Bad input data: names the file, the line or field and what was expected."""

    def __init__(self, path: str | Path, what: str, *, line: int | None = None, field: str | None = None):
        where = str(path)
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f" [{field}]"
        super().__init__(f"{where}: {what}")
        self.path = str(path)
        self.line = line
        self.field = field


class ConfigError(FlexRecError, ValueError):
    """An option or configuration value out of its allowed range (also a ValueError)."""


class MissingDataError(FlexRecError):
    """A dataset, split or artefact that has not been built or downloaded yet."""


class MissingCapabilityError(FlexRecError):
    """An optional dependency (extra) that is not installed, or a capability this machine lacks."""


def require(module: str, extra: str, purpose: str):
    """Import an optional module or raise a clear error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
        raise MissingCapabilityError(
            f"{purpose} needs the '{module}' package: pip install 'flexrec-bench[{extra}]' ({exc})"
        ) from exc
