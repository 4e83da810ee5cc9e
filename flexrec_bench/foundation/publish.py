"""Crash-safe publishing of output folders (a dataset build, an eval's results).

An output folder ``<parent>/<name>`` is a symbolic link to a *generation* folder
``<parent>/.<name>.<token>.gen``. A writer, holding ``<parent>/.<name>.lock``:

1. cleans up after writers that died: ``.<name>.*.tmp`` leftovers, generations no link points to,
   and a missing link (it is pointed back at the newest generation left behind);
2. writes everything into a fresh ``.<name>.<token>.tmp`` folder;
3. renames that folder to a generation (so a generation is complete by construction);
4. swaps the link in one ``os.replace`` and removes the old generation.

A kill at any point leaves the previous output or the new one, whole; the next writer removes
the leftovers. A reader resolves the link once (``load_split``) and reads every file from that one
generation, so it never mixes two builds.
Files and folders get the permissions the umask allows (0644/0755 under the usual 022), not the
0600/0700 of ``tempfile``.

``FLEXREC_FAULT=<step>`` kills the process with SIGKILL at a named step (``build:written``,
``publish:renamed``, ``publish:linked``, ``publish:moved-legacy``, ``publish:swapped``): the
fault-injection hook the crash tests use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.foundation.io import fix_mode
from flexrec_bench.foundation.lockfile import LockTimeout, acquire, release

def fault(step: str) -> None:
    """Die here, as kill -9 would, when FLEXREC_FAULT names this step (crash tests only)."""
    if os.environ.get("FLEXREC_FAULT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def locked(final: Path, timeout: float = 600.0, what: str = "output") -> Iterator[None]:
    """Hold ``<parent>/.<name>.lock`` (released by the OS if the holder dies; the file is removed
    when the holder finishes: :mod:`flexrec_bench.foundation.lockfile`)."""
    from flexrec_bench.foundation.io import writing

    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
    path = final.parent / f".{final.name}.lock"
    try:
        with writing(path):
            fd = acquire(path, timeout)
    except LockTimeout:
        raise FlexRecError(f"{final}: another process has held the {what} lock for {timeout:.0f} s; "
                           f"wait for it to finish, or remove {path} if no such process is running") from None
    try:
        yield
    finally:
        release(path, fd)


def _gens(final: Path) -> list[Path]:
    return sorted(p for p in final.parent.glob(f".{final.name}.*.gen") if p.is_dir() and not p.is_symlink())


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink(missing_ok=True)
    elif p.is_dir():
        shutil.rmtree(p, ignore_errors=True)


def recover(final: Path) -> None:
    """Under the lock: restore a missing link and remove what dead writers left behind."""
    parent, name = final.parent, final.name
    if not parent.exists():
        return
    for p in parent.glob(f".{name}.*.tmp"):
        _remove(p)
    gens = _gens(final)
    if (not final.exists() or (final.is_symlink() and not final.resolve().is_dir())) and gens:
        _remove(final)
        os.symlink(gens[-1].name, final)
    target = final.resolve() if final.is_symlink() else None
    for g in gens:
        if target is None or g.resolve() != target:
            if final.is_symlink() or final.exists():
                _remove(g)


def new_tmp_dir(final: Path) -> Path:
    """A fresh, empty staging folder beside ``final`` (call under the lock, after :func:`recover`)."""
    from flexrec_bench.foundation.io import writing

    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    fix_mode(tmp)
    return tmp


def _token() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}"


def publish(tmp: Path, final: Path) -> Path:
    """Make the complete folder ``tmp`` the content of ``final`` (under the lock). Returns ``final``."""
    parent, name = final.parent, final.name
    for p in tmp.rglob("*"):
        fix_mode(p)
    token = _token()
    gen = parent / f".{name}.{token}.gen"
    from flexrec_bench.foundation.io import writing

    with writing(final):
        os.replace(tmp, gen)
    fault("publish:renamed")
    link_tmp = parent / f".{name}.{token}.link.tmp"
    os.symlink(gen.name, link_tmp)
    fault("publish:linked")
    if final.exists() and not final.is_symlink():
        # an output from before generations were used: keep it as the oldest generation until swapped
        os.replace(final, parent / f".{name}.{'0' * 20}-legacy.gen")
        fault("publish:moved-legacy")
    os.replace(link_tmp, final)
    fault("publish:swapped")
    for g in _gens(final):
        if g.name != gen.name:
            _remove(g)
    return final
