"""First-token ranking (ours on recommendation, after FIRST, Reddy et al. 2024): one forward pass
per instance instead of generating K ids.

The prompt is the usual one, with every candidate labelled by a **single token** of the model's
tokenizer, and the assistant's answer opened (``<answer>``). The logits of the first answer token,
read at each candidate's label token, score the candidates; the ranking is their descending
order (ties by the evaluator's seeded keys). Labels must be single, distinct tokens, or two
candidates would share a score: :func:`id_scheme` takes the first scheme whose K labels all are
(``C1 … CK`` where the tokenizer keeps them whole, else the numbers ``1 … K``, else letters
``A … Z, a … z``), and refuses K beyond what any scheme covers (use sliding windows).
"""

from __future__ import annotations

import string

from flexrec_bench.foundation.errors import FlexRecError

#: the schemes tried, in order: name -> the label of position j
SCHEMES = {"C": lambda j: f"C{j + 1}", "number": lambda j: str(j + 1),
           "letter": lambda j: (string.ascii_uppercase + string.ascii_lowercase)[j]}
ANSWER_OPEN = "<answer>"


def id_scheme(tokenizer, k: int) -> tuple[str, list[str], list[int]]:
    """(scheme name, labels, their token ids) for ``k`` candidates: the first scheme whose labels are
    single, distinct tokens (tokenised after the answer's opening tag, as the model would write them)."""
    for name, label in SCHEMES.items():
        if name == "letter" and k > 52:
            continue
        labels = [label(j) for j in range(k)]
        toks = [_single(tokenizer, x) for x in labels]
        if all(t is not None for t in toks) and len(set(toks)) == k:
            return name, labels, toks
    raise FlexRecError(f"first-token scoring: no single-token labels for {k} candidates in this tokenizer (tried "
                       f"{', '.join(SCHEMES)}); rank fewer at a time with -o window=20 -o stride=10")


def _single(tokenizer, label: str) -> int | None:
    base = tokenizer(ANSWER_OPEN, add_special_tokens=False)["input_ids"]
    ids = tokenizer(ANSWER_OPEN + label, add_special_tokens=False)["input_ids"]
    if ids[: len(base)] != base or len(ids) != len(base) + 1:
        return None
    return ids[-1]
