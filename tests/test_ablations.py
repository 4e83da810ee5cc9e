"""The ablation axes of the paper's Tables 7 and 8 (reward signal, uncertainty, item reward,
estimator) and Rank-GRPO's rank-level ratio, each against a hand-computed example."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from flexrec_bench.cli import app
from training.advantages import per_token_advantages, rank_index, rank_level_logps
from training.env import RankingEnv, _Instance

runner = CliRunner()


def test_rank_level_logps_are_each_items_mean_log_probability():
    # tokens: [fmt, item0, item0, sep, item1, item1, item1, eos]
    logp = torch.log(torch.tensor([[0.5, 0.2, 0.8, 0.9, 0.1, 0.5, 0.4, 0.7]]))
    ranks = torch.tensor([[-1, 0, 0, -1, 1, 1, 1, -1]])
    out = rank_level_logps(logp, ranks)
    g0 = (0.2 * 0.8) ** 0.5          # geometric mean of item 0's token probabilities
    g1 = (0.1 * 0.5 * 0.4) ** (1 / 3)
    np.testing.assert_allclose(out.exp()[0].numpy(), [0.5, g0, g0, 0.9, g1, g1, g1, 0.7], rtol=1e-6)
    # the rank-level importance ratio: (pi / pi_old)^(1/|y_k|) on every token of rank k
    old = torch.log(torch.tensor([[0.5, 0.4, 0.8, 0.9, 0.2, 0.5, 0.4, 0.7]]))
    ratio = (out - rank_level_logps(old, ranks)).exp()[0].numpy()
    np.testing.assert_allclose(ratio[[1, 2]], (0.2 / 0.4) ** 0.5, rtol=1e-6)
    np.testing.assert_allclose(ratio[[4, 5, 6]], (0.1 / 0.2) ** (1 / 3), rtol=1e-6)
    np.testing.assert_allclose(ratio[[0, 3, 7]], 1.0)
    # gradients reach every token of a rank, 1/|y_k| each
    x = logp.clone().requires_grad_(True)
    rank_level_logps(x, ranks)[0, 4].backward()
    np.testing.assert_allclose(x.grad[0].numpy(), [0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0], atol=1e-7)


def test_rank_grpo_spreads_each_ranks_advantage_over_its_tokens():
    spans = [[1, 2], [4, 5, 6]]
    a = per_token_advantages(8, 0.3, spans, [1.0, -0.6], per_rank_mean=True)
    np.testing.assert_allclose(a, [0.3, 0.5, 0.5, 0.3, -0.2, -0.2, -0.2, 0.3])
    np.testing.assert_array_equal(rank_index(8, spans), [-1, 0, 0, -1, 1, 1, 1, -1])
    # rank-level advantages: rank rewards (DCG of ranks k..K) normalised per rank across the group
    env = RankingEnv("rank-grpo", "causal_swap", uncertainty=False)
    env.instances["x"] = _Instance("x", 2, np.array([1.0, 0.0]), np.zeros(2), 1.0)
    from training.env import Rollout

    item_adv, _ = env.group_advantages([Rollout("x", [0, 1], [], True), Rollout("x", [1, 0], [], True)])
    # rollout 0: rank rewards [1, 0]; rollout 1: [1/log2(3), 1/log2(3)] -> per-rank z-scores
    r = np.array([[1.0, 0.0], [1 / np.log2(3), 1 / np.log2(3)]])
    expect = (r - r.mean(0)) / (r.std(0) + 1e-4)
    np.testing.assert_allclose(np.stack(item_adv), expect, rtol=1e-6)


def test_ppo_rewards_sit_on_each_items_last_token():
    from flexrec_bench.ranking.tiny import build_tokenizer
    from training.advantages import token_offsets
    from training.rewards import causal_swap_rewards

    import tempfile

    tok = build_tokenizer(tempfile.mkdtemp())
    env = RankingEnv("flexrec", "causal_swap", uncertainty=False)
    g = np.array([0.0, 1.0, 0.5])
    env.instances["x"] = _Instance("x", 3, g, np.zeros(3), float(np.sort(g)[::-1] @ (1 / np.log2(np.arange(3) + 2))))
    ids = tok("<answer>C2, C3, C1</answer>", add_special_tokens=False)["input_ids"]
    text, offs = token_offsets(tok, ids)
    credit = env.token_rewards(["x"], [text], [offs], [len(ids)])
    rewards = causal_swap_rewards(g[[1, 2, 0]][None], np.array([env.instances["x"].idcg]))[0]
    ranks = credit.ranks[0]
    for k in range(3):
        last = int(np.flatnonzero(ranks == k).max())
        assert credit.advantages[0][last] == pytest.approx(rewards[k])
    assert np.count_nonzero(credit.advantages[0]) == np.count_nonzero(rewards)


def _knn_data(tmp_path):
    """A hand-made build: 3 training users; user u3 (held out) has history [a]."""
    root = tmp_path / "toy"
    root.mkdir()
    rows = [("u1", "a", 5.0), ("u1", "b", 4.0), ("u2", "a", 5.0), ("u2", "b", 2.0), ("u2", "c", 5.0),
            ("u3x", "c", 1.0)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "signal"])
    inter["split"], inter["observed"], inter["timestamp"] = "train", True, np.arange(len(rows))
    pq.write_table(pa.Table.from_pandas(inter), root / "interactions.parquet")
    pq.write_table(pa.table({"item_id": ["a", "b", "c"]}), root / "items.parquet")
    (root / "manifest.json").write_text('{"needs": {"interest": {"config": {}}}}')  # the interest need's defaults
    return tmp_path


class _Split:
    """The fields of a DatasetSplit the imputers read."""

    def __init__(self, history, signals, user, cands):
        k = len(cands)
        self.frame = pd.DataFrame({"history": [history], "history_signals": [signals], "user_id": [user],
                                   "candidates": [cands]})
        self.relevance = np.zeros((1, k), np.float32)
        self.mask = np.ones((1, k), bool)
        self.observed = np.zeros((1, k), bool)

    def __len__(self):
        return 1


def test_item_and_user_knn_impute_by_hand(tmp_path, monkeypatch):
    import training.knn as knn
    from flexrec_bench.datasets import DATASETS

    monkeypatch.setitem(DATASETS._objs, "toy", DATASETS.get("ml-100k"))
    data = _knn_data(tmp_path)
    lab = lambda r: (2.0 ** r - 1) / 31  # noqa: E731  the interest need's rating -> relevance map
    from training.critic import interest_targets

    np.testing.assert_allclose(interest_targets(np.array([5.0, 4.0, 2.0]), "rating"), [lab(5), lab(4), lab(2)], rtol=1e-6)
    # Item-KNN for a user with history [a (rated 4)]: cos(b, a) = 2/(sqrt2 sqrt2) = 1, cos(c, a) = 1/(1 sqrt2)
    item = knn.KNNImputer("item_knn", data, "toy")
    gains, var = item.fill(_Split(["a"], [4.0], "new", ["b", "c"]))
    np.testing.assert_allclose(gains[0], [lab(4), lab(4)], rtol=1e-5)  # one neighbour: its label, whatever the weight
    assert (var == 0).all()
    gains, _ = item.fill(_Split(["a", "c"], [4.0, 2.0], "new", ["b"]))
    w_a, w_c = 1.0, 1 / (np.sqrt(2) * np.sqrt(2))    # cos(b, a) = 1; cos(b, c): b={u1,u2}, c={u2,u3x} -> 1/2
    np.testing.assert_allclose(gains[0, 0], (w_a * lab(4) + w_c * lab(2)) / (w_a + w_c), rtol=1e-5)
    # User-KNN for history [a]: cos(h, u1) = 1/sqrt2, cos(h, u2) = 1/sqrt3; u3x has no a: 0
    user = knn.KNNImputer("user_knn", data, "toy")
    gains, _ = user.fill(_Split(["a"], [5.0], "new", ["b", "c"]))
    s1, s2 = 1 / np.sqrt(2), 1 / np.sqrt(3)
    np.testing.assert_allclose(gains[0], [(s1 * lab(4) + s2 * lab(2)) / (s1 + s2), lab(5)], rtol=1e-5)
    # the instance's own user is never its neighbour
    gains, _ = user.fill(_Split(["a"], [5.0], "u2", ["b", "c"]))
    np.testing.assert_allclose(gains[0], [lab(4), 0.0], rtol=1e-5)


def test_local_backend_refuses_ppo_in_one_line(tiny_model):
    r = runner.invoke(app, ["train", "--model", str(tiny_model), "--set", "estimator=ppo"])
    assert r.exit_code != 0
    msg = str(r.exception) + r.output
    assert "estimator=ppo needs the verl backend" in msg and "TRL 1.x has no PPO trainer" in msg


@pytest.mark.slow
@pytest.mark.parametrize("signal", ["item_knn", "user_knn"])
def test_two_step_runs_with_knn_reward_signals(ml100k, tiny_model, tmp_path, signal):
    out = tmp_path / signal
    r = runner.invoke(app, ["train", "--model", str(tiny_model), "--data", str(ml100k), "--output-dir", str(out),
                            "--max-steps", "2", "--set", f"reward_signal={signal}", "--set", "num_generations=2",
                            "--set", "per_device_train_batch_size=2", "--set", "train_limit=2", "--set", "eval_limit=2",
                            "--set", "eval_steps=2", "--set", "max_completion_length=12", "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["flexrec"]["reward_signal"] == signal and cfg["trl"]["max_steps"] == 2
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert sum(1 for x in rows if x["kind"] == "train" and "loss" in x) == 2


def test_critic_is_appendix_gs_relu_mlp(tmp_path):
    from torch import nn

    from training.critic import CriticNet, table4_markdown

    net = CriticNet(8)
    acts = {type(m) for m in net.modules() if isinstance(m, (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU))}
    assert acts == {nn.ReLU}
    assert any(isinstance(m, nn.LayerNorm) for m in net.modules())
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.05, 0.05, 0.05]
    md = table4_markdown({"test_mse": 0.3281, "test_mae": 0.4, "test_pearson_mean": 0.317,
                          "test_pearson_var_sqerr": 0.271}, "kuairec")
    assert "| Method | MSE | MAE | Pearson (Mean) | Pearson (Var) |" in md and "| Critic | 0.328 | 0.400 | 0.317 | 0.271 |" in md


def test_critic_early_stopping_reports_the_epoch_kept(ml100k, tmp_path):
    from training.critic import CriticConfig, train_critic

    _, rep = train_critic(ml100k, "ml-100k", CriticConfig(epochs=30, max_pairs=400, patience=1, lr=0.5), tmp_path / "c",
                          progress=False)  # a huge learning rate: validation MSE stops improving early
    assert rep["epochs_run"] < 30 and rep["epochs_run"] == rep["epoch_kept"] + 1
    assert rep["best_val_mse"] == min(c["val_mse"] for c in rep["curve"]) and rep["device"] == "cpu"
    assert (tmp_path / "c" / "table4.md").exists()


def test_critic_resumes_where_it_stopped_and_matches_an_uninterrupted_run(ml100k, tmp_path):
    import torch

    from training.critic import CriticConfig, state_path, train_critic

    cfg = CriticConfig(epochs=3, max_pairs=400)
    _, full = train_critic(ml100k, "ml-100k", cfg, tmp_path / "full", progress=False)
    # a run stopped after its first epoch: what critic_state.pt holds then
    train_critic(ml100k, "ml-100k", CriticConfig(epochs=1, max_pairs=400), tmp_path / "part", progress=False)
    st = torch.load(state_path(tmp_path / "part"), weights_only=False)
    st["config"]["epochs"] = 3  # the same run, asked for 3 epochs, stopped after 1
    torch.save(st, state_path(tmp_path / "part"))
    _, resumed = train_critic(ml100k, "ml-100k", cfg, tmp_path / "part", progress=False, resume=True)
    assert [c["epoch"] for c in resumed["curve"]] == [1, 2, 3]
    assert [c["val_mse"] for c in resumed["curve"]] == pytest.approx([c["val_mse"] for c in full["curve"]], rel=1e-5)
    with pytest.raises(Exception, match="no critic_state.pt"):
        train_critic(ml100k, "ml-100k", cfg, tmp_path / "none", progress=False, resume=True)


def test_critic_fill_keeps_watch_ratios_above_one():
    import torch

    from training.critic import Critic, CriticConfig, CriticNet

    class _Split:
        dataset = "kuairec"
        items = pd.DataFrame({"item_id": ["a", "b"]})
        frame = pd.DataFrame({"history": [["a"]], "history_signals": [[1.0]], "candidates": [["a", "b"]]})
        relevance = np.zeros((1, 2), np.float32)
        mask = np.ones((1, 2), bool)
        observed = np.array([[False, False]])

    net = CriticNet(4, hidden=8)
    with torch.no_grad():  # a critic that predicts a watch ratio of 2.5 everywhere
        for p in net.parameters():
            p.zero_()
        net.joint[-1].bias.copy_(torch.tensor([2.5, 0.0]))
    emb = np.eye(2, 4, dtype=np.float32)
    gains, var = Critic(net, CriticConfig(hidden=8), emb, {"target_max": 3.0}).fill(_Split())
    np.testing.assert_allclose(gains, [[2.5, 2.5]])  # not clipped to 1
    gains, _ = Critic(net, CriticConfig(hidden=8), emb, {"target_max": 1.0}).fill(_Split())
    np.testing.assert_allclose(gains, [[1.0, 1.0]])  # ratings: at most 1


def test_critic_targets_follow_the_builds_interest_options(tmp_path):
    """The critic learns the labels the build made: an interest option changes its targets."""
    import rawfixtures as fx

    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build
    from training.critic import CriticConfig, training_pairs

    raw = fx.write_ml1m(tmp_path / "raw")
    small = dict(dataset="ml-1m", raw_dir=str(raw), needs=("interest",), embedder="hashing-32", train_size=30,
                 test_size=10, candidates=8, history=6, min_history=3)
    build(BuildConfig(out=str(tmp_path / "a"), **small), progress=False)
    build(BuildConfig(out=str(tmp_path / "b"), need_options={"interest": {"rating_max": "10"}}, **small), progress=False)
    _, items_a, ya, _ = training_pairs(tmp_path / "a", "ml-1m", CriticConfig())
    _, items_b, yb, _ = training_pairs(tmp_path / "b", "ml-1m", CriticConfig())
    assert (items_a == items_b).all() and ya.max() == pytest.approx(1.0)
    np.testing.assert_allclose(yb, ya * (2.0 ** 5 - 1) / (2.0 ** 10 - 1), rtol=1e-5)  # (2^r - 1) / (2^max - 1)
