"""``vllm:<name-or-path>``: the hf ranker's prompts through vLLM on GPUs (optional dependency)."""

from __future__ import annotations

from ..errors import require
from .llm import LLMRanker


class VLLMRanker(LLMRanker):
    kind = "vllm"

    def __init__(self, arg=None, seed: int = 0, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 **options):
        super().__init__(arg, seed, **options)
        self.tp, self.mem = int(tensor_parallel_size), float(gpu_memory_utilization)
        self._llm = None
        # fail at construction, not half-way through a run
        self._vllm = require("vllm", "vllm", "the vllm: ranker (GPU machines only)")

    def _load(self):
        if self._llm is None:
            self._llm = self._vllm.LLM(model=self.arg, seed=self.seed, tensor_parallel_size=self.tp,
                                       gpu_memory_utilization=self.mem)
        return self._llm

    def count_tokens(self, text: str) -> int | None:
        return len(self._load().get_tokenizer().encode(text, add_special_tokens=False))

    def generate(self, batch, max_new_tokens: int) -> list[str]:
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, seed=self.seed)
        outs = self._load().chat(batch, params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]
