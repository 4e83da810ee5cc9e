"""Amazon ESCI (Shopping Queries) reader: examples joined with products on (locale, product_id)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from flexrec_bench.foundation.errors import DataError
from flexrec_bench.datasets._text import clean_text, field_lines, require_file
from flexrec_bench.datasets.base import RawData, empty_interactions

EXAMPLE_COLUMNS = ("example_id", "query", "query_id", "product_id", "product_locale", "esci_label",
                   "small_version", "large_version", "split")
PRODUCT_COLUMNS = ("product_id", "product_title", "product_description", "product_bullet_point",
                   "product_brand", "product_color", "product_locale")
ESCI_LABELS = ("E", "S", "C", "I")
SOURCE_COLUMNS = ("query_id", "source")
#: ``small``: the reduced task-1 set (small_version == 1), the paper's and the ESCI README's ranking
#: task; ``large``: every example (large_version == 1)
ESCI_VERSIONS = {"small": "small_version", "large": "large_version"}


def _read_parquet(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    require_file(path, "run `flexrec-bench download --dataset esci` or pass --raw-dir")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for non-parquet input
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; found {', '.join(schema.names)}")
    return pq.read_table(path, columns=[c for c in required if c in schema.names]).to_pandas()


#: characters of the bullet points kept in a product's text (ours; the paper states no cut)
BULLET_CHARS = 500


def product_text(row) -> str:
    """Appendix E's product text: ``Product title: <product_title>``, ``Product description:
    <product_bullet_point>`` (the first BULLET_CHARS characters, ours), ``Brand: <product_brand>``,
    ``Color: <product_color>`` on separate lines; a missing field leaves its line out."""
    bullets = clean_text(row.product_bullet_point)
    return field_lines([("Product title", clean_text(row.product_title) or "unknown product"),
                        ("Product description", bullets[:BULLET_CHARS] if bullets else None),
                        ("Brand", clean_text(row.product_brand)), ("Color", clean_text(row.product_color))])


def read_esci(raw_dir: Path | None, locale: str = "us", version: str = "small") -> RawData:
    """Examples of one locale and version, joined with their products; only products that occur in
    those examples become items (and are embedded). The official train/test split is kept.
    ``shopping_queries_dataset_sources.csv`` is checked and hashed when present."""
    if version not in ESCI_VERSIONS:
        raise DataError("esci", f"--esci-version must be one of {', '.join(ESCI_VERSIONS)}, got {version!r}")
    if raw_dir is None:
        from flexrec_bench.foundation.paths import raw_dir as default_raw

        raw_dir = default_raw("esci")
    if (raw_dir / "shopping_queries_dataset").is_dir():
        raw_dir = raw_dir / "shopping_queries_dataset"
    ex_path = raw_dir / "shopping_queries_dataset_examples.parquet"
    pr_path = raw_dir / "shopping_queries_dataset_products.parquet"
    ex = _read_parquet(ex_path, EXAMPLE_COLUMNS)
    pr = _read_parquet(pr_path, PRODUCT_COLUMNS)
    bad = ~ex["esci_label"].isin(ESCI_LABELS)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(ex_path, f"esci_label must be one of E/S/C/I, got {ex['esci_label'].iloc[i]!r}", line=i + 1,
                        field="esci_label")
    bad_split = ~ex["split"].isin(("train", "test"))
    if bad_split.any():
        i = int(bad_split.to_numpy().nonzero()[0][0])
        raise DataError(ex_path, f"split must be train or test, got {ex['split'].iloc[i]!r}", line=i + 1, field="split")
    ex = ex[ex["product_locale"] == locale]
    if ex.empty:
        raise DataError(ex_path, f"no examples for locale {locale!r}", field="product_locale")
    flag = ESCI_VERSIONS[version]
    ex = ex[pd.to_numeric(ex[flag], errors="coerce") == 1]
    if ex.empty:
        raise DataError(ex_path, f"no {locale!r} examples with {flag} == 1", field=flag)
    sources = [ex_path, pr_path]
    src_path = raw_dir / "shopping_queries_dataset_sources.csv"
    if src_path.exists():
        from flexrec_bench.datasets._text import read_csv_records

        for _ in read_csv_records(src_path, SOURCE_COLUMNS):
            pass
        sources.append(src_path)
    pr = pr[pr["product_locale"] == locale].drop_duplicates("product_id")
    joined = ex.merge(pr, on=["product_locale", "product_id"], how="left", indicator=True)
    raw = RawData("esci", items=pd.DataFrame(), interactions=pd.DataFrame(), sources=sources)
    raw.count_skip("examples whose product is missing from the products file", int((joined["_merge"] != "both").sum()))
    joined = joined[joined["_merge"] == "both"]
    items = joined.drop_duplicates("product_id").sort_values("product_id")
    raw.items = pd.DataFrame({
        "item_id": items["product_id"].astype(str).to_numpy(),
        "title": [clean_text(t) or "unknown product" for t in items["product_title"]],
        "text": [product_text(r) for r in items.itertuples()],
        "topics": [[clean_text(b)] if clean_text(b) else [] for b in items["product_brand"]],
    })
    raw.queries = pd.DataFrame({
        "query_id": joined["query_id"].astype(str).to_numpy(),
        "query": [clean_text(q) or "" for q in joined["query"]],
        "item_id": joined["product_id"].astype(str).to_numpy(),
        "label": joined["esci_label"].to_numpy(),
        "split": joined["split"].to_numpy(),
    })
    raw.interactions = empty_interactions()
    return raw
