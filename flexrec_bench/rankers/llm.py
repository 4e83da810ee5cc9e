"""The shared loop of every LLM ranker: prompt -> generate -> parse -> permutation."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

from ..parsing import rank_text
from ..prompts import PromptConfig, answer_tokens, split_messages
from ..permutations import ParseStats, RankResult
from .base import Ranker


class LLMRanker(Ranker):
    needs_arg = True
    shows_progress = True

    produces_text = True
    reads = ("history", "shown", "text")

    def __init__(self, arg=None, seed: int = 0, batch_size: int = 8, max_new_tokens: int | None = None,
                 max_prompt_tokens: int = 3072, max_item_chars: int = 240, reasoning: bool = False,
                 progress: bool = True):
        from ..options import check_range

        super().__init__(arg, seed)
        check_range("batch_size", int(batch_size), "-o", 1, 4096)
        if max_new_tokens is not None:
            check_range("max_new_tokens", int(max_new_tokens), "-o", 1, 65_536)
        check_range("max_prompt_tokens", int(max_prompt_tokens), "-o", 64, 1_048_576)
        check_range("max_item_chars", int(max_item_chars), "-o", 10, 100_000)
        self.batch_size = int(batch_size)
        self.max_new_tokens = None if max_new_tokens is None else int(max_new_tokens)
        self.prompt = PromptConfig(max_prompt_tokens=int(max_prompt_tokens), max_item_chars=int(max_item_chars),
                                   reasoning=bool(reasoning))
        self.progress = progress

    def new_tokens(self, k: int) -> int:
        """Default answer budget: prompts.answer_tokens (about 5 tokens per id, plus 256 for reasoning)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return answer_tokens(k, self.prompt.reasoning)

    def count_tokens(self, text: str) -> int | None:
        return None

    @abstractmethod
    def generate(self, batch: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]: ...

    def info(self) -> dict:
        d = super().info()
        d["config"].update(batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, prompt=asdict(self.prompt))
        return d

    def schedule(self, messages: list[list[dict[str, str]]]) -> list[list[int]]:
        """Which instances go to ``generate`` together: consecutive batches of ``batch_size``.
        Subclasses reorder (the hf ranker sorts by length; vLLM takes the whole split at once)."""
        n = len(messages)
        return [list(range(s, min(n, s + self.batch_size))) for s in range(0, n, self.batch_size)]

    def rank(self, split) -> RankResult:
        n, k = split.mask.shape
        counter = self.count_tokens if self.count_tokens("x") is not None else None
        order = np.full((n, k), -1, np.int64)
        outputs: list[str] = [""] * n
        stats = ParseStats()
        nvalid = split.mask.sum(1)
        msgs = [split_messages(split, i, self.prompt, counter) for i in range(n)]
        bar = tqdm(total=n, desc=f"rank ({self.name})", disable=not self.progress)
        for idx in self.schedule(msgs):
            texts = self.generate([msgs[i] for i in idx], self.new_tokens(int(nvalid[idx].max())))
            for i, text in zip(idx, texts):
                rng = np.random.default_rng([self.seed, 13, i])  # keyed by instance: any schedule, same padding
                perm = rank_text(text, int(nvalid[i]), rng, stats)
                order[i, : len(perm)] = perm
                outputs[i] = text
            bar.update(len(idx))
        bar.close()
        return RankResult(order, outputs, stats)
