"""An exclusive lock on a path that removes its file when the holder finishes.

``filelock.FileLock`` leaves its file in place, because unlinking a locked file can split waiters
across two inodes. This lock removes the file safely with the usual protocol:

* acquire: open (create) the path, ``flock`` it, then check that the path still names the inode
  just locked; if a finishing holder unlinked it (or another file took the name) in between, close
  and start again on the new file;
* release: unlink the path *while still holding* the flock, then close.

A waiter that locked the old inode after the unlink sees that the path no longer names it, and
retries, so at most one process ever holds the lock on the file the path names. A holder that dies
(kill -9) leaves the file behind with no flock on it: the next holder takes it and removes it when
it finishes. It is the same ``flock`` that ``filelock`` takes, so the two exclude each other.
Unix only (the toolkit's platforms).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


class LockTimeout(Exception):
    """Another process held the lock for the whole timeout."""


def _same_file(fd: int, path: Path) -> bool:
    held = os.fstat(fd)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def acquire(path: str | Path, timeout: float) -> int:
    """Hold ``path`` exclusively; returns the descriptor to pass to :func:`release`.
    Raises :class:`LockTimeout` after ``timeout`` seconds, OSError when the path cannot be made."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise LockTimeout(str(path)) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the previous holder removed this file after we opened it: lock the one the path names now


def release(path: str | Path, fd: int) -> None:
    """Remove ``path`` (still holding it), then let go."""
    try:
        if _same_file(fd, Path(path)):
            os.unlink(path)
    except OSError:
        pass  # a lock file that cannot be removed (read-only folder) is left; the lock itself still goes
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold(path: str | Path, timeout: float) -> Iterator[None]:
    """``with hold(p, 60): ...``: :func:`acquire`, the block, :func:`release`."""
    fd = acquire(path, timeout)
    try:
        yield
    finally:
        release(path, fd)
