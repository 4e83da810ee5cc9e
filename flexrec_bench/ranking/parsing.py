"""The one parser of LLM rankings: the evaluator's LLM rankers and the training environment both
read model output through :func:`parse_ranking`, so a ranking scores and earns item credit alike.

Rules: the reasoning (``<think>...</think>``) is stripped; if the rest holds an ``<answer>`` block,
the last one is read (an unclosed one to the end, marked truncated), else the whole rest. Ids are
the prompt's short ids ``C1..CK``, case-insensitive, leading zeros allowed, and matched whole
(``C11`` is never ``C1``), in any list form: ``C3 > C1``, ``Ranking: C2, C1``, numbered lines,
JSON lists. An unfinished ``<think>`` leaves nothing to read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flexrec_bench.ranking.permutations import ParseStats

_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)
_ANSWER = re.compile(r"<answer>(.*?)(</answer>|$)", re.S | re.I)
_ID = re.compile(r"\bC\s*0*(\d{1,4})\b", re.I)


def short_id(pos: int) -> str:
    """The short id a prompt shows for candidate position ``pos`` (0-based): C1, C2, ..."""
    return f"C{pos + 1}"


@dataclass
class ParsedRanking:
    """What a model's text ranks, and what had to be repaired."""

    order: list[str]                       #: valid candidate ids, first occurrences, in ranked order
    positions: list[int]                   #: the same as candidate positions (0-based)
    spans: list[tuple[int, int]]           #: character offsets in the text of each entry of ``order``
    invalid: list[str] = field(default_factory=list)   #: ids that name no candidate
    duplicates: int = 0                    #: repeated mentions of a valid id (later ones ignored)
    missing: list[str] = field(default_factory=list)   #: candidates the text never names
    truncated: bool = False                #: an unclosed <think> or <answer> block
    think: str = ""                        #: the reasoning text that was stripped
    rejected: list[tuple[int, int]] = field(default_factory=list)  #: character offsets of invalid and repeated mentions

    @property
    def complete(self) -> bool:
        """A clean permutation: every candidate once, nothing invalid, nothing cut off."""
        return not (self.missing or self.invalid or self.duplicates or self.truncated)


def _region(text: str) -> tuple[int, int, str, bool]:
    """(start, end) of the part of ``text`` that holds the ranking, the stripped reasoning, and
    whether a block was left open."""
    closes = list(_THINK_CLOSE.finditer(text))
    opens = list(_THINK_OPEN.finditer(text))
    think, start = "", 0
    if closes:
        start = closes[-1].end()
        first_open = opens[0].end() if opens and opens[0].start() < closes[-1].start() else 0
        think = text[first_open: closes[-1].start()]
    if opens and opens[-1].start() >= start:  # a <think> that never closes: nothing to read yet
        return len(text), len(text), text[opens[-1].end():], True
    blocks = [m for m in _ANSWER.finditer(text) if m.start() >= start]
    if blocks:
        m = blocks[-1]
        return m.start(1), m.end(1), think, not m.group(2)
    return start, len(text), think, False


def reasoning_text(text: str) -> str:
    """The reasoning (``<think>`` block) of an output, as parse_ranking strips it; "" when none."""
    return _region(text)[2].strip()


def parse_ranking(text: str, candidate_ids: Sequence[str]) -> ParsedRanking:
    """Parse ``text`` against the candidates' short ids (``[short_id(j) for j in range(K)]``)."""
    index = {c.upper(): j for j, c in enumerate(candidate_ids)}
    lo, hi, think, truncated = _region(text)
    order, positions, spans, invalid, rejected = [], [], [], [], []
    seen: set[int] = set()
    dup = 0
    for m in _ID.finditer(text, lo, hi):
        cid = f"C{int(m.group(1))}"
        j = index.get(cid)
        if j is None:
            invalid.append(cid)
            rejected.append((m.start(), m.end()))
        elif j in seen:
            dup += 1
            rejected.append((m.start(), m.end()))
        else:
            seen.add(j)
            order.append(candidate_ids[j])
            positions.append(j)
            spans.append((m.start(), m.end()))
    missing = [c for j, c in enumerate(candidate_ids) if j not in seen]
    return ParsedRanking(order, positions, spans, invalid, dup, missing, truncated, think, rejected)


def to_permutation(parsed: ParsedRanking, k: int, rng: np.random.Generator, stats: ParseStats | None = None) -> list[int]:
    """The parsed positions followed by the missing candidates in a seeded random order (paper
    appendix F), counting the repairs, and echoes of the presented order, in ``stats``."""
    named = set(parsed.positions)
    rest = [j for j in range(k) if j not in named]
    rng.shuffle(rest)
    perm = list(parsed.positions) + rest
    if stats is not None:
        written = list(parsed.positions)
        stats.instances += 1
        stats.invalid_ids += len(parsed.invalid)
        stats.duplicates += parsed.duplicates
        stats.missing_items += len(rest)
        stats.unparseable += not written
        stats.complete += parsed.complete
        stats.echoed += int(len(written) >= min(2, k) and written == list(range(len(written))))
        stats.first_shown_first += int(bool(perm) and perm[0] == 0)
    return perm


def rank_text(text: str, k: int, rng: np.random.Generator, stats: ParseStats | None = None) -> list[int]:
    """A full permutation of range(k) from a model's text (parse, then pad)."""
    return to_permutation(parse_ranking(text, [short_id(j) for j in range(k)]), k, rng, stats)
