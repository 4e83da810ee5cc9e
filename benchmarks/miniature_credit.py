"""Which item-level credit agrees with the right per-step choice, on the toy's batches? (issue
"Evidence that the trainers learn": "if causal swap does not win, find out why from the advantages
of one batch")

    python benchmarks/miniature_credit.py [--groups 4000] [--seed 0]

A batch as the warm-up model samples it: G = 8 rollouts per prompt, each a random permutation of
the toy's gains (1, 0.5, 0.25 and five 0s; the warm-up was trained on random permutations). For
each rollout and rank k the oracle *step regret* is the chosen item's gain minus the best gain
still unplaced at that step (0 when the choice was the best available, negative otherwise). Each
design's item advantages (the project's own ITEM_REWARDS and item_advantages, pooled over the
group as FlexRec normalises them) are compared with it: Spearman correlation, the share of worse-
than-available choices that get a positive advantage, and the share of best choices that do not.
Writes benchmarks/out/miniature_credit.json.
"""

from __future__ import annotations

import argparse

import numpy as np
from _util import save
from scipy.stats import spearmanr

from training.advantages import item_advantages
from training.rewards import ITEM_REWARDS, ideal_dcg

TOY_GAINS = np.array([1.0, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0])
DESIGNS = ("causal_swap", "noncausal_swap", "independent")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=4000)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    idcg = ideal_dcg(TOY_GAINS[None])[0]
    adv: dict[str, list[np.ndarray]] = {d: [] for d in DESIGNS}
    regret = []
    for _ in range(a.groups):
        g = np.stack([rng.permutation(TOY_GAINS) for _ in range(a.rollouts)])
        best_left = np.maximum.accumulate(g[:, ::-1], axis=1)[:, ::-1]
        regret.append((g - best_left).ravel())
        for d in DESIGNS:
            adv[d].append(item_advantages(ITEM_REWARDS[d](g, np.full(len(g), idcg))).ravel())
    r = np.concatenate(regret)
    out = {}
    for d in DESIGNS:
        v = np.concatenate(adv[d])
        out[d] = {"spearman_with_step_regret": round(float(spearmanr(v, r).correlation), 3),
                  "wrong_choice_reinforced": round(float(np.mean(v[r < 0] > 0)), 3),
                  "best_choice_not_reinforced": round(float(np.mean(v[r == 0] <= 0)), 3)}
        print(f"{d:15s} {out[d]}")
    save("miniature_credit", {"groups": a.groups, "rollouts": a.rollouts, "seed": a.seed, "designs": out})


if __name__ == "__main__":
    main()
