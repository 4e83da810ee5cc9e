"""Builds as Hugging Face datasets: every build writes a dataset card, datasets.load_dataset reads
each config with the rows and features our reader sees, and publish-build refuses what it must
before any network call."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from flexrec_bench.building.card import check_repo_id, publish_build, write_card
from flexrec_bench.cli import app
from flexrec_bench.datasets import DATASETS
from flexrec_bench.foundation.errors import ConfigError, FlexRecError
from flexrec_bench.building.splits import SPLITS, load_manifest, load_split


def test_a_build_loads_as_a_hugging_face_dataset_with_every_config(ml100k, tmp_path):
    datasets = pytest.importorskip("datasets")
    root = ml100k / "ml-100k"
    card = (root / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "other" and meta["license_name"] == "movielens-terms"
    assert "Not for upload" in card and "Harper" in card and load_manifest(ml100k, "ml-100k")["fingerprint"] in card
    assert [c["config_name"] for c in meta["configs"]] == ["interest", "niche", "trend", "items"]
    for need in ("interest", "niche", "trend"):
        ds = datasets.load_dataset(str(root), need, cache_dir=str(tmp_path / "hf"))
        assert set(ds) == {"train", "validation", "test"}
        for split, hf in (("train", "train"), ("val", "validation"), ("test", "test")):
            ours = load_split(ml100k, "ml-100k", need, split)
            assert len(ds[hf]) == len(ours) and ds[hf]["instance_id"] == ours.instance_ids
            assert [list(c) for c in ds[hf]["candidates"]] == ours.candidates
        assert list(ds["test"].features) == list(ours.frame.columns)
    items = datasets.load_dataset(str(root), "items", cache_dir=str(tmp_path / "hf"))["train"]
    assert len(items) == len(ours.items) and "train_count" in items.features


def test_publish_refuses_before_any_network_call(ml100k, tmp_path, monkeypatch):
    for bad in ("no-owner", "a/b/c", "owner/na me", "/name", ""):
        with pytest.raises(ConfigError, match=r"--repo-id must be owner/name"):
            check_repo_id(bad)
    import huggingface_hub

    def boom(*a, **k):
        raise AssertionError("no network call may happen")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", boom)
    with pytest.raises(FlexRecError, match=r"ml-100k: its source data may not be redistributed"):
        publish_build(ml100k, "ml-100k", "me/ml100k-build")
    r = CliRunner().invoke(app, ["publish-build", "--repo-id", "bad id", "--data", str(ml100k)])
    assert isinstance(r.exception, ConfigError)
    spec = DATASETS.get("toy")
    with pytest.raises(ConfigError, match=r"toy has no licence recorded"):
        write_card(tmp_path, {"needs": {}, "fingerprint": "x"}, spec)
    assert set(SPLITS) == {"train", "val", "test"}


def test_a_redistributable_build_stops_at_the_network_in_one_line(tmp_path, monkeypatch):
    import rawfixtures as fx

    from flexrec_bench.building.build import build
    from flexrec_bench.building.config import BuildConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build(BuildConfig(dataset="esci", raw_dir=str(fx.write_esci(tmp_path / "raw")), out=str(tmp_path / "o"),
                      embedder="hashing-32", candidates=8), progress=False)
    meta = yaml.safe_load((tmp_path / "o" / "esci" / "README.md").read_text().split("---")[1])
    assert meta["license"] == "apache-2.0" and [c["config_name"] for c in meta["configs"]] == ["search", "items"]
    with pytest.raises(FlexRecError, match=r"publish-build me/esci-build: ") as exc:
        publish_build(tmp_path / "o", "esci", "me/esci-build")
    assert "\n" not in str(exc.value)
