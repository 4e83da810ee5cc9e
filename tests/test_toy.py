"""The toy build and its critic with known noise (Table 8 in miniature, benchmarks/miniature.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flexrec_bench.datasets.toy import SLOTS, ToyCriticNoise, write_toy_build, write_toy_critic
from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.building.splits import load_split
from reproduce import ReproduceConfig, cells
from training.config import TrainConfig, resolve_reward_signal
from training.env import RankingEnv, Rollout, reward_filler

SIZES = {"train": 300, "val": 20, "test": 20}


def _truth(split) -> np.ndarray:
    out = np.zeros((len(split), 8))
    for r, q in enumerate(split.frame["query"]):
        out[r, list(SLOTS[q.rsplit(" ", 1)[-1]])] = (1.0, 0.5, 0.25)
    return out


def test_sparse_toy_keeps_the_prompts_and_hides_only_training_labels(tmp_path):
    dense = write_toy_build(tmp_path / "dense", SIZES)
    same = write_toy_build(tmp_path / "same", SIZES, observed_fraction=1.0)
    assert json.loads((dense / "manifest.json").read_text())["fingerprint"] == \
        json.loads((same / "manifest.json").read_text())["fingerprint"]
    write_toy_build(tmp_path / "sparse", SIZES, observed_fraction=0.25)
    for split in SIZES:
        d = load_split(tmp_path / "dense", "toy", "toy", split)
        s = load_split(tmp_path / "sparse", "toy", "toy", split)
        assert d.frame["query"].tolist() == s.frame["query"].tolist() and d.candidates == s.candidates
        assert d.observed.all() and np.array_equal(d.relevance, _truth(d))
        if split == "train":
            assert 0.2 < s.observed.mean() < 0.3
            assert np.array_equal(s.relevance, np.where(s.observed, _truth(s), 0.0))
        else:
            assert s.observed.all() and np.array_equal(s.relevance, d.relevance)
    assert json.loads((tmp_path / "sparse" / "toy" / "manifest.json").read_text())["fingerprint"] != \
        json.loads((dense / "manifest.json").read_text())["fingerprint"]
    with pytest.raises(ValueError, match="observed_fraction"):
        write_toy_build(tmp_path / "bad", SIZES, observed_fraction=0.0)


def test_toy_critic_is_calibrated_and_serves_as_the_critic(tmp_path):
    write_toy_build(tmp_path, SIZES, observed_fraction=0.25)
    critic = write_toy_critic(tmp_path, ToyCriticNoise(unreliable_fraction=0.5, reliable_sd=0.05, unreliable_sd=0.5))
    split = load_split(tmp_path, "toy", "toy", "train")
    gains, var = reward_filler("critic", str(tmp_path), "toy", str(critic)).fill(split)
    truth = _truth(split)
    assert np.array_equal(gains[split.observed], split.relevance[split.observed]) and not var[split.observed].any()
    hidden = ~split.observed
    reliable, unreliable = hidden & np.isclose(var, 0.05 ** 2), hidden & np.isclose(var, 0.25)
    assert (reliable | unreliable)[hidden].all() and 0.4 < unreliable[hidden].mean() < 0.6
    err = gains - truth
    assert np.sqrt((err[reliable] ** 2).mean()) < 0.05           # clipping to [0, 1] only shrinks the noise
    assert 0.25 < np.sqrt((err[unreliable] ** 2).mean()) < 0.5
    # `auto` finds it in the default folder; the uncertainty weighting then acts on it
    cfg = TrainConfig(model="m", dataset="toy", data=str(tmp_path), needs="toy")
    assert resolve_reward_signal(cfg) == ("critic", str(critic))
    env = RankingEnv("flexrec", "causal_swap", uncertainty=True)
    env.add_split(split.head(1), reward_filler("critic", str(tmp_path), "toy", str(critic)))
    v = env.instances["toy|train|0"].variance
    noisy_first = list(np.argsort(-v, kind="stable"))       # the least reliable estimates on top
    env.group_advantages([Rollout("toy|train|0", order, [], True, 8) for order in (noisy_first, noisy_first[::-1])])
    assert v.max() > v.min() and env.stats["adv_weight_min"][0] < 1.0  # the noisy-first rollout counts less


def test_imputation_table_errors_name_the_file_and_what_is_wrong(tmp_path):
    write_toy_build(tmp_path, SIZES, observed_fraction=0.25)
    critic = write_toy_critic(tmp_path)
    split = load_split(tmp_path, "toy", "toy", "train")
    table = pq.read_table(critic / "imputations.parquet")
    pq.write_table(table.slice(1), critic / "imputations.parquet")   # the first instance's row is gone
    with pytest.raises(FlexRecError, match=r"imputations.parquet: no row for need 'toy', split 'train', instance 'train0'"):
        reward_filler("critic", str(tmp_path), "toy", str(critic)).fill(split)
    short = table.set_column(3, "mean", pa.array([[0.0]] * len(table), pa.list_(pa.float64())))
    pq.write_table(short, critic / "imputations.parquet")
    with pytest.raises(FlexRecError, match=r"instance 'train0': expected 8 means and variances, got 1 and 8"):
        reward_filler("critic", str(tmp_path), "toy", str(critic)).fill(split)
    write_toy_build(tmp_path, SIZES, observed_fraction=0.5)           # another build in its place
    with pytest.raises(FlexRecError, match="was made for build"):
        reward_filler("critic", str(tmp_path), "toy", str(critic))


def test_table8_on_the_toy_says_why_the_knn_rows_cannot_run(tmp_path):
    write_toy_build(tmp_path, SIZES)
    rows = cells(ReproduceConfig(table=8, model="m", dataset="toy", data=str(tmp_path)))
    assert [c.sets["reward_signal"] for c in rows] == ["observed", "user_knn", "item_knn", "critic", "critic"]
    assert [bool(c.missing) for c in rows] == [False, True, True, False, False]
    assert "has none" in rows[1].missing


def test_a_misleading_toy_critic_ignores_the_truth_where_it_is_unreliable(tmp_path):
    write_toy_build(tmp_path, SIZES, observed_fraction=0.25)
    critic = write_toy_critic(tmp_path, ToyCriticNoise(unreliable="uniform"))
    split = load_split(tmp_path, "toy", "toy", "train")
    gains, var = reward_filler("critic", str(tmp_path), "toy", str(critic)).fill(split)
    truth, hidden = _truth(split), ~split.observed
    bad, good = hidden & np.isclose(var, 0.25), hidden & np.isclose(var, 0.05 ** 2)
    assert abs(np.corrcoef(gains[bad], truth[bad])[0, 1]) < 0.15 < np.corrcoef(gains[good], truth[good])[0, 1]
    assert 0.4 < gains[bad].mean() < 0.6                       # uniform on [0, 1], whatever the gain
    with pytest.raises(ValueError, match="gaussian or uniform"):
        write_toy_critic(tmp_path, ToyCriticNoise(unreliable="flipped"))
