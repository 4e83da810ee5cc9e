from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rawfixtures as fx

from flexrec_bench.datasets.esci import read_esci
from flexrec_bench.datasets.kuairec import read_kuairec
from flexrec_bench.datasets.movielens import bundled_ml100k_dir, read_ml1m, read_ml100k
from flexrec_bench.foundation.errors import DataError


def test_bundled_ml100k_counts_and_records():
    raw = read_ml100k(None)
    assert len(raw.interactions) == 100_000
    assert len(raw.items) == 1682
    assert raw.interactions["user_id"].nunique() == 943
    first = raw.interactions.iloc[0]
    assert (first.user_id, first.item_id, first.signal, first.timestamp) == ("196", "242", 3.0, 881250949)
    toy = raw.items.set_index("item_id").loc["1"]
    assert toy.title == "Toy Story"
    assert toy.text == "Movie Title: Toy Story\nMovie Year: 1995\nMovie genres: Animation, Children's, Comedy"  # Appendix E
    assert raw.items.iloc[-1].item_id == "1682"
    assert bundled_ml100k_dir().name == "ml-100k"


def test_ml100k_grouplens_latin1(tmp_path):
    raw = read_ml100k(fx.write_ml100k_grouplens(tmp_path))
    items = raw.items.set_index("item_id")
    assert items.loc["3"].title == "Amélie 3"
    assert "Year: 1995" in items.loc["3"].text
    assert len(raw.interactions) == 30 * 20
    assert all(len(t) == 2 for t in raw.items["topics"])


def test_atomic_files(tmp_path):
    raw = read_ml100k(fx.write_atomic(tmp_path))
    assert len(raw.interactions) == 600
    assert raw.items.iloc[0].topics == ["Comedy", "Horror"]


def test_ml1m_reader(tmp_path):
    raw = read_ml1m(fx.write_ml1m(tmp_path))
    assert len(raw.interactions) == 40 * 25
    assert raw.items.set_index("item_id").loc["7"].title == "Café Movie 7"
    assert raw.interactions["timestamp"].dtype == "int64"


def test_ml1m_wrong_separator_names_file_and_line(tmp_path):
    d = fx.write_ml1m(tmp_path)
    lines = (d / "ratings.dat").read_text(encoding="latin-1").splitlines()
    lines[4] = lines[4].replace("::", "\t")
    (d / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"ratings.dat:5: expected 4 fields \('::'-separated"):
        read_ml1m(d)


def test_ml1m_bad_number_names_field(tmp_path):
    d = fx.write_ml1m(tmp_path)
    lines = (d / "ratings.dat").read_text(encoding="latin-1").splitlines()
    lines[2] = "1::2::five::880000000"
    (d / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"ratings.dat:3 \[Rating\]: expected float, got 'five'"):
        read_ml1m(d)


def test_missing_file_is_named(tmp_path):
    d = fx.write_ml1m(tmp_path)
    (d / "movies.dat").unlink()
    with pytest.raises(DataError, match=r"movies.dat: file not found"):
        read_ml1m(d)


def test_kuairec_quirks(tmp_path):
    raw = read_kuairec(fx.write_kuairec(tmp_path))
    items = raw.items.set_index("item_id")
    # bare CR inside an unquoted caption and a non-breaking space survive as plain spaces
    assert items.loc["0"].text.startswith("Video caption: 视频 0 第二行\nCategory path: ")  # Appendix E
    assert "\r" not in "".join(raw.items["text"]) and "\xa0" not in "".join(raw.items["text"])
    # empty caption (and UNKNOWN cover text) -> no caption line, category path kept
    assert items.loc["7"].text.startswith("Category path: 音乐 > 子类1")
    # -124 / UNKNOWN third-level category dropped; topic tags parsed from bracket lists of unquoted strings
    assert "UNKNOWN" not in items.loc["3"].text
    assert items.loc["4"].topics == ["五爱市场", "感谢快手我要上热门", "搞笑"]
    assert "\nVideo tag: 五爱市场, 感谢快手我要上热门, 搞笑" in items.loc["4"].text
    assert items.loc["9"].topics == ["标签9", "tag9"] and items.loc["1"].topics == []  # [] -> untagged
    # doubled quotes, a comma and a line break inside a quoted caption; a line break in an unquoted one
    assert items.loc["6"].title == '他说"好看" 第二行,还有逗号'
    assert items.loc["8"].title == "第一行 第二行" and items.loc["9"].text.startswith("Video caption: caption 9")
    assert any(p.name == "user_features.csv" for p in raw.sources)
    assert len(raw.eval_labels) == 20 * 25
    assert raw.interactions["timestamp"].dtype == "int64"


def test_kuairec_bad_list_literal(tmp_path):
    root = fx.write_kuairec(tmp_path)
    p = root / "KuaiRec 2.0" / "data" / "item_categories.csv"
    lines = p.read_text().splitlines()
    lines[3] = '2,"[1, 2"'
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"item_categories.csv:4 \[feat\]: expected a list literal"):
        read_kuairec(root)


def test_kuairec_bad_encoding(tmp_path):
    root = fx.write_kuairec(tmp_path)
    p = root / "KuaiRec 2.0" / "data" / "kuairec_caption_category.csv"
    data = p.read_bytes().split(b"\n")
    data[5] = data[5] + b"\xff\xfe"
    p.write_bytes(b"\n".join(data))
    with pytest.raises(DataError, match=r"kuairec_caption_category.csv:6: bad utf-8 byte"):
        read_kuairec(root)


def test_kuairec_missing_column_and_wrong_separator(tmp_path):
    root = fx.write_kuairec(tmp_path)
    p = root / "KuaiRec 2.0" / "data" / "small_matrix.csv"
    p.write_text(p.read_text().replace(",", ";"))
    with pytest.raises(DataError, match=r"small_matrix.csv:1: missing column.*comma-separated"):
        read_kuairec(root)


def test_esci_join_and_locale(tmp_path):
    raw = read_esci(fx.write_esci(tmp_path))
    assert set(raw.queries["split"]) == {"train", "test"}
    assert "999" not in set(raw.queries["query_id"])  # es locale dropped
    text = raw.items.set_index("item_id").iloc[0].text
    assert text.startswith("Product title: Product") and "\nProduct description: bullet" in text  # Appendix E
    assert "\nBrand: Brand" in text


def test_esci_bad_label_and_missing_column(tmp_path):
    d = fx.write_esci(tmp_path)
    ex = pd.read_parquet(d / "shopping_queries_dataset_examples.parquet")
    ex.loc[3, "esci_label"] = "X"
    ex.to_parquet(d / "shopping_queries_dataset_examples.parquet")
    with pytest.raises(DataError, match=r"examples.parquet:4 \[esci_label\]: esci_label must be one of E/S/C/I"):
        read_esci(d)
    ex.drop(columns=["split"]).to_parquet(d / "shopping_queries_dataset_examples.parquet")
    with pytest.raises(DataError, match=r"missing column\(s\) split"):
        read_esci(d)


def test_kuairec_bad_number_names_line_and_field(tmp_path):
    root = fx.write_kuairec(tmp_path)
    p = root / "KuaiRec 2.0" / "data" / "small_matrix.csv"
    lines = p.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",abc"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"small_matrix.csv:5 \[watch_ratio\]: expected a number, got 'abc'"):
        read_kuairec(root)


def test_kuairec_bad_topic_tag_and_runaway_record_are_one_line_errors(tmp_path):
    root = fx.write_kuairec(tmp_path)
    p = root / "KuaiRec 2.0" / "data" / "kuairec_caption_category.csv"
    text = p.read_bytes().decode("utf-8")  # bytes: keep the file's bare CRs as they are
    p.write_bytes(text.replace('"[五爱市场,感谢快手我要上热门,搞笑]"', "五爱市场").encode("utf-8"))
    with pytest.raises(DataError, match=r"kuairec_caption_category.csv:6 \[topic_tag\]: expected a bracketed tag list"):
        read_kuairec(root)
    lines = text.split("\n")
    lines[2] = '1,UNKNOWN,"an unterminated quote,[],1,游戏,11,子类1,-124,UNKNOWN'  # the quote never closes
    p.write_bytes("\n".join(lines).encode("utf-8"))
    with pytest.raises(DataError, match=r"kuairec_caption_category.csv:3: expected 10 fields"):
        read_kuairec(root)


@pytest.mark.parametrize("sep", ["::", "\t"])
def test_the_arrow_and_line_ratings_readers_agree(tmp_path, sep):
    """The fast (pyarrow) path and the line reader that names faults give the same frame, ids as
    the file writes them (tab files' padded fields trimmed)."""
    from flexrec_bench.datasets.movielens import _read_ratings_fast, _read_ratings_lines

    rows = [("12", "7", "4", "978300760"), ("3", "100", "5", "978302109"), ("12", "007", "1", "978301968")]
    path = tmp_path / "ratings.dat"
    pad = " " if sep == "\t" else ""
    path.write_text("".join(sep.join(f"{pad}{v}" if j < 2 else v for j, v in enumerate(r)) + "\n" for r in rows),
                    encoding="latin-1")
    names, cols = ["UserID", "MovieID", "Rating", "Timestamp"], (0, 1, 2, 3)
    fast = _read_ratings_fast(path, sep, names, cols, False)
    lines = _read_ratings_lines(path, "latin-1", sep, names, cols, False)
    assert fast is not None
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), lines.reset_index(drop=True), check_dtype=False)
    assert list(fast["item_id"]) == ["7", "100", "007"]


def test_kuairec_rows_with_missing_cells_dropped_in_both_layouts(tmp_path):
    """Rows with an empty timestamp or watch ratio are dropped and counted, whether the big matrix
    is there or the small one stands in for it (the reader then compacts one set of columns)."""
    from flexrec_bench.datasets.kuairec import _rows

    root = fx.write_kuairec(tmp_path)
    d = root / "KuaiRec 2.0" / "data"
    for name, field in (("big_matrix.csv", 6), ("small_matrix.csv", 7)):
        lines = (d / name).read_text().splitlines()
        for i in (1, 5, 6, len(lines) - 1):  # the first row, two adjacent rows, the last row
            cells = lines[i].split(",")
            cells[field] = ""
            lines[i] = ",".join(cells)
        (d / name).write_text("\n".join(lines) + "\n")
    raw = read_kuairec(root)
    assert raw.skipped["interactions with a missing timestamp or watch ratio"] == 4
    assert raw.skipped["small-matrix cells with a missing watch ratio"] == 4
    assert len(raw.interactions) == 24 * 30 - 4 and len(raw.eval_labels) == 20 * 25 - 4
    big = pd.read_csv(d / "big_matrix.csv").dropna(subset=["timestamp"])
    assert raw.interactions["timestamp"].tolist() == np.round(big["timestamp"]).astype(np.int64).tolist()
    (d / "big_matrix.csv").unlink()  # the small matrix alone: interactions and labels from one read
    alone = read_kuairec(root)
    assert len(alone.interactions) == len(alone.eval_labels) == 20 * 25 - 4
    small = pd.read_csv(d / "small_matrix.csv").dropna(subset=["watch_ratio"])
    assert alone.eval_labels["signal"].tolist() == small["watch_ratio"].tolist()
    assert alone.interactions["signal"].tolist() == small["watch_ratio"].tolist()
    # the compaction itself, against a boolean index, with read-only and many-drop columns
    rng = np.random.default_rng(0)
    for n, n_drop in ((7, 7), (100, 3), (30_000, 12_000)):
        keep = np.ones(n, bool)
        keep[rng.choice(n, n_drop, replace=False)] = False
        frozen = np.arange(n)
        frozen.flags.writeable = False
        cols = {"a": np.arange(n, dtype=np.int64), "b": rng.random(n), "c": frozen}
        want = {k: v[keep] for k, v in cols.items()}
        got = _rows(cols, keep)
        assert all(np.array_equal(got[k], want[k]) for k in want)
