"""Parsing LLM output into candidate positions: ``<answer>`` blocks, JSON lists, or one id per
line, with or without a reasoning block."""

from __future__ import annotations

import json
import re

import numpy as np

from .ranking import ParseStats, complete_ranking

_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_ANSWER = re.compile(r"<answer>(.*?)(</answer>|$)", re.S | re.I)


def short_id(pos: int) -> str:
    """The short id a prompt shows for candidate position ``pos`` (0-based): C1, C2, ..."""
    return f"C{pos + 1}"


_ID = re.compile(r"\bC\s*0*(\d{1,4})\b", re.I)


def extract_ids(text: str) -> list[int]:
    """Candidate positions (0-based, unvalidated) in the order the text names them."""
    body = _THINK.sub(" ", text)
    blocks = _ANSWER.findall(body)
    if blocks:
        body = blocks[-1][0]
    stripped = body.strip()
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
            if isinstance(obj, dict):
                obj = next((v for v in obj.values() if isinstance(v, list)), [])
            if isinstance(obj, list):
                body = " ".join(str(x) for x in obj)
        except json.JSONDecodeError:
            pass
    return [int(m.group(1)) - 1 for m in _ID.finditer(body)]


def id_spans(text: str) -> list[tuple[int, int, int]]:
    """(position, start, end) of each candidate id the answer names, with character offsets into
    ``text`` itself (the last <answer> block when there is one, reasoning excluded)."""
    think_end = 0
    for m in _THINK.finditer(text):
        think_end = m.end()
    blocks = [m for m in _ANSWER.finditer(text) if m.start() >= think_end]
    if blocks:
        lo, hi = blocks[-1].span(1)
    else:
        lo, hi = think_end, len(text)
    return [(int(m.group(1)) - 1, lo + m.start(), lo + m.end()) for m in _ID.finditer(text[lo:hi])]


def parse_ranking(text: str, k: int, rng: np.random.Generator, stats: ParseStats) -> list[int]:
    """A full permutation of range(k) from LLM text; repairs are counted in ``stats``."""
    return complete_ranking(extract_ids(text), k, rng, stats)
