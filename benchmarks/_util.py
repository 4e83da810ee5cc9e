"""Small helpers shared by the benchmarks: peak-RSS sampling and result files."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

OUT = Path(__file__).parent / "out"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Samples this process's resident memory every 5 ms while active."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.005)

    @contextmanager
    def measure(self):
        self.peak = rss_mib()
        self._stop.clear()
        t = threading.Thread(target=self._run, daemon=True)
        t.start()
        try:
            yield self
        finally:
            self._stop.set()
            t.join()


def save(name: str, payload: dict) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.json"
    # numpy scalars as Python numbers: a figure measured for minutes is never lost to its type
    path.write_text(json.dumps(payload, indent=2, sort_keys=True,
                               default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return path
