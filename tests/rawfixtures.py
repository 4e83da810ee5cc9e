"""Writers of small raw files in every original format, with the quirks real files have."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Western"]


def _ratings(n_users: int, n_items: int, per_user: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items + 1), size=per_user, replace=False)
        t0 = 880_000_000 + int(rng.integers(0, 10_000_000))
        for j, it in enumerate(items):
            rows.append((u, int(it), int(rng.integers(1, 6)), t0 + 3600 * j))
    return rows


def write_ml1m(d: Path, n_users=40, n_items=80, per_user=25, seed=0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(d / "movies.dat", "wb") as f:
        for i in range(1, n_items + 1):
            g = "|".join(sorted(rng.choice(GENRES, size=int(rng.integers(1, 3)), replace=False)))
            title = f"Caf\xe9 Movie {i}" if i % 7 == 0 else f"Movie {i}"  # latin-1 byte
            f.write(f"{i}::{title} ({1980 + i % 20})::{g}\n".encode("latin-1"))
    with open(d / "ratings.dat", "w", encoding="latin-1") as f:
        for u, i, r, t in _ratings(n_users, n_items, per_user, seed):
            f.write(f"{u}::{i}::{r}::{t}\n")
    (d / "users.dat").write_text("".join(f"{u}::M::25::1::00000\n" for u in range(1, n_users + 1)), encoding="latin-1")
    return d


def write_ml100k_grouplens(d: Path, n_users=30, n_items=60, per_user=20, seed=1) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(d / "u.item", "wb") as f:
        for i in range(1, n_items + 1):
            flags = ["0"] * 19
            for g in rng.choice(np.arange(1, 19), size=2, replace=False):
                flags[g] = "1"
            title = f"Am\xe9lie {i} (1995)" if i == 3 else f"Film {i} (199{i % 10})"
            f.write(f"{i}|{title}|01-Jan-199{i % 10}||http://x|{'|'.join(flags)}\n".encode("latin-1"))
    with open(d / "u.data", "w") as f:
        for u, i, r, t in _ratings(n_users, n_items, per_user, seed):
            f.write(f"{u}\t{i}\t{r}\t{t}\n")
    return d


def write_atomic(d: Path, name="ml-100k", n_users=30, n_items=60, per_user=20, seed=2) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{name}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u, i, r, t in _ratings(n_users, n_items, per_user, seed):
            f.write(f"{u}\t{i}\t{r}\t{t}\n")
    with open(d / f"{name}.item", "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for i in range(1, n_items + 1):
            f.write(f"{i}\tFilm {i}\t1995\t{GENRES[i % 8]} {GENRES[(i * 3) % 8]}\n")
    return d


def write_kuairec(root: Path, n_users=24, n_items=50, seed=3) -> Path:
    """KuaiRec 2.0 layout with the released files' quirks, written from the documented formats:
    topic_tag as a CSV-quoted bracket list of unquoted strings (``"[五爱市场,感谢快手我要上热门,搞笑]"``)
    or a bare ``[]``; captions with a bare CR, NBSP, doubled quotes and a line break inside a quoted
    field, and one line break inside an unquoted caption; UNKNOWN and -124 missing markers; empty
    captions; ``feat`` as a quoted list of ints; user_features.csv with its documented columns."""
    d = root / "KuaiRec 2.0" / "data"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cols = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
    big, small = [cols], [cols]
    small_users = range(0, n_users - 4)
    small_items = range(0, n_items // 2)
    for u in range(n_users):
        t0 = 1_593_000_000 + int(rng.integers(0, 100_000))
        for j, v in enumerate(rng.choice(n_items, size=30, replace=False)):
            wr = float(rng.gamma(1.5, 0.7))
            big.append(f"{u},{v},1000,2000,2020-07-05 00:00:00.000,20200705,{t0 + 600 * j}.5,{wr:.4f}\n")
    for u in small_users:
        for v in small_items:
            small.append(f"{u},{v},1000,2000,2020-07-05 00:00:00.000,20200705,1593900000.0,{rng.gamma(1.5, 0.7):.4f}\n")
    (d / "big_matrix.csv").write_text("".join(big))
    (d / "small_matrix.csv").write_text("".join(small))
    cap = ["video_id,manual_cover_text,caption,topic_tag,first_level_category_id,first_level_category_name,"
           "second_level_category_id,second_level_category_name,third_level_category_id,third_level_category_name\n"]
    cats = ["美食", "游戏", "音乐", "运动", "搞笑"]
    for v in range(n_items):
        caption = f"视频\u00a0{v}\r第二行" if v % 5 == 0 else ("" if v % 7 == 0 else f"caption {v}")
        if v == 6:
            caption = '"他说""好看""\n第二行,还有逗号"'  # quoted: doubled quotes, a comma and a line break
        if v == 8:
            caption = "第一行\n第二行"  # unquoted, with a line break: the record spans two lines
        cover = "UNKNOWN"
        tag = "[]" if v % 3 and v != 4 else f'"[标签{v},感谢快手我要上热门,搞笑]"'
        if v == 4:
            tag = '"[五爱市场,感谢快手我要上热门,搞笑]"'
        if v == 9:
            tag = '"[\'标签9\', \'tag9\']"'  # a Python-style list also reads
        third = "-124,UNKNOWN" if v % 2 else f"{v},细类{v}"
        cap.append(f"{v},{cover},{caption},{tag},{v % 5},{cats[v % 5]},{10 + v % 3},子类{v % 3},{third}\n")
    (d / "kuairec_caption_category.csv").write_bytes("".join(cap).encode("utf-8"))
    (d / "item_categories.csv").write_text("video_id,feat\n" + "".join(f'{v},"[{v % 4}, {v % 6}]"\n' for v in range(n_items)))
    ucols = ("user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,"
             "follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,"
             "register_days,register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18)) + "\n")
    (d / "user_features.csv").write_text(ucols + "".join(
        f"{u},{'high_active' if u % 2 else 'UNKNOWN'},0,0,0,{u},0,{u * 2},[1;10),0,0,{100 + u},61-90,"
        + ",".join(str((u + i) % 3) for i in range(18)) + "\n" for u in range(n_users)))
    return root


def write_esci(d: Path, n_queries=30, per_query=8, seed=4) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ex, prods = [], {}
    eid = 0
    for q in range(n_queries):
        split = "test" if q % 5 == 0 else "train"
        for p in rng.choice(200, size=per_query, replace=False):
            pid = f"B{p:05d}"
            ex.append(dict(example_id=eid, query=f"query words {q} item{p % 10}", query_id=q, product_id=pid,
                           product_locale="us", esci_label=str(rng.choice(list("ESCI"))), small_version=1,
                           large_version=1, split=split))
            eid += 1
            prods[pid] = dict(product_id=pid, product_title=f"Product {p} item{p % 10}", product_description=None,
                              product_bullet_point=f"bullet {p}\nsecond", product_brand=f"Brand{p % 4}",
                              product_color="red" if p % 2 else None, product_locale="us")
        if q % 10 in (0, 3):  # a large-version-only query (not in the reduced task-1 set), test and train
            ex.append(dict(example_id=eid, query=f"large only {q}", query_id=1000 + q, product_id=f"L{q:05d}",
                           product_locale="us", esci_label="E", small_version=0, large_version=1, split=split))
            eid += 1
            prods[f"L{q:05d}"] = dict(product_id=f"L{q:05d}", product_title=f"Large-only product {q}",
                                      product_description=None, product_bullet_point=None, product_brand=None,
                                      product_color=None, product_locale="us")
    ex.append(dict(example_id=eid, query="es query", query_id=999, product_id="B00001", product_locale="es",
                   esci_label="E", small_version=0, large_version=1, split="train"))
    pd.DataFrame(ex).to_parquet(d / "shopping_queries_dataset_examples.parquet")
    pd.DataFrame(list(prods.values())).to_parquet(d / "shopping_queries_dataset_products.parquet")
    (d / "shopping_queries_dataset_sources.csv").write_text(
        "query_id,source\n" + "".join(f"{q},{'other' if q % 2 else 'negations'}\n" for q in range(n_queries)))
    return d
