"""What the fault tests share: a small ML-1M build's options, and the real command run in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys

SMALL = dict(embedder="hashing-32", train_size=40, test_size=15, val_size=15, candidates=8, history=6, min_history=3,
             stride=3)
BUILD_ARGS = ["--dataset", "ml-1m", "--embedder", "hashing-32", "--candidates", "8", "--history", "6",
              "--min-history", "3", "--stride", "3", "--train-size", "40", "--test-size", "15", "--quiet"]


def run_cli(*args, env=None, timeout=300):
    """The real command in a fresh process (tracebacks and exit codes as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "flexrec_bench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]
