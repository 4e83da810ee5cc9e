"""The shared loop of every LLM ranker: prompt -> generate -> parse -> permutation."""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

from flexrec_bench.ranking.parsing import rank_text, short_id
from flexrec_bench.ranking.prompts import PromptConfig, answer_tokens, split_messages
from flexrec_bench.ranking.permutations import ParseStats, RankResult
from flexrec_bench.ranking.rankers.base import Ranker


#: how an LLM ranker turns the model into a ranking: write the ids, or read the first answer token's logits
SCORINGS = ("generate", "first_token")


class LLMRanker(Ranker):
    needs_arg = True
    shows_progress = True

    produces_text = True
    reads = ("history", "shown", "text")
    #: whether the ranker reads the model's logits (what constrained decoding and first-token scoring need)
    has_logits = False

    def __init__(self, arg=None, seed: int = 0, batch_size: int = 8, max_new_tokens: int | None = None,
                 max_prompt_tokens: int = 3072, max_item_chars: int = 240, reasoning: bool = False,
                 progress: bool = True, constrained: bool = False, scoring: str = "generate",
                 window: int | None = None, stride: int | None = None):
        from flexrec_bench.foundation.errors import ConfigError
        from flexrec_bench.foundation.options import check_range

        super().__init__(arg, seed)
        if constrained and not self.has_logits:
            raise ConfigError(f"-o constrained=true needs a ranker that reads the model's logits (hf); {self.kind} "
                              f"does not: leave it out (nothing was sent)")
        if constrained and reasoning:
            raise ConfigError("-o constrained=true writes the answer directly: it cannot be combined with reasoning=true")
        if scoring not in SCORINGS:
            raise ConfigError(f"-o scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
        if scoring == "first_token" and not self.has_logits:
            raise ConfigError(f"-o scoring=first_token reads the model's logits: {self.kind} exposes none (allowed "
                              f"here: generate); use an hf: model (nothing was sent)")
        if scoring == "first_token" and (constrained or reasoning):
            raise ConfigError("-o scoring=first_token reads one token's logits: it takes neither constrained=true nor "
                              "reasoning=true")
        self.constrained = bool(constrained)
        self.scoring = scoring
        if stride is not None and window is None:
            raise ConfigError("-o stride needs -o window (the number of candidates one prompt ranks)")
        if window is not None:
            check_range("window", int(window), "-o", 2, 100_000)
            stride = int(window) // 2 if stride is None else int(stride)
            if not 1 <= stride < int(window):
                raise ConfigError(f"-o stride must be from 1 to window - 1 = {int(window) - 1}, got {stride}")
        self.window = None if window is None else int(window)
        self.stride = None if window is None else stride
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
        #: the candidate counts of the batch being generated (a ranker may stop a sequence once it named them all)
        self.batch_sizes_k: list[int] | None = None
        #: a side file of finished outputs, so a killed run resumes (set by the evaluator; never published)
        self.resume_path = None

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
        d["config"].update(batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, prompt=asdict(self.prompt),
                           constrained=self.constrained, scoring=self.scoring, window=self.window, stride=self.stride)
        return d

    def schedule(self, messages: list[list[dict[str, str]]]) -> list[list[int]]:
        """Which instances go to ``generate`` together: consecutive batches of ``batch_size``.
        Subclasses reorder (the hf ranker sorts by length; vLLM takes the whole split at once)."""
        n = len(messages)
        return [list(range(s, min(n, s + self.batch_size))) for s in range(0, n, self.batch_size)]

    def rank(self, split) -> RankResult:
        """One prompt per instance, or sliding windows (``window``/``stride``) over its candidates."""
        if self.window is None:
            return self.rank_once(split)
        from flexrec_bench.foundation.errors import ConfigError

        if self.window > split.k:
            raise ConfigError(f"-o window={self.window} is larger than the {split.k} candidates of "
                              f"{split.dataset}/{split.need}/{split.split}: use a window from 2 to {split.k}")
        return self._rank_windows(split)

    def _rank_windows(self, split) -> RankResult:
        """rank_llm's sliding windows: back to front, each window's prompt (need line, user context, its
        own candidates) reorders only its slice of the current list; consecutive windows overlap by
        ``window - stride``, so good candidates bubble to the front. Windows of different instances
        run in rounds, each round batched and resumable like a single-prompt ranking."""
        from flexrec_bench.ranking.windows import window_starts, window_split

        n, k = split.mask.shape
        nvalid = split.mask.sum(1)
        current = [list(range(int(v))) for v in nvalid]   # build positions, best first
        starts = [window_starts(int(v), self.window, self.stride) for v in nvalid]
        stats, outputs = ParseStats(), [[] for _ in range(n)]
        self.usage = _new_usage()
        for r in range(max(len(s) for s in starts)):
            rows = [i for i in range(n) if r < len(starts[i])]
            slices = {i: current[i][starts[i][r]: starts[i][r] + self.window] for i in rows}
            sub = window_split(split, rows, slices, r)
            res = self.rank_once(sub, _keep_usage=True)
            stats.add(res.parse)
            for j, i in enumerate(rows):
                sl = slices[i]
                new = [sl[p] for p in res.order[j] if p >= 0]
                a = starts[i][r]
                current[i][a: a + len(sl)] = new
                outputs[i].append(res.outputs[j] if res.outputs else "")
        order = np.full((n, k), -1, np.int64)
        for i, cur in enumerate(current):
            order[i, : len(cur)] = cur
        # the published output leads with the final ranking in the instance's own ids (what a results
        # reader parses); each window's raw answer follows, for inspection
        texts = ["<answer>" + ", ".join(short_id(int(j)) for j in order[i] if j >= 0) + "</answer>\n"
                 + "\n".join(f"[window {r + 1}] {o}" for r, o in enumerate(outputs[i])) for i in range(n)]
        return RankResult(order, texts, stats, usage=dict(self.usage))

    def rank_once(self, split, _keep_usage: bool = False) -> RankResult:
        """Each instance's candidates in one prompt."""
        if not _keep_usage:
            self.usage = _new_usage()
        n, k = split.mask.shape
        counter = self.count_tokens if self.count_tokens("x") is not None else None
        order = np.full((n, k), -1, np.int64)
        outputs: list[str] = [""] * n
        stats = ParseStats()
        nvalid = split.mask.sum(1)
        msgs = [split_messages(split, i, self.prompt, counter) for i in range(n)]
        ids = split.instance_ids
        side = self.side_file(split)
        done = side.load() if side else {}
        bar = tqdm(total=n, desc=f"rank ({self.name})", disable=not self.progress)
        bar.update(sum(1 for i in ids if i in done))
        todo = [i for i in range(n) if ids[i] not in done]
        for idx in self.schedule([msgs[i] for i in todo]):
            idx = [todo[j] for j in idx]
            self.batch_sizes_k = [int(nvalid[i]) for i in idx]
            texts = self.generate([msgs[i] for i in idx], self.new_tokens(int(nvalid[idx].max())))
            self._count_usage([msgs[i] for i in idx], texts, counter)
            if side:
                side.append({ids[i]: t for i, t in zip(idx, texts)})
            done.update({ids[i]: t for i, t in zip(idx, texts)})
            bar.update(len(idx))
        self.batch_sizes_k = None
        bar.close()
        for i in range(n):
            rng = np.random.default_rng([self.seed, 13, i])  # keyed by instance: any schedule, same padding
            perm = rank_text(done[ids[i]], int(nvalid[i]), rng, stats)
            order[i, : len(perm)] = perm
            outputs[i] = done[ids[i]]
        return RankResult(order, outputs, stats, usage=dict(self.usage))

    def side_file(self, split) -> _SideFile | None:
        """Where this run keeps its finished batches (``resume_path``, set by the evaluator), with the
        header that names the run; None when it keeps none."""
        if not self.resume_path:
            return None
        return _SideFile(self.resume_path, {"model": self.name, "config": self.info()["config"],
                                            "fingerprint": split.fingerprint, "need": split.need, "split": split.split})

    def _count_usage(self, batch, texts, counter) -> None:
        """Calls, prompts and (where the ranker has a tokenizer) tokens in and out."""
        self.usage["calls"] += 1
        self.usage["prompts"] += len(batch)
        if counter is not None:
            self.usage["prompt_tokens"] += sum(counter("".join(m["content"] for m in msgs)) for msgs in batch)
            self.usage["completion_tokens"] += sum(counter(t) for t in texts)


def _new_usage() -> dict:
    return {"calls": 0, "prompts": 0, "prompt_tokens": 0, "completion_tokens": 0}


class _SideFile:
    """Finished outputs of an unfinished run, one JSON line per batch after a header naming the run
    (model, resolved options, build, need, split). A header that names another run means the file is
    stale: it is started anew. Only whole lines count (a kill mid-write loses at most that batch)."""

    def __init__(self, path, header: dict):
        from pathlib import Path

        from flexrec_bench.foundation.secrets import redact

        # the header names the run, never its secrets (an api key, a password in a base URL)
        self.path, self.header = Path(path), json.loads(json.dumps(redact(header), sort_keys=True, default=str))

    def load(self) -> dict[str, str]:
        done: dict[str, str] = {}
        if self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").split("\n")
            try:
                same = json.loads(lines[0]) == self.header
            except json.JSONDecodeError:
                same = False
            if same:
                good = []
                for line in lines[1:]:
                    if not line:
                        continue
                    try:
                        done.update(json.loads(line))
                    except json.JSONDecodeError:
                        # a line cut by a kill: keep what came before it, so later appends stay readable
                        from flexrec_bench.foundation.io import write_text_atomic

                        write_text_atomic(self.path, "\n".join([lines[0], *good]) + "\n")
                        break
                    good.append(line)
                return done
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.header, sort_keys=True) + "\n", encoding="utf-8")
        return done

    def append(self, outputs: dict[str, str]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(outputs) + "\n")
            f.flush()
