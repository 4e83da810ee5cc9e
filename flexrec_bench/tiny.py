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
    from .prompts import DEFAULT_SYSTEM, answer_format

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
