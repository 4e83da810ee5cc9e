"""``vllm:<name-or-path>``: the hf ranker's prompts through vLLM on GPUs (optional dependency).
Every prompt of a split goes to vLLM in one ``chat`` call, so its scheduler batches them
continuously. Engine arguments come through ``-o`` (tensor_parallel_size, gpu_memory_utilization,
max_model_len, dtype, enforce_eager)."""

from __future__ import annotations

from flexrec_bench.foundation.errors import require
from flexrec_bench.ranking.rankers.llm import LLMRanker


class VLLMRanker(LLMRanker):
    kind = "vllm"

    def __init__(self, arg=None, seed: int = 0, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, dtype: str = "auto", enforce_eager: bool = False, **options):
        super().__init__(arg, seed, **options)
        self.tp, self.mem = int(tensor_parallel_size), float(gpu_memory_utilization)
        self.engine = {"max_model_len": None if max_model_len is None else int(max_model_len), "dtype": dtype,
                       "enforce_eager": str(enforce_eager).lower() in ("1", "true", "yes")}
        self._llm = None
        # fail at construction, not half-way through a run
        self._vllm = require("vllm", "vllm", "the vllm: ranker (GPU machines only)")

    def _load(self):
        if self._llm is None:
            engine = {k: v for k, v in self.engine.items() if v is not None}
            self._llm = self._vllm.LLM(model=self.arg, seed=self.seed, tensor_parallel_size=self.tp,
                                       gpu_memory_utilization=self.mem, **engine)
        return self._llm

    def schedule(self, messages) -> list[list[int]]:
        """The whole split in one call: vLLM's continuous batching schedules it."""
        return [list(range(len(messages)))] if messages else []

    def count_tokens(self, text: str) -> int | None:
        return len(self._load().get_tokenizer().encode(text, add_special_tokens=False))

    def generate(self, batch, max_new_tokens: int) -> list[str]:
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, seed=self.seed)
        outs = self._load().chat(batch, params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]
