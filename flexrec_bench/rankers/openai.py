"""``openai:<model>``: any OpenAI-compatible chat-completions endpoint, with retries, a request
rate limit and an on-disk response cache, so that a crashed run resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..errors import FlexRecError
from ..io import write_text_atomic
from ..openai_api import post_json, resolve
from ..paths import home
from .llm import LLMRanker


class OpenAIRanker(LLMRanker):
    kind = "openai"

    def __init__(self, arg=None, seed: int = 0, base_url: str | None = None, api_key: str | None = None,
                 requests_per_minute: float = 60.0, max_retries: int = 5, timeout: float = 120.0,
                 cache_dir: str | None = None, temperature: float = 0.0, **options):
        super().__init__(arg, seed, **options)
        self.base_url, self.api_key = resolve(base_url, api_key)
        self.min_interval = 60.0 / float(requests_per_minute) if float(requests_per_minute) > 0 else 0.0
        self.max_retries, self.timeout, self.temperature = int(max_retries), float(timeout), float(temperature)
        self.cache_dir = Path(cache_dir) if cache_dir else home() / "cache" / "openai"
        self._last = 0.0
        self.requests = 0
        self.cache_hits = 0

    def _key(self, payload: dict) -> str:
        blob = json.dumps({"base_url": self.base_url, **payload}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _wait(self) -> None:
        wait = self._last + self.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last = time.monotonic()
        self.requests += 1

    def _post(self, payload: dict) -> dict:
        return post_json(f"{self.base_url}/chat/completions", payload, self.api_key, timeout=self.timeout,
                         max_retries=self.max_retries, before_each=self._wait)

    def complete(self, messages: list[dict[str, str]], max_new_tokens: int) -> str:
        payload = {"model": self.arg, "messages": messages, "temperature": self.temperature,
                   "max_tokens": max_new_tokens, "seed": self.seed}
        path = self.cache_dir / f"{self._key(payload)}.json"
        if path.exists():
            try:
                self.cache_hits += 1
                return json.loads(path.read_text())["content"]
            except (json.JSONDecodeError, KeyError):
                path.unlink()
        resp = self._post(payload)
        try:
            content = resp["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise FlexRecError(f"openai: unexpected response shape: {json.dumps(resp)[:200]}") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"content": content, "model": resp.get("model")}))
        return content

    def generate(self, batch, max_new_tokens: int) -> list[str]:
        return [self.complete(m, max_new_tokens) for m in batch]

    def info(self) -> dict:
        d = super().info()
        d["config"].update(base_url=self.base_url, temperature=self.temperature)
        return d
