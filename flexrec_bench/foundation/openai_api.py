"""The one HTTP client for OpenAI-compatible endpoints (chat completions for the ``openai:``
ranker, embeddings for ``--embedder openai:<model>``): JSON POST with a bearer key, retries with
backoff on 429 and 5xx honouring Retry-After, and one-line errors. Keys never appear in messages."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from flexrec_bench.foundation.errors import FlexRecError

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def resolve(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Explicit values, else OPENAI_BASE_URL / OPENAI_API_KEY, else the OpenAI endpoint."""
    url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    return url, api_key or os.environ.get("OPENAI_API_KEY")


class RateLimiter:
    """Thread-safe limits on requests and tokens per minute (0 = no limit). Requests are spaced
    evenly (60 / rpm s apart); tokens are counted in a sliding 60 s window and a request waits
    until its estimated tokens fit."""

    def __init__(self, requests_per_minute: float = 0.0, tokens_per_minute: float = 0.0):
        import threading
        from collections import deque

        self.interval = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self.tpm = float(tokens_per_minute)
        self._next = 0.0
        self._window: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 0) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._window and self._window[0][0] <= now - 60.0:
                    self._window.popleft()
                used = sum(t for _, t in self._window)
                wait_tokens = 0.0
                if self.tpm > 0 and self._window and used + tokens > self.tpm:
                    wait_tokens = self._window[0][0] + 60.0 - now
                wait_rate = self._next - now
                if wait_tokens <= 0 and wait_rate <= 0:
                    self._next = max(now, self._next) + self.interval
                    if self.tpm > 0:
                        self._window.append((now, tokens))
                    return
            time.sleep(max(wait_tokens, wait_rate, 0.001))


def post_json(url: str, payload: dict, api_key: str | None, *, timeout: float = 120.0, max_retries: int = 5,
              before_each=None, what: str = "openai") -> dict:
    """POST ``payload`` to ``url``; ``before_each()`` runs before every attempt (rate limiting)."""
    import base64

    from flexrec_bench.foundation.secrets import redact_url, remember, split_credentials

    url, creds = split_credentials(url)  # user:password@ in the URL: HTTP basic authentication
    shown = redact_url(url)
    if not api_key and creds is None:
        raise FlexRecError(f"{what}: no API key: pass --option api_key=... or set OPENAI_API_KEY")
    remember(api_key)
    auth = (f"Bearer {api_key}" if api_key else
            "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode())
    data = json.dumps(payload).encode()
    delay = 1.0
    for attempt in range(max_retries + 1):
        if before_each is not None:
            before_each()
        req = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json", "Authorization": auth})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            retryable = exc.code == 429 or exc.code >= 500
            if not retryable or attempt == max_retries:
                body = exc.read()[:200].decode(errors="replace").replace("\n", " ")
                raise FlexRecError(f"{what}: {shown} answered HTTP {exc.code}: {body}") from None
            retry_after = exc.headers.get("Retry-After")
            time.sleep(float(retry_after) if retry_after and retry_after.replace(".", "").isdigit() else delay)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == max_retries:
                raise FlexRecError(f"{what}: cannot reach {shown} ({exc})") from None
            time.sleep(delay)
        except json.JSONDecodeError:
            raise FlexRecError(f"{what}: {shown} answered with something that is not JSON") from None
        delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


def embed_texts(model: str, texts: list[str], *, base_url: str | None = None, api_key: str | None = None,
                batch_size: int = 256, progress: bool = False) -> "list[list[float]]":
    """Embeddings of ``texts`` from ``<base_url>/embeddings`` (any OpenAI-compatible server:
    OpenAI, Gemini's OpenAI-compatible endpoint, vLLM, TEI...), in input order."""
    from tqdm.auto import tqdm

    from flexrec_bench.foundation.secrets import redact_url

    url, key = resolve(base_url, api_key)
    shown = redact_url(url)
    out: list[list[float]] = []
    for i in tqdm(range(0, len(texts), batch_size), desc=f"embed (openai:{model})", disable=not progress, leave=False):
        batch = texts[i:i + batch_size]
        resp = post_json(f"{url}/embeddings", {"model": model, "input": batch}, key, what=f"embedder openai:{model}")
        try:
            rows = sorted(resp["data"], key=lambda d: d["index"])
            vecs = [r["embedding"] for r in rows]
        except (KeyError, TypeError):
            raise FlexRecError(f"embedder openai:{model}: unexpected response shape from {shown}/embeddings") from None
        if len(vecs) != len(batch):
            raise FlexRecError(f"embedder openai:{model}: {shown}/embeddings returned {len(vecs)} vectors for "
                               f"{len(batch)} texts")
        out.extend(vecs)
    return out
