"""``openai:<model>``: any OpenAI-compatible chat-completions endpoint, with retries, a request
rate limit and an on-disk response cache, so that a crashed run resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import FlexRecError
from ..io import write_text_atomic
from ..paths import home
from .llm import LLMRanker


class OpenAIRanker(LLMRanker):
    kind = "openai"

    def __init__(self, arg=None, seed: int = 0, base_url: str | None = None, api_key: str | None = None,
                 requests_per_minute: float = 60.0, max_retries: int = 5, timeout: float = 120.0,
                 cache_dir: str | None = None, temperature: float = 0.0, **options):
        super().__init__(arg, seed, **options)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.min_interval = 60.0 / float(requests_per_minute) if float(requests_per_minute) > 0 else 0.0
        self.max_retries, self.timeout, self.temperature = int(max_retries), float(timeout), float(temperature)
        self.cache_dir = Path(cache_dir) if cache_dir else home() / "cache" / "openai"
        self._last = 0.0
        self.requests = 0
        self.cache_hits = 0

    def _key(self, payload: dict) -> str:
        blob = json.dumps({"base_url": self.base_url, **payload}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _post(self, payload: dict) -> dict:
        if not self.api_key:
            raise FlexRecError("openai: no API key: pass --option api_key=... or set OPENAI_API_KEY")
        data = json.dumps(payload).encode()
        delay = 1.0
        for attempt in range(self.max_retries + 1):
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            req = urllib.request.Request(f"{self.base_url}/chat/completions", data=data, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
            try:
                self.requests += 1
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                if not retryable or attempt == self.max_retries:
                    body = exc.read()[:200].decode(errors="replace")
                    raise FlexRecError(f"openai: {self.base_url} answered HTTP {exc.code}: {body}") from None
                retry_after = exc.headers.get("Retry-After")
                time.sleep(float(retry_after) if retry_after and retry_after.replace(".", "").isdigit() else delay)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.max_retries:
                    raise FlexRecError(f"openai: cannot reach {self.base_url} ({exc})") from None
                time.sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

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
