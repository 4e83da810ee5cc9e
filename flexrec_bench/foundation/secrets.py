"""The one redaction of secrets, applied by every writer (results, leaderboard, page, training
configs, logs, dry-run output) and to every error message the command line prints.

What counts as a secret:

- the value of a field whose name says so (``api_key``, ``hub_token``, ``password``, ``apiKey``,
  ``authorization``; not ``max_tokens`` or ``instance_key``);
- the user and password of a URL (``http://alice:pw@host``) and the values of its query parameters
  whose names say so (``?key=...``, ``&access_token=...``);
- any value registered with :func:`remember` (the process's own keys: ranker options, OPENAI_API_KEY,
  HF_TOKEN), wherever it appears in free text.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"
#: name parts (split at _ - . space and camelCase) that mark a field as a credential
SECRET_PARTS = frozenset({"apikey", "token", "secret", "password", "passwd", "pwd", "credential", "credentials",
                          "auth", "authorization", "bearer", "cookie", "signature", "sig"})
#: "key" is a secret only as a whole name or after one of these ("api_key", "access-key"; not "instance_key")
KEY_QUALIFIERS = frozenset({"api", "access", "secret", "private", "client", "auth", "subscription", "x", "openai", "hf"})
ENV_SECRETS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
_known: set[str] = set()
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _parts(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [p for p in re.split(r"[_\-.\s]+", spaced.lower()) if p]


def is_secret_name(name: str) -> bool:
    parts = _parts(name)
    if not parts:
        return False
    if any(p in SECRET_PARTS for p in parts):
        return True
    return any(p == "key" and (i == 0 and len(parts) == 1 or i > 0 and parts[i - 1] in KEY_QUALIFIERS)
               for i, p in enumerate(parts))


def remember(value) -> None:
    """A value to take out of every text written from now on (a key the process was given)."""
    if isinstance(value, str) and len(value) >= 6:
        _known.add(value)


def _remember_environment() -> None:
    for name in ENV_SECRETS:
        remember(os.environ.get(name))


def redact_url(url: str) -> str:
    """A URL without its user/password and without the values of secret-named query parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs], safe="<>")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Free text (a message, a log line) with URL credentials and every known secret taken out."""
    _remember_environment()
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(obj):
    """A copy of ``obj`` (dicts, lists, strings) with every secret taken out: the values of
    secret-named keys, URL credentials, known secret values."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and is_secret_name(k) and v not in (None, "") else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without user:password@, (user, password) or None): URLs with credentials work, as
    HTTP basic authentication, and the credentials travel in a header, not in the URL."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    creds = (unquote(parts.username), unquote(parts.password or ""))
    remember(creds[1])
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), creds
