"""docs/extending.md, followed as a user would: a need and a ranker added through the registries
(the route the page documents) and run through build-data and eval."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import rawfixtures as fx
from typer.testing import CliRunner

from flexrec_bench.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The page's two Python blocks, written as a module of the user's own package."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    need_code, ranker_code = blocks[0], blocks[1]
    (tmp_path / "my_plugin.py").write_text(need_code + "\n\n" + ranker_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    from flexrec_bench.building.labeling import NEEDS
    from flexrec_bench.ranking.rankers import RANKERS

    NEEDS.register("freshness", lazy="my_plugin:FreshnessNeed")
    RANKERS.register("reverse", lazy="my_plugin:RecentRanker")
    yield
    NEEDS._objs.pop("freshness", None), NEEDS._lazy.pop("freshness", None)
    RANKERS._objs.pop("reverse", None), RANKERS._lazy.pop("reverse", None)
    sys.modules.pop("my_plugin", None)


def test_a_need_and_a_ranker_added_as_the_guide_says_run_through_build_and_eval(plugin, tmp_path):
    runner = CliRunner()
    raw = fx.write_ml1m(tmp_path / "raw")
    r = runner.invoke(app, ["build-data", "--dataset", "ml-1m", "--raw-dir", str(raw), "--out", str(tmp_path / "data"),
                            "--needs", "interest,freshness", "--embedder", "hashing-32", "--candidates", "8",
                            "--history", "6", "--min-history", "3", "--train-size", "30", "--test-size", "10",
                            "--need-option", "freshness.window_seconds=86400", "--quiet"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "data" / "ml-1m" / "manifest.json").read_text())
    assert m["needs"]["freshness"]["config"] == {"window_seconds": 86400}
    assert m["needs"]["freshness"]["prompt"]["candidate_columns"]["recent_count"]
    r = runner.invoke(app, ["eval", "--model", "reverse", "--dataset", "ml-1m", "--need", "freshness", "--data",
                            str(tmp_path / "data"), "--out", str(tmp_path / "res"), "-o", "strength=2", "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads(next((tmp_path / "res").rglob("results.json")).read_text())
    assert res["model"]["name"] == "reverse" and res["dataset"]["need"] == "freshness"
    r = runner.invoke(app, ["ls"])
    assert "freshness" in r.output and "reverse" in r.output
