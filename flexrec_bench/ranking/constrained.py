"""Constrained decoding for closed-set ranking (ours, an option): every answer is a permutation.

An answer is written as pieces, each a fixed token sequence of the ranker's tokenizer:

    <answer> C3 , C1 , ... C7 </answer> <eos>

:class:`AnswerGrammar` is the automaton over token ids: after ``<answer>`` the model may start any
candidate id it has not written yet (the ids' token sequences form a trie, so ``C1`` and ``C12``
share a prefix), after a complete id the separator or, once ``stop_after`` ids are written, the
closing tag and the end of sequence. :class:`ConstrainedLogits` is the transformers logits
processor that masks every other token to -inf at each step, so the decoding distribution is the
model's renormalised over the allowed tokens. :func:`allowed_masks` replays the same automaton over
a finished completion, which gives training the constrained distribution's log-probs
(:func:`constrained_logprobs`: logit of the token minus the log-sum-exp over the allowed ones), so
the policy gradient is taken of the distribution the samples were drawn from.

Pieces are tokenised on their own (``C12`` as ``tokenizer("C12")``), not in the context of a whole
answer: the text decodes to a well-formed answer either way, and one fixed tokenisation per piece
makes the automaton deterministic. Ids whose tokenisation is not unique as a piece (one id's token
sequence equal to another's) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexrec_bench.foundation.errors import FlexRecError
from flexrec_bench.ranking.parsing import short_id

OPEN, SEP, CLOSE = "<answer>", ", ", "</answer>"


def _ids(tok, text: str) -> tuple[int, ...]:
    return tuple(tok(text, add_special_tokens=False)["input_ids"])


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    ends: int | None = None      #: the candidate whose id ends here


@dataclass
class AnswerGrammar:
    """The token automaton of an answer naming ``stop_after`` of ``k`` candidates, each once."""

    k: int
    open: tuple[int, ...]
    sep: tuple[int, ...]
    close: tuple[int, ...]
    eos: int
    root: _Node
    stop_after: int

    @classmethod
    def build(cls, tokenizer, k: int, stop_after: int | None = None) -> AnswerGrammar:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise FlexRecError("constrained decoding needs the tokenizer's eos token (it ends the answer)")
        root = _Node()
        for j in range(k):
            node = root
            seq = _ids(tokenizer, short_id(j))
            for t in seq:
                node = node.children.setdefault(t, _Node())
            if node.ends is not None:
                raise FlexRecError(f"constrained decoding: {short_id(j)} and {short_id(node.ends)} tokenise the same")
            node.ends = j
        sep, close = _ids(tokenizer, SEP), _ids(tokenizer, CLOSE)
        for piece, seq in (("separator", sep), ("closing tag", close)):
            if seq and seq[0] in root.children:
                raise FlexRecError(f"constrained decoding: the {piece}'s first token starts a candidate id too")
        return cls(k, _ids(tokenizer, OPEN), sep, close, eos, root,
                   k if stop_after is None else max(1, min(k, stop_after)))

    def start(self) -> _State:
        return _State()

    def allowed(self, s: _State) -> list[int]:
        """Token ids allowed next in state ``s`` (the eos once the answer is over)."""
        if s.phase == "open":
            return [self.open[s.pos]] if s.pos < len(self.open) else self._id_starts(s)
        if s.phase == "id":
            node = s.node
            out = [t for t, child in node.children.items() if self._reachable(child, s.written)]
            if node.ends is not None and node.ends not in s.written:
                out.append(self.close[0] if len(s.written) + 1 >= self.stop_after else self.sep[0])
            return out
        if s.phase == "sep":
            return [self.sep[s.pos]] if s.pos < len(self.sep) else self._id_starts(s)
        if s.phase == "close":
            return [self.close[s.pos]] if s.pos < len(self.close) else [self.eos]
        return [self.eos]  # done: only padding follows

    def _id_starts(self, s: _State) -> list[int]:
        return [t for t, child in self.root.children.items() if self._reachable(child, s.written)]

    def _reachable(self, node: _Node, written: frozenset[int]) -> bool:
        """Whether some unwritten id ends at or below ``node``."""
        if node.ends is not None and node.ends not in written:
            return True
        return any(self._reachable(c, written) for c in node.children.values())

    def step(self, s: _State, token: int) -> _State:
        """The state after ``token`` (which must be allowed)."""
        if s.phase == "open":
            if s.pos < len(self.open):
                return _State("open", s.pos + 1, written=s.written)
            return _State("id", node=self.root.children[token], written=s.written)
        if s.phase == "sep":
            if s.pos < len(self.sep):
                return _State("sep", s.pos + 1, written=s.written)
            return _State("id", node=self.root.children[token], written=s.written)
        if s.phase == "id":
            if token in s.node.children and self._reachable(s.node.children[token], s.written):
                return _State("id", node=s.node.children[token], written=s.written)
            written = s.written | {s.node.ends}
            if len(written) >= self.stop_after:
                return _State("close", 1, written=written)
            return _State("sep", 1, written=written)
        if s.phase == "close":
            if s.pos < len(self.close):
                return _State("close", s.pos + 1, written=s.written)
            return _State("done", written=s.written)
        return s


@dataclass
class _State:
    phase: str = "open"          #: open | id | sep | close | done
    pos: int = 0                 #: tokens of the current fixed piece already written
    node: _Node | None = None
    written: frozenset[int] = frozenset()


class ConstrainedLogits:
    """A transformers logits processor: per row, every token the row's grammar does not allow next
    is set to -inf (rows with another candidate count get their own grammar)."""

    def __init__(self, grammars: list[AnswerGrammar], prompt_len: int):
        self.grammars, self.start = grammars, prompt_len
        self.states = [g.start() for g in grammars]
        self.seen = 0

    def __call__(self, input_ids, scores):
        import torch

        n = input_ids.shape[1] - self.start
        for b, g in enumerate(self.grammars):
            for t in input_ids[b, self.start + self.seen: self.start + n].tolist():
                self.states[b] = g.step(self.states[b], t) if self.states[b].phase != "done" else self.states[b]
        self.seen = n
        mask = torch.full_like(scores, float("-inf"))
        for b, g in enumerate(self.grammars):
            mask[b, g.allowed(self.states[b])] = 0.0
        return scores + mask


def allowed_masks(grammar: AnswerGrammar, completion: list[int], vocab: int, lenient: bool = False):
    """(T, vocab) bool: the tokens the grammar allowed at each position of ``completion`` (positions
    after the eos allow only the eos). ``lenient`` (a free rollout, training's squeeze_guard): from
    the first token the grammar does not allow, every token is allowed (the model's own
    distribution) instead of an error."""
    import torch

    out = torch.zeros(len(completion), vocab, dtype=torch.bool)
    s = grammar.start()
    for i, t in enumerate(completion):
        allowed = grammar.allowed(s)
        if s.phase != "done" and t not in allowed:
            if not lenient:
                raise FlexRecError(f"constrained decoding: token {t} at position {i} is not allowed by the grammar")
            out[i:] = True
            return out
        out[i, allowed] = True
        if s.phase != "done":
            s = grammar.step(s, t)
    return out


def constrained_logprobs(logits, completion: list[int], grammar: AnswerGrammar):
    """Per-token log-probs of ``completion`` under the constrained distribution: the logit of each
    token minus the log-sum-exp over the tokens allowed there. ``logits``: (T, vocab), the model's
    logits for each completion position."""
    import torch

    mask = allowed_masks(grammar, completion, logits.shape[-1]).to(logits.device)
    masked = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(masked.float(), dim=-1).gather(-1, torch.tensor(completion, device=logits.device)[:, None])[:, 0]
