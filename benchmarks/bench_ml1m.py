"""MovieLens-1M at full size (1,000,209 ratings, 6,040 users, 3,883 movies), default embedder:
a cold build, then a build with a warm embedding cache, each in its own process with its peak RSS.

    python benchmarks/bench_ml1m.py [--dir /tmp/ml1m-full]

The files are synthetic in the released ``::`` latin-1 format (the real archive cannot be
downloaded on the development machine). Target (issue 11): the warm build under 30 s and 1 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _util import save

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
CHILD = """
import json, resource, sys, time
from flexrec_bench.building.config import BuildConfig
from flexrec_bench.building.build import build
t0 = time.perf_counter()
res = build(BuildConfig(dataset="ml-1m", raw_dir=sys.argv[1], out=sys.argv[2]), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "stages": res.stage_seconds, "fingerprint": res.manifest["fingerprint"]}))
"""


def write_files(d: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    n_users, n_movies, n_ratings = 6040, 3883, 1_000_209
    with open(d / "movies.dat", "wb") as f:
        for m in range(1, n_movies + 1):
            g = "|".join(sorted(rng.choice(GENRES, int(rng.integers(1, 4)), replace=False)))
            f.write(f"{m}::Film n\xba {m} ({1919 + m % 81})::{g}\n".encode("latin-1"))
    per_user = rng.multinomial(n_ratings - 20 * n_users, np.full(n_users, 1 / n_users)) + 20
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    pop = (rng.zipf(1.2, n_ratings * 2) % n_movies) + 1
    movies = pop[:n_ratings]
    ts = 956_703_932 + rng.integers(0, 90_000_000, n_ratings)
    ratings = rng.integers(1, 6, n_ratings)
    lines = np.char.add(np.char.add(np.char.add(users.astype(str), "::"), np.char.add(movies.astype(str), "::")),
                        np.char.add(np.char.add(ratings.astype(str), "::"), ts.astype(str)))
    (d / "ratings.dat").write_text("\n".join(lines.tolist()) + "\n", encoding="latin-1")
    (d / "users.dat").write_text("".join(f"{u}::F::25::3::55455\n" for u in range(1, n_users + 1)), encoding="latin-1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/ml1m-full")
    a = ap.parse_args()
    root = Path(a.dir)
    raw = root / "raw"
    if not (raw / "ratings.dat").exists():
        write_files(raw)
    env = {**__import__("os").environ, "FLEXREC_HOME": str(root / "home")}
    runs = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", CHILD, str(raw), str(root / "out")], capture_output=True, text=True,
                           env=env)
        if r.returncode != 0:
            raise SystemExit(r.stderr[-3000:])
        runs[label] = {**json.loads(r.stdout.strip().splitlines()[-1]), "wall_s": time.perf_counter() - t0}
        print(f"{label}: build {runs[label]['seconds']:.1f}s (process {runs[label]['wall_s']:.1f}s), "
              f"peak RSS {runs[label]['peak_rss_mib']:.0f} MiB, stages {runs[label]['stages']}")
    save("ml1m_full", runs)


if __name__ == "__main__":
    main()
