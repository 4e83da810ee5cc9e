"""Full-size KuaiRec build: time and peak memory against a bare pyarrow read of both matrices.

    python benchmarks/bench_kuairec.py [--dir /tmp/kuairec-full] [--keep]

Writes synthetic files in the released layout at the released sizes (big_matrix.csv 12,530,806
rows over 7,176 users x 10,728 videos; small_matrix.csv 4,676,570 rows = 1,411 users x 3,327
videos, fully observed; a caption file, item_categories.csv and user_features.csv for 10,728
videos / 7,176 users, with the real files' quirks), then in the same run:

1. the reference: pyarrow reads both matrices once (all columns, default types);
2. ``flexrec-bench build-data --dataset kuairec --embedder hashing-256`` in a subprocess (the
   model-free embedder, so the data pipeline is timed apart from any embedding model), with its
   peak RSS from the kernel (ru_maxrss of the child).

Targets: issue 11, within 10x the all-column read and peak RSS under 3 GB; issue 49, the build within 3x
a 4-column read (the columns the reader uses). The build runs twice, with and without the formula
audit (``--no-formula-audit``), between three 4-column reads before and three after (the ratio is
to their median).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _util import save

N_USERS, N_VIDEOS = 7176, 10728
BIG_ROWS = 12_530_806
SMALL_USERS, SMALL_VIDEOS = 1411, 3327
COLS = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"


def _write_matrix(path: Path, users: np.ndarray, videos: np.ndarray, ts: np.ndarray, rng) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n = len(users)
    dur = rng.integers(3000, 60000, n)
    play = (dur * rng.gamma(1.2, 0.8, n)).astype(np.int64)
    wr = play / dur
    secs = ts.astype(np.int64)
    dt = np.array(secs, dtype="datetime64[s]")
    time_s = np.char.add(np.datetime_as_string(dt, unit="s").astype("U19"), ".000")
    time_s = np.char.replace(time_s, "T", " ")
    date = np.char.replace(np.datetime_as_string(dt, unit="D").astype("U10"), "-", "")
    ts_s = np.char.mod("%.3f", ts)
    missing = rng.random(n) < 1e-4  # a few rows without time, as in the released small matrix
    time_s[missing], date[missing], ts_s[missing] = "", "", ""
    table = pa.table({"user_id": users, "video_id": videos, "play_duration": play, "video_duration": dur,
                      "time": time_s, "date": date, "timestamp": ts_s, "watch_ratio": np.round(wr, 6)})
    with open(path, "wb") as fh:  # the released files have an unquoted header
        fh.write((COLS + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(quoting_style="none", include_header=False))


def write_files(d: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    per_user = np.full(N_USERS, BIG_ROWS // N_USERS)
    per_user[: BIG_ROWS - per_user.sum()] += 1
    users = np.repeat(np.arange(N_USERS), per_user)
    pop = rng.zipf(1.3, N_VIDEOS * 4) % N_VIDEOS  # skewed popularity
    videos = pop[rng.integers(0, len(pop), BIG_ROWS)]
    start = 1_593_000_000 + rng.integers(0, 86_400 * 20, N_USERS)
    steps = rng.integers(5, 600, BIG_ROWS).astype(np.float64)
    ts = np.repeat(start, per_user) + np.concatenate([np.cumsum(steps[a:b]) for a, b in
                                                      zip(np.r_[0, np.cumsum(per_user)[:-1]], np.cumsum(per_user))])
    ts = ts + rng.integers(0, 1000, BIG_ROWS) / 1000
    _write_matrix(d / "big_matrix.csv", users, videos, ts, rng)
    su = np.repeat(np.arange(SMALL_USERS) * 5, SMALL_VIDEOS)
    sv = np.tile(np.arange(SMALL_VIDEOS) * 3, SMALL_USERS)
    sts = 1_593_900_000 + rng.integers(0, 86_400 * 60, len(su)).astype(np.float64)
    _write_matrix(d / "small_matrix.csv", su, sv, sts, rng)
    cats = ["美食", "游戏", "音乐", "运动", "搞笑", "情感", "颜值"]
    tags = ["五爱市场", "感谢快手我要上热门", "搞笑", "美食", "旅行", "宠物", "舞蹈", "音乐", "生活", "健身"]
    lines = ["video_id,manual_cover_text,caption,topic_tag,first_level_category_id,first_level_category_name,"
             "second_level_category_id,second_level_category_name,third_level_category_id,third_level_category_name"]
    for v in range(N_VIDEOS):
        k = int(rng.integers(0, 4))
        tag = "[]" if k == 0 else '"[' + ",".join(rng.choice(tags, k, replace=False)) + ']"'
        cap = f"视频\u00a0{v}\r更多" if v % 97 == 0 else (f'"他说""好""\n第{v}行"' if v % 101 == 0 else f"视频 {v} 的标题")
        lines.append(f"{v},UNKNOWN,{cap},{tag},{v % 7},{cats[v % 7]},{v % 31},子类{v % 31},-124,UNKNOWN")
    (d / "kuairec_caption_category.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "item_categories.csv").write_text("video_id,feat\n" + "".join(
        f'{v},"[{v % 31}, {(v * 7) % 31}]"\n' for v in range(N_VIDEOS)))
    head = ("user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,"
            "follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,"
            "register_days,register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18)))
    (d / "user_features.csv").write_text(head + "\n" + "".join(
        f"{u},high_active,0,0,0,{u % 50},0,{u % 9},[1;10),0,0,{100 + u % 300},61-90,"
        + ",".join(str((u + i) % 3) for i in range(18)) + "\n" for u in range(N_USERS)))


COLUMNS = ["user_id", "video_id", "timestamp", "watch_ratio"]  #: what the reader uses of each matrix


def reference_read(d: Path, columns: list[str] | None = None) -> float:
    """pyarrow reading both matrices once: all columns, or only ``columns`` (the 4 the reader uses)."""
    import pyarrow.csv as pacsv

    opts = pacsv.ConvertOptions(include_columns=columns) if columns else None
    t0 = time.perf_counter()
    for name in ("big_matrix.csv", "small_matrix.csv"):
        pacsv.read_csv(d / name, convert_options=opts)
    return time.perf_counter() - t0


def timed_build(root: Path, out: Path, extra: list[str]) -> dict:
    """One ``build-data`` in a subprocess: wall time, the child's peak RSS, the build's stage line."""
    import os

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "flexrec_bench.cli", "build-data", "--dataset", "kuairec", "--raw-dir",
                        str(root), "--out", str(out), "--embedder", "hashing-256", "--quiet", *extra],
                       capture_output=True, text=True, env={**os.environ, "FLEXREC_HOME": str(root / "home")})
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"build failed ({r.returncode}): {r.stderr[-3000:]}")
    stages = next((ln for ln in r.stdout.splitlines() if "stages" in ln), "").strip()
    fp = next((ln for ln in r.stdout.splitlines() if "fingerprint" in ln), "")
    return {"args": extra, "build_s": round(wall, 2), "stages": stages, "last_line": r.stdout.strip().splitlines()[-1],
            "fingerprint": fp.split("fingerprint ")[1].split(")")[0] if "fingerprint " in fp else None,
            # ru_maxrss of the children is the largest of every child so far, not of this one alone
            "peak_rss_mib_max_so_far": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/kuairec-full")
    ap.add_argument("--keep", action="store_true", help="keep the build output")
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--test-size", type=int, default=500)
    a = ap.parse_args()
    root = Path(a.dir)
    data = root / "KuaiRec 2.0" / "data"
    if not (data / "big_matrix.csv").exists():
        t0 = time.perf_counter()
        write_files(data)
        print(f"wrote full-size files in {time.perf_counter() - t0:.0f}s")
    sizes = ["--train-size", str(a.train_size), "--test-size", str(a.test_size)]
    # three reads, the two builds, three reads: the ratio uses the median of the six reads (this
    # machine's speed drifts within minutes; one read ranged 2.7-6.6 s in one run)
    ref4 = [reference_read(data, COLUMNS) for _ in range(3)]
    full = timed_build(root, root / "out", sizes)
    skip = timed_build(root, root / "out-skip", [*sizes, "--no-formula-audit"])
    ref4 += [reference_read(data, COLUMNS) for _ in range(3)]
    ref_all = reference_read(data)
    ref = float(np.median(ref4))
    for b in (full, skip):
        b["ratio_to_4col_read"] = round(b["build_s"] / ref, 2)
        print(f"build {' '.join(b['args'])}: {b['build_s']:.1f}s = {b['build_s'] / ref:.2f}x the 4-column read; "
              f"{b['stages']}")
    print(f"reference: 4-column read median {ref:.2f}s of {', '.join(f'{x:.1f}' for x in ref4)}; all columns "
          f"{ref_all:.1f}s")
    save("kuairec_full", {"reference_4col_read_s": [round(x, 2) for x in ref4], "reference_median_s": round(ref, 2),
                          "reference_all_columns_s": round(ref_all, 2),
                          "build": full, "build_without_formula_audit": skip,
                          "target": "<= 3x the 4-column read (issue 49)"})
    if not a.keep:
        shutil.rmtree(root / "out", ignore_errors=True)
        shutil.rmtree(root / "out-skip", ignore_errors=True)


if __name__ == "__main__":
    main()
