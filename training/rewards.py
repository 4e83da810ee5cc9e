"""Listwise objective and item-level rewards for closed-set rankings (pure NumPy, batched).

Inputs are gains in *ranked order*: ``g[b, k]`` is the graded relevance of the item a rollout put
at rank k (0-based). The objective is f(σ) = Σ_k g_k d_k / IDCG with d_k = 1 / log2(k + 2), the
evaluator's NDCG over the whole list.

Swapping ranks k and j changes the objective by
    f(σ) - f(σ with k, j swapped) = (g_k - g_j)(d_k - d_j) / IDCG,
so the causal swap reward (paper eq. 1), the mean of that over the remaining pool j > k, is
    r_k = [m g_k d_k - g_k S_d - d_k S_g + S_gd] / (m IDCG),   m = K - 1 - k,
with suffix sums S_d = Σ_{j>k} d_j, S_g = Σ_{j>k} g_j, S_gd = Σ_{j>k} g_j d_j: O(K) per ranking.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flexrec_bench.foundation.metrics import discounts  # the evaluator's discount: one NDCG for rewards and scores


def ideal_dcg(labels: np.ndarray) -> np.ndarray:
    """(B,) ideal DCG of each row of labels (any order)."""
    srt = np.sort(np.asarray(labels, np.float64), axis=-1)[..., ::-1]
    return srt @ discounts(srt.shape[-1])


def _idcg(gains: np.ndarray, idcg: np.ndarray | None) -> np.ndarray:
    return ideal_dcg(gains) if idcg is None else np.asarray(idcg, np.float64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den = np.broadcast_to(den, num.shape) if np.ndim(den) == np.ndim(num) else den
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def sequence_ndcg(gains: np.ndarray, idcg: np.ndarray | None = None) -> np.ndarray:
    """(B,) NDCG of each ranking: the Rec-R1 sequence-level reward and FlexRec's objective."""
    g = np.asarray(gains, np.float64)
    return _safe_div(g @ discounts(g.shape[-1]), _idcg(g, idcg))


def causal_swap_rewards(gains: np.ndarray, idcg: np.ndarray | None = None) -> np.ndarray:
    """(B, K) FlexRec item rewards: mean objective loss when rank k swaps with each j > k. O(K)."""
    g = np.asarray(gains, np.float64)
    b, k = g.shape
    d = discounts(k)
    gd = g * d

    def suffix(x):  # Σ_{j>k} x_j
        c = np.cumsum(x[..., ::-1], axis=-1)[..., ::-1]
        return np.concatenate([c[..., 1:], np.zeros(x.shape[:-1] + (1,))], axis=-1)

    s_d = suffix(np.broadcast_to(d, g.shape))
    s_g, s_gd = suffix(g), suffix(gd)
    m = (k - 1 - np.arange(k)).astype(np.float64)
    total = m * gd - g * s_d - d * s_g + s_gd
    r = np.divide(total, m, out=np.zeros_like(total), where=m > 0)
    return _safe_div(r, _idcg(g, idcg)[:, None])


def noncausal_swap_rewards(gains: np.ndarray, idcg: np.ndarray | None = None) -> np.ndarray:
    """(B, K) ablation: mean objective loss over swaps with every other rank j != k. O(K)."""
    g = np.asarray(gains, np.float64)
    b, k = g.shape
    if k < 2:
        return np.zeros_like(g)
    d = discounts(k)
    gd = g * d
    total = k * gd - g * d.sum() - d * g.sum(-1, keepdims=True) + gd.sum(-1, keepdims=True)
    return _safe_div(total / (k - 1), _idcg(g, idcg)[:, None])


def independent_rewards(gains: np.ndarray, idcg: np.ndarray | None = None) -> np.ndarray:
    """(B, K) ablation: each item's own normalised DCG term g_k d_k / IDCG."""
    g = np.asarray(gains, np.float64)
    return _safe_div(g * discounts(g.shape[-1]), _idcg(g, idcg)[:, None])


def suffix_dcg_rewards(gains: np.ndarray, idcg: np.ndarray | None = None) -> np.ndarray:
    """(B, K) Rank-GRPO rank-level rewards: normalised DCG of ranks k..K-1 (reward-to-go)."""
    g = np.asarray(gains, np.float64)
    gd = g * discounts(g.shape[-1])
    return _safe_div(np.cumsum(gd[..., ::-1], axis=-1)[..., ::-1], _idcg(g, idcg)[:, None])


def brute_force_swap_rewards(gains: np.ndarray, idcg: np.ndarray | None = None, causal: bool = True) -> np.ndarray:
    """O(K^2) reference (tests only): literally swap, re-score, average."""
    g = np.asarray(gains, np.float64)
    b, k = g.shape
    z = _idcg(g, idcg)
    d = discounts(k)
    out = np.zeros_like(g)
    for i in range(b):
        if z[i] <= 0:
            continue
        base = g[i] @ d / z[i]
        for a in range(k):
            others = range(a + 1, k) if causal else [j for j in range(k) if j != a]
            losses = []
            for j in others:
                s = g[i].copy()
                s[a], s[j] = s[j], s[a]
                losses.append(base - s @ d / z[i])
            out[i, a] = float(np.mean(losses)) if losses else 0.0
    return out


ITEM_REWARDS: dict[str, Callable[..., np.ndarray]] = {
    "causal_swap": causal_swap_rewards,
    "noncausal_swap": noncausal_swap_rewards,
    "independent": independent_rewards,
    "suffix_dcg": suffix_dcg_rewards,
}


def sequence_variance(item_variances: np.ndarray, idcg: np.ndarray | None, gains_for_idcg: np.ndarray | None = None
                      ) -> np.ndarray:
    """(B,) variance of the sequence objective when item gains are uncertain and independent:
    Var f = Σ_k (d_k / IDCG)^2 Var g_k (each item's variance scaled by its squared discount)."""
    v = np.asarray(item_variances, np.float64)
    z = _idcg(gains_for_idcg, idcg) if idcg is None else np.asarray(idcg, np.float64)
    w = discounts(v.shape[-1]) ** 2
    return _safe_div(v @ w, z ** 2)
