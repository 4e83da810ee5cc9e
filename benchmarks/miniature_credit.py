"""Which item-level credit agrees with the right per-step choice, on the toy's batches? (issue
"Evidence that the trainers learn": "if causal swap does not win, find out why from the advantages
of one batch")

    python benchmarks/miniature_credit.py [--groups 4000] [--seed 0]
    python benchmarks/miniature_credit.py --part uncertainty [--critic-noise gaussian|uniform]

A batch as the warm-up model samples it: G = 8 rollouts per prompt, each a random permutation of
the toy's gains (1, 0.5, 0.25 and five 0s; the warm-up was trained on random permutations). For
each rollout and rank k the oracle *step regret* is the chosen item's gain minus the best gain
still unplaced at that step (0 when the choice was the best available, negative otherwise). Each
design's item advantages (the project's own ITEM_REWARDS and item_advantages, pooled over the
group as FlexRec normalises them) are compared with it: Spearman correlation, the share of worse-
than-available choices that get a positive advantage, and the share of best choices that do not.
Writes benchmarks/out/miniature_credit.json.

``--part uncertainty`` (Table 8 in miniature): on the sparse toy's training prompts with the toy
critic (benchmarks/miniature.py --part table8), G random permutations per prompt through the
project's RankingEnv, causal swap: the advantages the critic-filled labels give, with and without
the uncertainty weight, against those the true labels give (the dense build). Reports the
correlation with the oracle advantages and the share of advantage mass with the wrong sign, item
and sequence level. Writes benchmarks/out/miniature_uncertainty_<noise>.json.
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
    ap.add_argument("--part", choices=("credit", "uncertainty"), default="credit")
    ap.add_argument("--critic-noise", choices=("gaussian", "uniform"), default="gaussian")
    ap.add_argument("--prompts", type=int, default=2000, help="uncertainty: training prompts used")
    a = ap.parse_args()
    if a.part == "uncertainty":
        return uncertainty(a)
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


def uncertainty(a: argparse.Namespace) -> None:
    import tempfile
    from pathlib import Path

    from flexrec_bench.datasets.toy import ToyCriticNoise, write_toy_build, write_toy_critic
    from flexrec_bench.building.splits import load_split
    from training.env import RankingEnv, Rollout, reward_filler

    with tempfile.TemporaryDirectory() as tmp:
        dense, sparse = Path(tmp) / "dense", Path(tmp) / "sparse"
        write_toy_build(dense)
        write_toy_build(sparse, observed_fraction=0.25)
        critic = write_toy_critic(sparse, ToyCriticNoise(unreliable=a.critic_noise))
        envs = {"oracle": RankingEnv("flexrec", "causal_swap", uncertainty=False),
                "raw critic": RankingEnv("flexrec", "causal_swap", uncertainty=False),
                "uncertainty-aware critic": RankingEnv("flexrec", "causal_swap", uncertainty=True)}
        envs["oracle"].add_split(load_split(dense, "toy", "toy", "train"), limit=a.prompts)
        split = load_split(sparse, "toy", "toy", "train")
        filler = reward_filler("critic", str(sparse), "toy", str(critic))
        for name in ("raw critic", "uncertainty-aware critic"):
            envs[name].add_split(split, filler, limit=a.prompts)
    rng = np.random.default_rng(a.seed)
    items: dict[str, list[np.ndarray]] = {n: [] for n in envs}
    seqs: dict[str, list[np.ndarray]] = {n: [] for n in envs}
    for key in envs["oracle"].instances:
        k = envs["oracle"].instances[key].k
        rollouts = [Rollout(key, list(rng.permutation(k)), [], True, k) for _ in range(a.rollouts)]
        for name, env in envs.items():
            item_adv, seq_adv = env.group_advantages(rollouts)
            items[name].append(np.concatenate(item_adv))
            seqs[name].append(np.asarray(seq_adv))
    out = {}
    for level, vals in (("item", items), ("sequence", seqs)):
        truth = np.concatenate(vals["oracle"])
        for name in ("raw critic", "uncertainty-aware critic"):
            v = np.concatenate(vals[name])
            wrong = np.sign(v) != np.sign(truth)
            out.setdefault(name, {})[level] = {
                "pearson_with_oracle": round(float(np.corrcoef(v, truth)[0, 1]), 3),
                "wrong_sign_mass": round(float(np.abs(v)[wrong].sum() / np.abs(v).sum()), 3)}
    for name, res in out.items():
        print(f"{name:26s} {res}")
    save(f"miniature_uncertainty_{a.critic_noise}", {"prompts": a.prompts, "rollouts": a.rollouts, "seed": a.seed,
                                                     "critic_noise": a.critic_noise, "designs": out})


if __name__ == "__main__":
    main()
