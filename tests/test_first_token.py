"""First-token ranking: single-token labels, one forward pass, the ranking is the order of the
label logits; refused where it cannot work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexrec_bench.foundation.errors import ConfigError, FlexRecError
from flexrec_bench.ranking.first_token import ANSWER_OPEN, id_scheme
from flexrec_bench.ranking.prompts import split_messages
from flexrec_bench.ranking.rankers.base import make_ranker
from flexrec_bench.building.splits import load_split


def test_first_token_ranks_by_the_label_logits_of_one_forward_pass(ml100k, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    split = load_split(ml100k, "ml-100k", "niche", "test").head(3)
    ranker = make_ranker(f"hf:{tiny_model}", scoring="first_token", progress=False, batch_size=2)
    res = ranker.rank(split)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    scheme, labels, tokens = id_scheme(tok, split.k)
    assert len(set(tokens)) == split.k and ranker.info()["config"]["id_scheme"] == scheme
    for i in range(3):
        msgs = split_messages(split, i, ranker.prompt, lambda t: len(tok(t, add_special_tokens=False)["input_ids"]),
                              labels)
        assert f"[{labels[0]}]" in msgs[-1]["content"]  # the prompt shows the single-token labels
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) + ANSWER_OPEN
        with torch.no_grad():
            logits = model(**tok(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1, tokens]
        expected = np.argsort(-logits.numpy(), kind="stable")
        got = res.order[i][res.order[i] >= 0]
        assert np.allclose(np.sort(logits.numpy())[::-1], logits.numpy()[got], atol=1e-5)  # descending by logit
        assert set(got) == set(expected)
    assert res.parse.complete == 3 and res.outputs[0].startswith("<answer>C")


def test_first_token_refusals(tiny_model):
    with pytest.raises(ConfigError, match=r"scoring must be one of generate, first_token"):
        make_ranker(f"hf:{tiny_model}", scoring="last_token")
    with pytest.raises(ConfigError, match=r"neither constrained=true nor reasoning=true"):
        make_ranker(f"hf:{tiny_model}", scoring="first_token", constrained="true")
    with pytest.raises(ConfigError, match=r"scoring=first_token reads the model's logits: openai exposes none"):
        make_ranker("openai:gpt-4o", scoring="first_token", api_key="never-sent")

    class Digits:  # a tokenizer that splits every multi-character label
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    assert id_scheme(Digits(), 9)[0] == "number"
    assert id_scheme(Digits(), 30)[0] == "letter"
    with pytest.raises(FlexRecError, match=r"no single-token labels for 60 candidates"):
        id_scheme(Digits(), 60)


def test_a_killed_first_token_run_resumes_from_its_finished_batches(ml100k, tiny_model, tmp_path):
    """The side file keeps each finished batch's label logits: a rerun forwards only the rest and
    ranks as an uninterrupted run does."""
    split = load_split(ml100k, "ml-100k", "interest", "test").head(5)
    side = tmp_path / ".test.partial.jsonl"
    ref = make_ranker(f"hf:{tiny_model}", scoring="first_token", progress=False, batch_size=2).rank(split)

    def counted(ranker, die_after=None):
        ranker._load()
        real, ranker.calls = ranker._model, 0

        def forward(**kw):
            ranker.calls += 1
            if die_after is not None and ranker.calls > die_after:
                raise KeyboardInterrupt("killed")
            return real(**kw)

        ranker._model = forward
        ranker.resume_path = side
        return ranker

    first = counted(make_ranker(f"hf:{tiny_model}", scoring="first_token", progress=False, batch_size=2), die_after=1)
    with pytest.raises(KeyboardInterrupt):
        first.rank(split)
    assert len(side.read_text().strip().splitlines()) == 2  # the header and one finished batch
    again = counted(make_ranker(f"hf:{tiny_model}", scoring="first_token", progress=False, batch_size=2))
    res = again.rank(split)
    assert again.calls == 2  # 3 instances left, batches of 2
    assert np.array_equal(res.order, ref.order) and res.outputs == ref.outputs
