"""Constrained decoding: every answer a permutation by construction, and the log-probs training
takes are those of the distribution the samples were drawn from (renormalised over allowed tokens)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexrec_bench.ranking.constrained import AnswerGrammar, ConstrainedLogits, allowed_masks, constrained_logprobs
from flexrec_bench.foundation.errors import ConfigError, FlexRecError
from flexrec_bench.ranking.parsing import parse_ranking, short_id
from flexrec_bench.ranking.rankers.base import make_ranker
from flexrec_bench.building.splits import load_split


@pytest.fixture(scope="module")
def tok_model(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(tiny_model).eval()


def test_random_walks_through_the_grammar_are_permutations(tok_model):
    tok, _ = tok_model
    rng = np.random.default_rng(0)
    for k, stop in ((12, None), (30, None), (30, 5)):
        g = AnswerGrammar.build(tok, k, stop)
        for _ in range(20):
            s, out = g.start(), []
            while s.phase != "done":
                t = int(rng.choice(g.allowed(s)))
                out.append(t)
                s = g.step(s, t)
            assert g.allowed(s) == [tok.eos_token_id]
            parsed = parse_ranking(tok.decode(out), [short_id(j) for j in range(k)])
            assert len(parsed.positions) == (stop or k) and not parsed.invalid and not parsed.duplicates
            assert not parsed.truncated
            mask = allowed_masks(g, out + [tok.eos_token_id], len(tok))
            assert all(mask[i, t] for i, t in enumerate(out))  # the replay agrees with the walk


def test_a_sampled_sequence_logprob_is_the_sum_of_its_renormalised_token_logprobs(tok_model):
    tok, model = tok_model
    k = 8
    g = AnswerGrammar.build(tok, k)
    ids = tok.apply_chat_template([{"role": "user", "content": "Rank C1 to C8."}], add_generation_prompt=True,
                                  return_tensors="pt")["input_ids"]
    torch.manual_seed(3)
    out = model.generate(ids, do_sample=True, temperature=1.0, top_k=None, top_p=1.0, max_new_tokens=5 * k + 32,
                         logits_processor=[ConstrainedLogits([g], ids.shape[1])], output_scores=True,
                         return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
    completion = out.sequences[0, ids.shape[1]:].tolist()
    assert completion[-1] == tok.eos_token_id  # the grammar ended it
    # what the sampler drew from: the processed scores, renormalised
    sampled = sum(float(torch.log_softmax(s[0].float(), -1)[t]) for s, t in zip(out.scores, completion))
    with torch.no_grad():
        logits = model(out.sequences).logits[0, ids.shape[1] - 1: -1]
    ours = constrained_logprobs(logits, completion, g)
    assert float(ours.sum()) == pytest.approx(sampled, abs=1e-3)
    assert torch.isfinite(ours).all() and float(ours.sum()) > float(torch.log_softmax(logits, -1).gather(
        -1, torch.tensor(completion)[:, None]).sum())  # renormalising over fewer tokens raises every log-prob
    parsed = parse_ranking(tok.decode(completion, skip_special_tokens=True), [short_id(j) for j in range(k)])
    assert parsed.complete


def test_the_hf_ranker_writes_only_permutations_when_constrained(ml100k, tiny_model):
    split = load_split(ml100k, "ml-100k", "interest", "test").head(3)
    free = make_ranker(f"hf:{tiny_model}", max_new_tokens=40, progress=False).rank(split)
    assert free.parse.complete == 0  # a random tiny model writes no ranking on its own
    ranker = make_ranker(f"hf:{tiny_model}", constrained="true", progress=False, batch_size=2)
    res = ranker.rank(split)
    assert res.parse.complete == res.parse.instances == 3 and res.parse.missing_items == 0
    assert ranker.info()["config"]["constrained"] is True


def test_constrained_is_refused_where_there_are_no_logits():
    with pytest.raises(ConfigError, match=r"constrained=true needs a ranker that reads the model's logits"):
        make_ranker("openai:gpt-4o", constrained="true", api_key="never-sent")
    with pytest.raises(ConfigError, match=r"cannot be combined with reasoning"):
        make_ranker("hf:any", constrained="true", reasoning="true")


def test_ids_that_tokenise_alike_are_refused():
    class Same:  # a tokenizer that cannot tell C1 from C2
        eos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [5] if text.startswith("C") else [len(text)]}

    with pytest.raises(FlexRecError, match=r"C2 and C1 tokenise the same"):
        AnswerGrammar.build(Same(), 2)


@pytest.mark.slow
def test_grpo_trains_on_constrained_rollouts_with_their_renormalised_logprobs(ml100k, tiny_model, tmp_path):
    """One GRPO step with constrained_decoding: every rollout is a complete permutation, and the
    trainer's log-probs are the constrained distribution's."""
    import json

    from training.config import TrainConfig
    from training.local import train_local
    from training.trl_trainer import build_trainer_class

    cfg = TrainConfig(model=str(tiny_model), data=str(ml100k), output_dir=str(tmp_path / "run"), train_limit=4,
                      eval_limit=1, eval_steps=1, constrained_decoding=True, save_final=False,
                      trl=dict(max_steps=1, num_generations=4, per_device_train_batch_size=4, learning_rate=1e-3,
                               use_cpu=True, max_completion_length=5 * 30 + 32))
    seen = {}
    trainer_class = build_trainer_class()
    original = trainer_class._generate_and_score_completions

    def spy(self, inputs):
        out = original(self, inputs)
        tok = self.processing_class
        seen.setdefault("texts", []).extend(tok.batch_decode(out["completion_ids"], skip_special_tokens=True))
        ids = out["prompt_ids"][0][out["prompt_mask"][0].bool()].tolist() + out["completion_ids"][0].tolist()
        n = out["completion_ids"].shape[1]
        full = torch.tensor([ids])
        lp, _, _ = self._get_per_token_logps_and_entropies(self.model, full, torch.ones_like(full), n)
        with torch.no_grad():
            logits = self.model(full).logits[0, -n - 1:-1]
        comp = out["completion_ids"][0].tolist()
        g = self._grammar(out["prompt_ids"][0][out["prompt_mask"][0].bool()].tolist())
        m = int(out["completion_mask"][0].sum())
        seen["match"] = torch.allclose(lp[0, :m], constrained_logprobs(logits, comp, g)[:m], atol=1e-4)
        return out

    import training.local as local

    trainer_class._generate_and_score_completions = spy
    builder = local.build_trainer_class
    local.build_trainer_class = lambda: trainer_class
    try:
        train_local(cfg, progress=False)
    finally:
        local.build_trainer_class = builder
    assert seen["match"] and len(seen["texts"]) >= 4
    for text in seen["texts"]:  # every rollout names all 30 candidates once
        assert parse_ranking(text, [short_id(j) for j in range(30)]).complete, text
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "eval" and r["val/interest/format_ok"] == 1.0 for r in rows)
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["flexrec"]["constrained_decoding"]


def test_lenient_masks_follow_the_grammar_up_to_the_first_invalid_token_then_allow_everything(tok_model):
    """squeeze_guard (issue 46 f): a free rollout's valid prefix is scored under the grammar, the rest
    under the model's whole distribution; the strict replay refuses the same rollout."""
    tok, _ = tok_model
    g = AnswerGrammar.build(tok, 4)
    s, good = g.start(), []
    for _ in range(6):  # a valid prefix, walked through the grammar
        t = g.allowed(s)[-1]
        good.append(t)
        s = g.step(s, t)
    invalid = next(t for t in range(len(tok)) if t not in g.allowed(s))
    completion = good + [invalid] + good[:3]
    mask = allowed_masks(g, completion, len(tok), lenient=True)
    assert torch.equal(mask[: len(good)], allowed_masks(g, good, len(tok)))  # exactly the grammar's masks
    assert not mask[: len(good)].all(-1).any()  # each valid position restricts something
    assert mask[len(good):].all()  # from the first invalid token: the whole distribution
    with pytest.raises(FlexRecError, match="not allowed by the grammar"):
        allowed_masks(g, completion, len(tok))
