"""``hf:<name-or-path>``: any Hugging Face causal LM through transformers, greedy by default.
A directory with ``adapter_config.json`` (a LoRA checkpoint) is loaded through peft. Prompts are
batched longest first (similar lengths share a batch, so little padding); ``dtype=auto`` is
bfloat16 on a CUDA device that supports it and float32 elsewhere.

Options (``-o key=value``; docs/usage.md): ``batch_size`` (8), ``max_new_tokens`` (5 per candidate +
32), ``max_prompt_tokens`` (3072), ``max_item_chars`` (240), ``reasoning`` (false), ``dtype`` (auto),
``device`` (auto), ``revision``, ``trust_remote_code`` (false), ``sample`` (false), ``temperature``
(1.0), ``threads`` (torch's intra-op threads on CPU; default: torch's own), ``stop_at_k`` (true: a
sequence stops once it has named all K candidates or closed its answer; a model that never writes
its end-of-turn token would otherwise run to the token cap), ``constrained`` (false: ours, every
answer a permutation by construction, flexrec_bench.ranking.constrained)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flexrec_bench.foundation.errors import FlexRecError, require
from flexrec_bench.ranking.rankers.llm import LLMRanker


def local_fingerprint(path: Path) -> str:
    """Content fingerprint of a local checkpoint: config and weight files (sizes, head and tail)."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin", ".model", ".txt") and f.is_file():
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if f.stat().st_size > 2 << 20:
                    fh.seek(-(1 << 20), 2)
                    h.update(fh.read())
    return "local-" + h.hexdigest()[:16]


def resolve_dtype(dtype: str, device: str):
    """``auto``: bfloat16 on a CUDA device that supports it, float32 elsewhere; otherwise the
    named torch dtype (``bfloat16``, ``float16``, ``float32``)."""
    import torch

    if dtype == "auto":
        from flexrec_bench.foundation.device import bf16_ok

        return torch.bfloat16 if bf16_ok(device) else torch.float32
    try:
        return getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype))
    except AttributeError:
        raise FlexRecError(f"hf ranker: unknown dtype {dtype!r}: auto, bfloat16, float16 or float32") from None


class HFRanker(LLMRanker):
    kind = "hf"
    has_logits = True

    def __init__(self, arg=None, seed: int = 0, device: str | None = None, dtype: str = "auto",
                 revision: str | None = None, trust_remote_code: bool = False, sample: bool = False,
                 temperature: float = 1.0, threads: int | None = None, stop_at_k: bool = True, **options):
        super().__init__(arg, seed, **options)
        self.device, self.dtype, self.revision = device, dtype, revision
        from flexrec_bench.foundation.options import check_range

        check_range("temperature", float(temperature), "-o", 0.0, 10.0)
        if threads is not None:
            check_range("threads", int(threads), "-o", 1, 1024)
        self.threads = None if threads is None else int(threads)
        self.stop_at_k = bool(stop_at_k)
        self.trust_remote_code = bool(trust_remote_code)
        self.sample, self.temperature = bool(sample), float(temperature)
        self._model = self._tok = None

    @classmethod
    def from_loaded(cls, model, tokenizer, name: str = "in-memory", **options) -> HFRanker:
        """Rank with a model already in memory (validation during training)."""
        r = cls(name, **options)
        r._model, r._tok = model, tokenizer
        r._device = next(model.parameters()).device
        return r

    def _load(self):
        if self._model is not None:
            self._tok.padding_side = "left"
            return
        require("torch", "core", "the hf: ranker")
        transformers = require("transformers", "core", "the hf: ranker")
        path = Path(self.arg)
        from flexrec_bench.foundation.device import resolve_device

        if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            hint = (f"it holds a GGUF file: convert it once with `flexrec-bench models install {ggufs[0]}`" if ggufs
                    else "expected a folder that save_pretrained wrote (config.json, weights, tokenizer)")
            raise FlexRecError(f"hf:{self.arg}: not a Hugging Face model folder (no config.json); {hint}")
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        kw = dict(revision=self.revision, trust_remote_code=self.trust_remote_code)
        from flexrec_bench.ranking.models import hub_access

        try:
            with hub_access(self.arg, "model hf:") as hub_kw:  # the hub down: fail (or use the cache) at once
                kw.update(hub_kw)
                if (path / "adapter_config.json").exists():
                    peft = require("peft", "train", "loading a LoRA checkpoint")
                    self._model = peft.AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kw)
                else:
                    self._model = transformers.AutoModelForCausalLM.from_pretrained(self.arg, dtype=dtype, **kw)
                self._tok = transformers.AutoTokenizer.from_pretrained(self.arg, **kw)
        except (OSError, ValueError, KeyError) as exc:
            raise FlexRecError(f"cannot load hf model {self.arg!r}: {exc}".splitlines()[0]) from None
        self._model.to(device).eval()
        self._tok.padding_side = "left"
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        self._device = device

    def count_tokens(self, text: str) -> int | None:
        self._load()
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def schedule(self, messages) -> list[list[int]]:
        """Longest prompts first, in batches of ``batch_size``: a batch pads to its longest prompt,
        so neighbours in length waste little compute."""
        lengths = [sum(len(m["content"]) for m in msg) for msg in messages]
        order = sorted(range(len(messages)), key=lambda i: (-lengths[i], i))
        return [order[s: s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def _prompt_text(self, messages) -> str:
        if getattr(self._tok, "chat_template", None):
            return self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"

    def generate(self, batch, max_new_tokens: int) -> list[str]:
        import torch

        self._load()
        texts = [self._prompt_text(m) for m in batch]
        enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        gen_kw = dict(max_new_tokens=max_new_tokens, pad_token_id=self._tok.pad_token_id)
        if self.sample:
            torch.manual_seed(self.seed)
            gen_kw.update(do_sample=True, temperature=self.temperature)
        else:
            gen_kw.update(do_sample=False)
        ks = self.batch_sizes_k or [None] * len(batch)
        if self.constrained:
            from transformers import LogitsProcessorList

            from flexrec_bench.ranking.constrained import ConstrainedLogits

            if any(k is None for k in ks):
                raise FlexRecError("constrained decoding needs each prompt's candidate count")
            gen_kw["logits_processor"] = LogitsProcessorList([ConstrainedLogits(
                [self._grammar(k) for k in ks], enc["input_ids"].shape[1])])
        elif self.stop_at_k and all(k is not None for k in ks):
            from transformers import StoppingCriteriaList

            gen_kw["stopping_criteria"] = StoppingCriteriaList([AnswerComplete(self._tok, ks, enc["input_ids"].shape[1])])
        with torch.no_grad():
            out = self._model.generate(**enc, **gen_kw)
        return self._tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def _grammar(self, k: int):
        from flexrec_bench.ranking.constrained import AnswerGrammar

        cache = self.__dict__.setdefault("_grammars", {})
        if k not in cache:
            cache[k] = AnswerGrammar.build(self._tok, k)
        return cache[k]

    def rank_once(self, split, _keep_usage: bool = False):
        if self.scoring == "first_token":
            return self._rank_first_token(split, _keep_usage)
        return super().rank_once(split, _keep_usage)

    def _rank_first_token(self, split, keep_usage: bool = False):
        """One forward pass per instance (batched): the first answer token's logits at each
        candidate's single-token label score it (flexrec_bench.ranking.first_token)."""
        import numpy as np
        import torch
        from tqdm.auto import tqdm

        from flexrec_bench.ranking.first_token import ANSWER_OPEN, id_scheme
        from flexrec_bench.ranking.parsing import short_id
        from flexrec_bench.ranking.permutations import ParseStats, RankResult, scores_to_order
        from flexrec_bench.ranking.prompts import split_messages
        from flexrec_bench.ranking.rankers.llm import _new_usage

        self._load()
        if not keep_usage:
            self.usage = _new_usage()
        n, k = split.mask.shape
        nvalid = split.mask.sum(1)
        scheme, labels, tokens = id_scheme(self._tok, k)
        self.id_scheme = scheme
        count = lambda text: len(self._tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        msgs = [split_messages(split, i, self.prompt, count, labels[: int(nvalid[i])]) for i in range(n)]
        scores = np.zeros((n, k))
        ids = split.instance_ids
        side = self.side_file(split)
        done = side.load() if side else {}  # a killed run's finished batches: each instance's label logits
        for i in range(n):
            if ids[i] in done:
                scores[i] = done[ids[i]]
        todo = [i for i in range(n) if ids[i] not in done]
        bar = tqdm(total=n, initial=n - len(todo), desc=f"rank ({self.name}, first token)", disable=not self.progress)
        for sub in self.schedule([msgs[i] for i in todo]):
            idx = [todo[j] for j in sub]
            texts = [self._prompt_text(msgs[i]) + ANSWER_OPEN for i in idx]
            enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
            with torch.no_grad():
                logits = self._model(**enc, logits_to_keep=1).logits[:, -1, :].float()  # the last position only
            scores[idx] = logits[:, tokens].cpu().numpy()
            if side:
                side.append({ids[i]: scores[i].tolist() for i in idx})
            self.usage["calls"] += 1
            self.usage["prompts"] += len(idx)
            self.usage["prompt_tokens"] += int(enc["attention_mask"].sum())
            bar.update(len(idx))
        bar.close()
        order = scores_to_order(scores, split.mask, self.seed)
        stats = ParseStats(instances=n, complete=n)
        for i in range(n):
            row = order[i][order[i] >= 0]
            stats.echoed += int(len(row) >= 2 and list(row) == sorted(row))
            stats.first_shown_first += int(bool(len(row)) and row[0] == 0)
        # the outputs record the induced ranking in the usual ids, so every results reader parses them
        outputs = ["<answer>" + ", ".join(short_id(int(j)) for j in order[i] if j >= 0) + "</answer>" for i in range(n)]
        return RankResult(order, outputs, stats, usage=dict(self.usage))

    def info(self) -> dict:
        from flexrec_bench.ranking.models import read_record

        d = super().info()
        path = Path(self.arg)
        d["revision"] = self.revision or (local_fingerprint(path) if path.is_dir() else None)
        d["config"].update(dtype=self.dtype, sample=self.sample, temperature=self.temperature,
                           stop_at_k=self.stop_at_k)
        if self.scoring == "first_token":
            d["config"]["id_scheme"] = getattr(self, "id_scheme", None)
        rec = read_record(path) if path.is_dir() else None
        if rec is not None:  # installed by `flexrec-bench models install`: where the weights come from
            d["config"]["model_card"] = {k: rec.get(k) for k in ("name", "origin", "license", "quantization",
                                                                 "parameters", "chat_template_sha256")}
            d["config"]["model_card"]["source_sha256"] = rec["source"].get("sha256")
        d["config"]["training"] = "post-trained (LoRA)" if (path / "adapter_config.json").is_file() else "zero-shot"
        return d


class AnswerComplete:
    """A stopping criterion per sequence: stop once the new text names K distinct candidate ids
    (C1..CK) or closes ``</answer>``. Checked every ``every`` tokens (decoding is cheap next to a
    forward pass, but not free)."""

    def __init__(self, tokenizer, ks: list[int], prompt_len: int, every: int = 4):
        self.tok, self.ks, self.start, self.every = tokenizer, ks, prompt_len, every
        self.done = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        from flexrec_bench.ranking.parsing import _ID

        n = input_ids.shape[1] - self.start
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if n % self.every == 0:
            texts = self.tok.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
            for b, (text, k) in enumerate(zip(texts, self.ks)):
                if self.done[b]:
                    continue
                ids = {int(m.group(1)) for m in _ID.finditer(text)}
                self.done[b] = "</answer>" in text.lower() or len({i for i in ids if 1 <= i <= k}) >= k
        return self.done.clone()
