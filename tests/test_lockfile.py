"""The lock that removes its file: mutual exclusion survives the removal, and nothing is left."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from flexrec_bench.foundation.lockfile import LockTimeout, acquire, hold, release


def _bump(lock: str, counter: str, n: int) -> None:
    for _ in range(n):
        with hold(lock, 60.0):
            value = int(Path(counter).read_text())
            time.sleep(0.0005)  # widen the window a lost update would need
            Path(counter).write_text(str(value + 1))


def test_processes_exclude_each_other_although_every_holder_removes_the_file(tmp_path):
    lock, counter = tmp_path / ".x.lock", tmp_path / "counter"
    counter.write_text("0")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(lock), str(counter), 60)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert counter.read_text() == "240"  # no lost update: never two holders, across 240 unlinks
    assert not lock.exists()


def test_the_file_goes_with_its_holder_and_a_waiter_times_out_in_one_line(tmp_path):
    lock = tmp_path / ".y.lock"
    fd = acquire(lock, 1.0)
    assert lock.exists()
    with pytest.raises(LockTimeout):
        acquire(lock, 0.1)
    release(lock, fd)
    assert not lock.exists()


def _hold_then_die(lock: str) -> None:
    acquire(lock, 5.0)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_holders_file_is_taken_by_the_next_and_then_removed(tmp_path):
    lock = tmp_path / ".z.lock"
    p = mp.get_context("fork").Process(target=_hold_then_die, args=(str(lock),))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL and lock.exists()  # the file stays; its flock died with the process
    with hold(lock, 1.0):
        pass
    assert not lock.exists()


def test_a_build_and_an_eval_leave_no_lock_files(tmp_path):
    from flexrec_bench.foundation.publish import locked

    final = tmp_path / "out" / "thing"
    with locked(final):
        assert (final.parent / ".thing.lock").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_a_waiter_that_locks_a_removed_file_does_not_count_as_holder(tmp_path, monkeypatch):
    """The interleaving the removal risks, made to happen: between our open and our flock the holder
    removes the file and a third process locks a new one under the same name. The stale flock must
    not be taken as the lock (here: we wait for the new holder, and time out)."""
    import flexrec_bench.foundation.lockfile as lf

    lock = tmp_path / ".w.lock"
    real_open = os.open
    state = {}

    def racing_open(path, flags, mode=0o777):
        fd = real_open(path, flags, mode)
        if not state:
            state["raced"] = True
            os.unlink(path)  # the previous holder finishes ...
            state["new"] = acquire(lock, 1.0)  # ... and another process takes the new file
        return fd

    monkeypatch.setattr(lf.os, "open", racing_open)
    with pytest.raises(LockTimeout):
        acquire(lock, 0.3)
    monkeypatch.setattr(lf.os, "open", real_open)
    release(lock, state["new"])
    assert not lock.exists()
