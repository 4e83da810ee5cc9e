"""Issue 46 (b): credit lands where it is meant. A known advantage is planted on every item, one
training step runs through the real TRL trainer, and what reaches the loss is read back: the
advantage at each completion token, the gradient of the loss with respect to each token's
log-probability (it must be -A_t / N, token by token), the group ids, the KL reference and the
learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

PLANT_SEQ = -0.77  #: the sequence advantage every non-item token gets


def _plant(item: int) -> float:
    """The planted advantage of candidate position ``item`` (C1 -> 0.1, C2 -> 0.2, ...)."""
    return 0.1 * (item + 1)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from flexrec_bench.datasets.toy import write_toy_build
    from flexrec_bench.ranking.prompts import PromptConfig, split_messages
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.ranking.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("planted")
    data = write_toy_build(root / "data", {"train": 64, "val": 8, "test": 8}).parent
    train = load_split(data, "toy", "toy", "train")
    texts = [split_messages(train, i, PromptConfig())[1]["content"] for i in range(32)]
    model = build_tiny_model(root / "tiny", hidden_size=64, extra_texts=texts)
    return root, data, model


def _run_one_step(toy_run, monkeypatch, algo="flexrec", beta=0.0, **extra):
    """One step of ``train_local`` with planted item advantages; returns what ``_compute_loss`` saw."""
    import trl

    from training import env as env_mod
    from training.config import from_dict
    from training.local import train_local

    root, data, model = toy_run

    def planted(self, rollouts):
        item_adv = [np.array([_plant(p) for p in r.order], float) for r in rollouts]
        return item_adv, np.full(len(rollouts), PLANT_SEQ)

    monkeypatch.setattr(env_mod.RankingEnv, "group_advantages", planted)
    seen: dict = {"groups": [], "inputs": [], "grads": [], "lr": []}
    base_loss = trl.GRPOTrainer._compute_loss
    base_tok = env_mod.RankingEnv.token_advantages

    def loss_hook(self, model_, inputs):
        if "_get_per_token_logps_and_entropies" not in self.__dict__:  # the trainer's own (constrained) log-probs
            own = self._get_per_token_logps_and_entropies

            def logps_hook(*a, **kw):
                out = own(*a, **kw)
                if torch.is_grad_enabled() and out[0].requires_grad:
                    out[0].register_hook(lambda g: seen["grads"].append(g.detach().clone()))
                return out

            self._get_per_token_logps_and_entropies = logps_hook
        seen["inputs"].append({k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)})
        seen["lr"].append(self.lr_scheduler.get_last_lr()[0])
        seen["trainer"] = self
        return base_loss(self, model_, inputs)

    def tok_hook(self, keys, *a, **kw):
        seen["groups"].append(list(keys))
        return base_tok(self, keys, *a, **kw)

    monkeypatch.setattr(trl.GRPOTrainer, "_compute_loss", loss_hook)
    monkeypatch.setattr(env_mod.RankingEnv, "token_advantages", tok_hook)
    cfg = from_dict(dict(algo=algo, model=str(model), data=str(data), dataset="toy", needs=("toy",),
                         output_dir=str(root / f"run-{algo}-{beta}"), max_steps=1, num_generations=4,
                         per_device_train_batch_size=8, learning_rate=1e-3, beta=beta, eval_steps=0,
                         constrained_decoding=True, save_final=False, reward_signal="observed",
                         save_strategy="no", use_cpu=True, **extra))
    train_local(cfg, progress=False)
    return seen


def test_planted_item_advantages_reach_the_loss_on_the_tokens_of_their_item(toy_run, monkeypatch):
    from transformers import AutoTokenizer

    from verl_check import item_tokens  # tests/: the same reference map as the verl check's

    seen = _run_one_step(toy_run, monkeypatch)
    tok = AutoTokenizer.from_pretrained(str(toy_run[2]))
    # group ids: 2 prompts x 4 rollouts, each key exactly num_generations times, consecutive
    keys = seen["groups"][0]
    assert len(keys) == 8 and all(keys.count(k) == 4 for k in keys) and len(set(keys)) == 2
    assert keys[:4] == [keys[0]] * 4
    inputs = seen["inputs"][0]
    adv, ids, mask = inputs["advantages"], inputs["completion_ids"], inputs["completion_mask"]
    checked_items = checked_format = 0
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        # the reference offsets (prefix decodes), not the O(T) ones the trainer uses
        text, item_of = item_tokens(tok, ids[row, :n].tolist())
        assert text.startswith("<answer>"), text  # constrained: every rollout is a permutation
        assert sorted(set(item_of.values())) == list(range(8)), text
        for t in range(n):
            want = _plant(item_of[t]) if t in item_of else PLANT_SEQ
            assert adv[row, t].item() == pytest.approx(want, abs=1e-6), (text, t)
            checked_items += t in item_of
            checked_format += t not in item_of
        assert torch.all(adv[row, n:] == 0)  # padding after the answer carries nothing
    assert checked_items >= 8 * 16 and checked_format >= 8 * 8
    # the gradient of the loss with respect to each token's log-probability is -A_t / N (beta 0,
    # first iteration: ratio 1, no clipping), so each token is pushed by its own advantage
    grad = seen["grads"][0]
    m = mask.bool()
    n_items = m.sum().item()
    assert torch.allclose(grad[m], -adv[m] / n_items, atol=1e-7)
    assert torch.all(grad[~m] == 0)


def test_the_kl_reference_and_the_lr_schedule_are_what_the_config_says(toy_run, monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = _run_one_step(toy_run, monkeypatch, beta=0.05, lr_scheduler_type="constant", warmup_steps=0)
    trainer = seen["trainer"]
    assert trainer.beta == 0.05 and trainer.ref_model is not None
    start = AutoModelForCausalLM.from_pretrained(str(toy_run[2]))
    ref = dict(trainer.ref_model.named_parameters())
    # the reference is the starting model, frozen (the policy itself has moved after the step)
    for name, p in start.named_parameters():
        assert torch.equal(ref[name].detach().cpu(), p.detach()), name
    assert seen["lr"] == [pytest.approx(1e-3)]
    assert "ref_per_token_logps" in seen["inputs"][0]


def test_rec_r1_keeps_one_sequence_advantage_on_every_token(toy_run, monkeypatch):
    seen = _run_one_step(toy_run, monkeypatch, algo="rec-r1")
    inputs = seen["inputs"][0]
    adv, mask = inputs["advantages"], inputs["completion_mask"].bool()
    adv = adv if adv.dim() == 2 else adv[:, None].expand_as(mask)
    for row in range(mask.shape[0]):  # TRL's own group-normalised reward: one value per rollout
        vals = adv[row][mask[row]]
        assert torch.allclose(vals, vals[0].expand_as(vals))
