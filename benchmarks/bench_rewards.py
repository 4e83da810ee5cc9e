"""Swap rewards for 4,096 rollouts x 30 items: the O(K) closed form against the O(K^2)
brute-force reference, same data, same run.

    python benchmarks/bench_rewards.py
"""

from __future__ import annotations

import time

import numpy as np

from _util import save


def main() -> None:
    from training.rewards import brute_force_swap_rewards, causal_swap_rewards

    rng = np.random.default_rng(0)
    g = rng.choice([0.0, 0.0, 0.01, 0.1, 0.5, 1.0], size=(4096, 30))
    causal_swap_rewards(g[:8])
    fast = min(_time(lambda: causal_swap_rewards(g)) for _ in range(5))
    t0 = time.perf_counter()
    ref = brute_force_swap_rewards(g)
    slow = time.perf_counter() - t0
    assert np.allclose(ref, causal_swap_rewards(g))
    pairs = min(_time(lambda: pairwise_swap_rewards(g)) for _ in range(3))
    assert np.allclose(pairwise_swap_rewards(g), ref)
    print(f"O(K) closed form: {fast * 1e3:.2f} ms")
    print(f"brute force (swap, re-score, loops): {slow:.2f} s -> {slow / fast:.0f}x")
    print(f"vectorised O(K^2) pairwise (NumPy, all swaps at once): {pairs * 1e3:.1f} ms -> {pairs / fast:.1f}x")
    save("swap_rewards", {"rollouts": 4096, "k": 30, "fast_ms": round(fast * 1e3, 3), "brute_s": round(slow, 3),
                          "ratio_vs_brute": round(slow / fast), "pairwise_ms": round(pairs * 1e3, 2),
                          "ratio_vs_pairwise": round(pairs / fast, 1)})


def pairwise_swap_rewards(g: np.ndarray) -> np.ndarray:
    """O(K^2) but vectorised: the (B, K, K) matrix of swap losses, averaged over j > k."""
    from training.rewards import discounts, ideal_dcg

    k = g.shape[1]
    d = discounts(k)
    loss = (g[:, :, None] - g[:, None, :]) * (d[:, None] - d[None, :])[None]
    upper = np.triu(np.ones((k, k), bool), 1)
    cnt = upper.sum(1)
    r = np.where(upper[None], loss, 0.0).sum(2) / np.maximum(cnt, 1)
    z = ideal_dcg(g)
    return np.divide(r, z[:, None], out=np.zeros_like(r), where=z[:, None] > 0)


def _time(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
