"""Tiny causal LMs built from a config with a tokenizer trained locally: no hub download.

Used by the tests, the benchmarks and smoke runs (``flexrec-bench make-tiny-model``). The
weights are random; the point is that every code path (chat template, generation, training,
checkpoint loading) runs for real on CPU.
"""

from __future__ import annotations

from pathlib import Path

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: single tokens, but ordinary text when decoded (as for real models): never stripped by skip_special_tokens
TAGS = ["<answer>", "</answer>", "<think>", "</think>"]


def _corpus(extra: list[str] | None) -> list[str]:
    from flexrec_bench.ranking.prompts import DEFAULT_SYSTEM, answer_format

    base = [DEFAULT_SYSTEM, answer_format(30, True), "User history (oldest to newest): Candidates: Need: Search query:",
            "Title: Year: Genres: Caption: Category: Tags: Features: Brand: Color: rated watched its length",
            " ".join(f"C{i}" for i in range(1, 101)), "0 1 2 3 4 5 6 7 8 9 , . ; : ( ) [ ] / - x"]
    return base * 20 + list(extra or [])


def build_tokenizer(out_dir: str | Path, extra_texts: list[str] | None = None, vocab_size: int = 2000):
    """A byte-level BPE tokenizer trained on prompt vocabulary (+ ``extra_texts``), with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(extra_texts), trainer)
    tok.add_tokens(TAGS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, additional_special_tokens=SPECIAL[1:])
    fast.chat_template = CHATML
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(out_dir: str | Path, hidden_size: int = 64, layers: int = 2, seed: int = 0,
                     extra_texts: list[str] | None = None) -> Path:
    """Write a random-init 2-layer Qwen2 causal LM and its tokenizer to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out, extra_texts)
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(str(out))
    return out


def _permute(w, n_head: int):
    """llama.cpp's rotary layout of a q/k projection (transformers reverses it when it reads a GGUF)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: str | Path, hidden_size: int = 32, layers: int = 2, seed: int = 0, chat_template: bool = True):
    """Write a random-init 2-layer Llama as a float32 GGUF file (llama.cpp's layout, with the locally
    trained tokenizer and ChatML in its metadata): a real GGUF for the conversion tests, made here.
    Returns the Hugging Face model it was written from (to compare the conversion against)."""
    import json
    import tempfile

    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(tmp, vocab_size=600)
        spec = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    heads, kv_heads = 4, 2
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False,
                      eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"], bos_token_id=None)
    model = LlamaForCausalLM(cfg).eval()
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(512)
    w.add_embedding_length(hidden_size)
    w.add_block_count(layers)
    w.add_feed_forward_length(2 * hidden_size)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]) if getattr(cfg, "rope_parameters", None) else 10000.0)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_pad_token_id(vocab["<|endoftext|>"])
    if chat_template:
        w.add_chat_template(CHATML)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], kv_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model
