"""Wall time of `flexrec-bench train --preset smoke` on the tiny random-init model (ML-100K, built
in a temp folder), and the time until its first progress line: the figures README.md quotes.

    python benchmarks/bench_smoke.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from _util import save


def main() -> None:
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build
    from flexrec_bench.ranking.tiny import build_tiny_model

    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "data")
    build(BuildConfig(out=data, train_size=100, test_size=50, val_size=20), progress=False)
    model = build_tiny_model(os.path.join(tmp, "tiny"))
    cmd = [sys.executable, "-m", "flexrec_bench.cli", "train", "--model", str(model), "--data", data, "--output-dir",
           os.path.join(tmp, "run"), "--preset", "smoke"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    first = None
    for line in iter(proc.stdout.readline, ""):
        if first is None and line.strip():  # the first line the user sees
            first = time.perf_counter() - t0
    proc.wait()
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"smoke run failed (exit {proc.returncode})")
    print(f"train --preset smoke (tiny model, {os.cpu_count()} cores): first line after {first:.1f} s, "
          f"finished in {total:.1f} s")
    save("smoke", {"first_progress_s": round(first or -1, 1), "total_s": round(total, 1)})


if __name__ == "__main__":
    main()
