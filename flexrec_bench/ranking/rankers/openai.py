"""``openai:<model>``: any OpenAI-compatible chat-completions endpoint. Requests go out with
bounded concurrency (``-o concurrency=16``), retries with backoff on 429/5xx honouring
Retry-After, optional request and token rate limits (none by default), and an on-disk response
cache keyed by endpoint, model, prompt and sampling parameters (never the key), so a rerun or a
resumed crash sends nothing it already has."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.foundation.io import write_text_atomic
from flexrec_bench.foundation.openai_api import RateLimiter, post_json, resolve
from flexrec_bench.foundation.paths import home
from flexrec_bench.ranking.rankers.llm import LLMRanker


class OpenAIRanker(LLMRanker):
    kind = "openai"

    def __init__(self, arg=None, seed: int = 0, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 16, requests_per_minute: float = 0.0, tokens_per_minute: float = 0.0,
                 max_retries: int = 5, timeout: float = 120.0, cache_dir: str | None = None, temperature: float = 0.0,
                 batch_size: int = 256, **options):
        from flexrec_bench.foundation.options import check_range

        super().__init__(arg, seed, batch_size=batch_size, **options)
        for name, value, lo, hi in (("concurrency", concurrency, 1, 1024), ("requests_per_minute", requests_per_minute, 0, None),
                                    ("tokens_per_minute", tokens_per_minute, 0, None), ("max_retries", max_retries, 0, 50),
                                    ("timeout", timeout, 0.001, 86_400), ("temperature", temperature, 0.0, 2.0)):
            check_range(name, value, "-o", lo, hi)
        self.base_url, self.api_key = resolve(base_url, api_key)
        self.concurrency = max(1, int(concurrency))
        self.rpm, self.tpm = float(requests_per_minute), float(tokens_per_minute)
        self.limiter = RateLimiter(self.rpm, self.tpm)
        self.max_retries, self.timeout, self.temperature = int(max_retries), float(timeout), float(temperature)
        self.cache_dir = Path(cache_dir) if cache_dir else home() / "cache" / "openai"
        self.requests = 0
        self.cache_hits = 0
        self._count_lock = threading.Lock()

    def _key(self, payload: dict) -> str:
        blob = json.dumps({"base_url": self.base_url, **payload}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _post(self, payload: dict) -> dict:
        # the token estimate for the limiter: about 4 characters per prompt token, plus the answer budget
        tokens = sum(len(m["content"]) for m in payload["messages"]) // 4 + int(payload["max_tokens"])

        def before_each():
            self.limiter.acquire(tokens)
            with self._count_lock:
                self.requests += 1

        return post_json(f"{self.base_url}/chat/completions", payload, self.api_key, timeout=self.timeout,
                         max_retries=self.max_retries, before_each=before_each)

    def complete(self, messages: list[dict[str, str]], max_new_tokens: int) -> str:
        payload = {"model": self.arg, "messages": messages, "temperature": self.temperature,
                   "max_tokens": max_new_tokens, "seed": self.seed}
        path = self.cache_dir / f"{self._key(payload)}.json"
        if path.exists():
            try:
                content = json.loads(path.read_text())["content"]
                with self._count_lock:
                    self.cache_hits += 1
                return content
            except (json.JSONDecodeError, KeyError):
                path.unlink(missing_ok=True)
        resp = self._post(payload)
        try:
            content = resp["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise FlexRecError(f"openai: unexpected response shape: {json.dumps(resp)[:200]}") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"content": content, "model": resp.get("model")}))
        return content

    def generate(self, batch, max_new_tokens: int) -> list[str]:
        """The batch's completions in order, ``concurrency`` requests in flight at most."""
        if self.concurrency == 1 or len(batch) == 1:
            return [self.complete(m, max_new_tokens) for m in batch]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
            return list(pool.map(lambda m: self.complete(m, max_new_tokens), batch))

    def info(self) -> dict:
        d = super().info()
        d["config"].update(base_url=self.base_url, temperature=self.temperature, concurrency=self.concurrency,
                           requests_per_minute=self.rpm, tokens_per_minute=self.tpm)
        return d
