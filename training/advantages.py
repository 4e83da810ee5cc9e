"""Group-relative advantages at sequence, item and rank level; uncertainty weights; and the map
from completion tokens to the items they name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-4


def sequence_advantages(rewards: np.ndarray, eps: float = EPS) -> np.ndarray:
    """GRPO: (r - mean) / (std + eps) over the G rollouts of one prompt. rewards: (G,)."""
    r = np.asarray(rewards, np.float64)
    return (r - r.mean()) / (r.std() + eps)


def item_advantages(item_rewards: np.ndarray, valid: np.ndarray | None = None, eps: float = EPS,
                    per_rank: bool = False) -> np.ndarray:
    """FlexRec: normalise item rewards pooled over all items of all rollouts of one prompt (the
    paper), or, with ``per_rank`` (ours), each rank over the rollouts valid there. (G, K);
    entries outside ``valid`` get 0 and stay out of the statistics."""
    r = np.asarray(item_rewards, np.float64)
    v = np.ones(r.shape, bool) if valid is None else valid
    if per_rank:
        n = v.sum(0, keepdims=True)
        mean = np.where(v, r, 0.0).sum(0, keepdims=True) / np.maximum(n, 1)
        std = np.sqrt(np.where(v, (r - mean) ** 2, 0.0).sum(0, keepdims=True) / np.maximum(n, 1))
        return np.where(v, (r - mean) / (std + eps), 0.0)
    pool = r[v]
    if pool.size == 0:
        return np.zeros_like(r)
    return np.where(v, (r - pool.mean()) / (pool.std() + eps), 0.0)


def rank_advantages(rank_rewards: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Rank-GRPO: normalise each rank's reward across the G rollouts of one prompt. (G, K)."""
    r = np.asarray(rank_rewards, np.float64)
    return (r - r.mean(0, keepdims=True)) / (r.std(0, keepdims=True) + eps)


def uncertainty_weights(seq_variance: np.ndarray, eps: float = 1e-2, clip: tuple[float, float] = (0.1, 3.0)
                        ) -> np.ndarray:
    """w = 1 / (Var + eps), normalised to mean 1 over the group, then clipped. (G,).
    Rollouts whose reward rests on uncertain (critic-filled) labels move the policy less."""
    w = 1.0 / (np.asarray(seq_variance, np.float64) + eps)
    w = w / w.mean()
    return np.clip(w, *clip)


def token_spans(offsets: Sequence[tuple[int, int]], char_spans: Sequence[tuple[int, int]]) -> list[list[int]]:
    """For each character span (an item id in the completion text), the indices of the tokens whose
    offset range overlaps it. ``offsets`` are per-token (start, end) character offsets."""
    out: list[list[int]] = []
    for s, e in char_spans:
        out.append([t for t, (a, b) in enumerate(offsets) if a < e and b > s and b > a])
    return out


def _quadratic_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """Prefix decodes of every length (O(T^2)): the reference :func:`token_offsets` falls back to."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    offsets: list[tuple[int, int]] = []
    prev = 0
    for t in range(len(ids)):
        cur = len(tokenizer.decode(ids[: t + 1], skip_special_tokens=False))
        if "\ufffd" in tokenizer.decode(ids[t:t + 1], skip_special_tokens=False) and cur > prev and t + 1 < len(ids):
            offsets.append((prev, prev))
            continue
        offsets.append((prev, cur))
        prev = cur
    return text, offsets


#: tokens of left context each incremental decode starts from (enough for any UTF-8 character)
DECODE_WINDOW = 8


def token_offsets(tokenizer, token_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text of ``token_ids`` and each token's character range in it, from the tokenizer
    itself, in O(T): each token's text is what decoding a short window ending with it adds to the
    same window without it (the incremental detokenisation of streaming decoders). A token that
    ends inside a multi-byte character gets an empty range and the token completing it the whole
    character. Where the pieces do not add up to the whole decode (a tokenizer whose decoding is
    not local), the exact prefix decodes are used instead."""
    ids = list(token_ids)
    offsets: list[tuple[int, int]] = []
    pieces: list[str] = []
    pos, pending = 0, 0  # characters emitted; tokens whose text is still incomplete
    for t in range(len(ids)):
        start = max(0, t - pending - DECODE_WINDOW)
        before = tokenizer.decode(ids[start: t - pending], skip_special_tokens=False)
        after = tokenizer.decode(ids[start: t + 1], skip_special_tokens=False)
        new = after[len(before):] if after.startswith(before) else None
        if new is None:
            return _quadratic_offsets(tokenizer, ids)
        if new.endswith("\ufffd") and t + 1 < len(ids):  # inside a character: wait for the rest
            offsets.append((pos, pos))
            pending += 1
            continue
        if pending:  # the tokens that began this character keep their empty ranges
            pending = 0
        offsets.append((pos, pos + len(new)))
        pieces.append(new)
        pos += len(new)
    text = "".join(pieces)
    if text != tokenizer.decode(ids, skip_special_tokens=False):
        return _quadratic_offsets(tokenizer, ids)
    return text, offsets


def per_token_advantages(n_tokens: int, seq_adv: float, item_spans: Sequence[Sequence[int]],
                         item_adv: Sequence[float], per_rank_mean: bool = False) -> np.ndarray:
    """(T,) token advantages: tokens of the item at rank k get A_k; every other token (reasoning,
    format) gets the sequence-level GRPO advantage. ``per_rank_mean`` (Rank-GRPO) spreads A_k over
    the rank's tokens (A_k / |y_k| each), so each rank enters the token-mean loss once whatever
    its length, as the rank-level objective's sum over ranks does."""
    a = np.full(n_tokens, float(seq_adv))
    for toks, adv in zip(item_spans, item_adv):
        toks = [t for t in toks if t < n_tokens]
        for t in toks:
            a[t] = adv / len(toks) if per_rank_mean else adv
    return a


def rank_index(n_tokens: int, item_spans: Sequence[Sequence[int]]) -> np.ndarray:
    """(T,) the rank whose item each token names, -1 for every other token."""
    idx = np.full(n_tokens, -1, np.int64)
    for k, toks in enumerate(item_spans):
        for t in toks:
            if t < n_tokens:
                idx[t] = k
    return idx


def rank_level_logps(logps, ranks):
    """Rank-GRPO's rank-level log-probabilities (Zhu et al. 2025): every token of the item at rank k
    carries the mean log-probability of that item's tokens, log of the geometric-mean probability
    (pi(y_k | x, y_<k))^(1/|y_k|). The importance ratio exp(new - old) is then the rank-level ratio
    on each of the rank's tokens, clipped per rank; tokens outside any rank (``ranks`` -1) keep
    their own log-probability. Works on torch tensors (B, T), gradients included."""
    import torch

    valid = ranks >= 0
    idx = ranks.clamp(min=0)
    width = int(idx.max().item()) + 1 if idx.numel() else 1
    zeros = torch.zeros(logps.shape[0], width, dtype=logps.dtype, device=logps.device)
    sums = zeros.scatter_add(1, idx, torch.where(valid, logps, torch.zeros_like(logps)))
    counts = zeros.scatter_add(1, idx, valid.to(logps.dtype))
    mean = sums / counts.clamp(min=1.0)
    return torch.where(valid, mean.gather(1, idx), logps)
