"""One prompt builder for every LLM ranker, trainer and SFT baseline.

Truncation rule (docs/prompts.md): item texts are cut to ``max_item_chars``; if the prompt is
still over ``max_prompt_tokens``, the oldest history items are dropped one by one; if it is
still over, candidate texts are shortened (halving their character budget, down to 40).
Candidates are never dropped: the answer must be able to name all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flexrec_bench.ranking.parsing import short_id

DEFAULT_SYSTEM = ("You are a recommender system. You rank a fixed set of candidate items for a user according "
                  "to an explicit need. You only use the candidate ids you are given.")


@dataclass
class PromptConfig:
    """How prompts are written and kept within a token budget."""

    max_prompt_tokens: int = 3072   #: budget for the whole chat prompt (system + user)
    max_item_chars: int = 240       #: first cut of every item text
    system: str = DEFAULT_SYSTEM    #: system message
    reasoning: bool = False         #: ask for a short <think> block before the answer


def _signal_text(kind: str, value: float) -> str:
    if kind == "rating":
        return f"rated {value:g}/5"
    if kind == "watch_ratio":
        return f"watched {value:.2f}x its length"
    return ""


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(0, n - 1)].rstrip() + "…"


def answer_tokens(k: int, reasoning: bool) -> int:
    """Completion budget for an answer of k ids: about 5 tokens per id plus the tags, and 256 more
    for a reasoning block (ours). Used by the LLM rankers and by training."""
    return 5 * k + 32 + (REASONING_TOKENS if reasoning else 0)


REASONING_TOKENS = 256


def answer_format(k: int, reasoning: bool, ids: list[str] | None = None) -> str:
    ex = ", ".join((ids[i] if ids else short_id(i)) for i in range(min(k, 3)))
    think = "First think briefly inside <think></think>. Then " if reasoning else ""
    return (f"{think}Output all {k} candidate ids, best first, separated by commas, inside <answer></answer>, "
            f"for example <answer>{ex}, ...</answer>. Use every id exactly once.")


def _item_lines(marker: str, text: str, suffix: str = "") -> list[str]:
    """An item's (multi-line, Appendix E) text under a list marker, continuation lines indented to
    the text's column, with ``suffix`` (signal, shown column values) after the last line."""
    lines = text.split("\n") or [""]
    pad = " " * (len(marker) + 1)
    out = [f"{marker} {lines[0]}"] + [pad + ln for ln in lines[1:]]
    if suffix:
        out[-1] += f" ({suffix})"
    return out


def user_message(instruction: str, history: list[tuple[str, str]], query: str, candidates: list[str],
                 reasoning: bool, notes: list[str] | None = None, context: list[str] | None = None,
                 ids: list[str] | None = None) -> str:
    parts = [f"Need: {instruction}", ""]
    if query:
        parts += [f"Search query: {query}", ""]
    if history:
        parts.append("User history (oldest to newest):")
        for text, sig in history:
            parts += _item_lines("-", text, sig)
        parts.append("")
    if context:
        parts += list(context) + [""]
    parts.append("Candidates:")
    for i, text in enumerate(candidates):
        parts += _item_lines(f"[{ids[i] if ids else short_id(i)}]", text, notes[i] if notes else "")
    parts += ["", answer_format(len(candidates), reasoning, ids)]
    return "\n".join(parts)


def build_messages(instruction: str, history_texts: list[str], history_signals: list[float], signal_kind: str,
                   query: str, candidate_texts: list[str], cfg: PromptConfig,
                   count_tokens: Callable[[str], int] | None = None, candidate_notes: list[str] | None = None,
                   history_topics: tuple[str, list[str]] | None = None,
                   ids: list[str] | None = None) -> list[dict[str, str]]:
    """The chat messages of one instance. ``candidate_notes``: per candidate, what the need's label
    uses that the text does not show (e.g. a recent interaction count), written after its text.
    ``history_topics``: (name, topics) of the whole shown history (e.g. ("Genres", [...])): listed on
    a line of their own whenever the rendered history does not already name every one of them.
    ``ids``: the candidates' labels when not the default C1, C2, ... (first-token scoring's
    single-token labels)."""
    count = count_tokens or (lambda s: len(s) // 4 + 1)
    hist = [(_cut(t, cfg.max_item_chars), _signal_text(signal_kind, s)) for t, s in zip(history_texts, history_signals)]
    cand_chars = cfg.max_item_chars

    def render() -> list[dict[str, str]]:
        cands = [_cut(t, cand_chars) for t in candidate_texts]
        context = []
        if history_topics and history_topics[1]:
            shown = "\n".join(t for t, _ in hist)
            if any(topic not in shown for topic in history_topics[1]):
                context = [f"{history_topics[0]} in this user's history: {', '.join(history_topics[1])}"]
        return [{"role": "system", "content": cfg.system},
                {"role": "user", "content": user_message(instruction, hist, query, cands, cfg.reasoning,
                                                         candidate_notes, context, ids)}]

    msgs = render()
    while count(msgs[0]["content"] + msgs[1]["content"]) > cfg.max_prompt_tokens:
        if hist:
            hist = hist[1:]
        elif cand_chars > 40:
            cand_chars = max(40, cand_chars // 2)
        else:
            break
        msgs = render()
    return msgs


def candidate_notes(split, row) -> list[str] | None:
    """The notes a need's prompt shows beside each candidate: one per column the build lists under
    ``manifest.needs.<need>.prompt.candidate_columns`` (column -> a template with ``{}``)."""
    columns = (split.manifest["needs"][split.need].get("prompt") or {}).get("candidate_columns") or {}
    if not columns:
        return None
    per_column = [[template.format(_number(v)) for v in row[name]] for name, template in columns.items()]
    return ["; ".join(parts) for parts in zip(*per_column)]


def _number(v) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:.3g}"


def history_topics(split, row) -> tuple[str, list[str]] | None:
    """(name, sorted topics of the instance's history) when the need's prompt lists them
    (``manifest.needs.<need>.prompt.history_topics``), else None."""
    name = (split.manifest["needs"][split.need].get("prompt") or {}).get("history_topics")
    if not name:
        return None
    topics = split.items["topics"]
    seen = sorted({t for h in row["history"] if h in topics.index for t in topics[h]})
    return name, seen


def split_messages(split, i: int, cfg: PromptConfig, count_tokens=None, ids: list[str] | None = None) -> list[dict[str, str]]:
    """Messages for instance ``i`` of a :class:`~flexrec_bench.building.splits.DatasetSplit` (``ids``: other
    candidate labels than C1, C2, ...)."""
    row = split.frame.iloc[i]
    texts = split.items["text"]
    return build_messages(
        split.instruction, [texts.get(h, h) for h in row["history"]], list(row["history_signals"]), split.signal_kind,
        row["query"], [texts.get(c, c) for c in row["candidates"]], cfg, count_tokens,
        candidate_notes(split, row), history_topics(split, row), ids)


def target_completion(order: list[int], reasoning: bool = False) -> str:
    """The completion an ideal ranker would write (TALLRec SFT target, Rec-R1 warm-up)."""
    return "<answer>" + ", ".join(short_id(p) for p in order) + "</answer>"
