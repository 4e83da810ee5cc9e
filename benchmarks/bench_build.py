"""Time and peak memory of `build-data` on MovieLens-100K with the default embedder, by stage,
cold (empty embedding cache) and cached (second run).

    python benchmarks/bench_build.py
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager

from _util import PeakRSS, rss_mib, save


def run(label: str, out: str) -> dict:
    import flexrec_bench.building.build as b

    stages: dict[str, dict] = {}

    class Timer(b._Timer):
        @contextmanager
        def stage(self, name):
            sampler = PeakRSS()
            t0 = time.perf_counter()
            with sampler.measure():
                yield
            stages[name] = {"seconds": round(time.perf_counter() - t0, 3), "peak_rss_mib": round(sampler.peak, 1)}

    b._Timer = Timer
    t0 = time.perf_counter()
    b.build(b.BuildConfig(out=out), progress=False)
    total = time.perf_counter() - t0
    print(f"{label}: {total:.1f}s total, peak RSS {max(s['peak_rss_mib'] for s in stages.values()):.0f} MiB")
    for k, v in stages.items():
        print(f"  {k:12s} {v['seconds']:6.2f}s  {v['peak_rss_mib']:7.0f} MiB")
    return {"total_seconds": round(total, 2), "stages": stages}


def main() -> None:
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as out:
        os.environ["FLEXREC_HOME"] = home
        start_rss = rss_mib()
        cold = run("cold (empty embedding cache)", out)
        cached = run("cached (second run)", out)
    save("build_ml100k", {"cold": cold, "cached": cached, "rss_before_mib": round(start_rss, 1),
                          "cpu_count": os.cpu_count()})


if __name__ == "__main__":
    main()
