"""The ranking environment shared by the TRL and verl trainers: prompts, labels (observed, or
filled in by the critic with a variance), rollout rewards and per-token advantages. No trainer
framework is imported here."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flexrec_bench.building.splits import DatasetSplit
from flexrec_bench.ranking.parsing import parse_ranking, short_id, to_permutation
from flexrec_bench.ranking.prompts import PromptConfig, split_messages

from .advantages import (item_advantages, per_token_advantages, rank_advantages, rank_index, sequence_advantages,
                         token_spans, uncertainty_weights)
from .config import ALGOS, ITEM_REWARD_VARIANTS, default
from .rewards import ITEM_REWARDS, ideal_dcg, sequence_ndcg, sequence_variance


@dataclass
class _Instance:
    key: str
    k: int
    gains: np.ndarray      # (K,) labels used for rewards (critic-filled where unobserved)
    variance: np.ndarray   # (K,) 0 where observed
    idcg: float


@dataclass
class Rollout:
    key: str
    order: list[int]                 # candidate positions, best first (repaired)
    spans: list[list[int]]           # token indices of the item at each rank (empty when not named)
    format_ok: bool
    named: int = 0                   # ranks the output named itself; the rest are padding
    rejected: list[int] = field(default_factory=list)  # tokens of invalid or repeated id mentions


def reward_filler(reward_signal: str, data: str, dataset: str, critic: str | None = None,
                  knn_neighbors: int = default("knn_neighbors")):
    """What supplies rewards for unobserved user-item pairs (Table 8's axis): None for
    ``observed`` (unobserved pairs count 0, as in the evaluation labels), a KNN imputer, or the
    critic (a trained ``critic.pt``, or an imputation table: training/imputations.py). Each has ``fill(split) -> (gains, variances)``."""
    if reward_signal == "observed":
        return None
    if reward_signal == "critic":
        if not critic:
            raise ValueError("reward_signal=critic needs a critic checkpoint (flexrec-bench train-critic)")
        from .imputations import ImputedCritic, is_imputation_dir

        if is_imputation_dir(critic):  # estimates computed elsewhere (the toy's critic with known noise)
            return ImputedCritic(critic, data)
        from .critic import Critic

        return Critic.load(critic, data)
    from .knn import KNNImputer

    return KNNImputer(reward_signal, data, dataset, knn_neighbors)


@dataclass
class TokenCredit:
    """Per-token credit of a batch of completions."""

    advantages: list[np.ndarray]     # (T_b,) advantage of each token
    ranks: list[np.ndarray]          # (T_b,) rank of the item each token names, -1 elsewhere


@dataclass
class RankingEnv:
    """Instances keyed ``"<need>|<split>|<row>"`` with their reward labels. Runs build it from their
    resolved config (:meth:`from_config`); the field defaults are TrainConfig's."""

    algo: str = default("algo")
    item_reward: str = default("item_reward")
    item_normalisation: str = default("item_normalisation")  #: pooled (the paper) or per_rank (ours)
    uncertainty: bool = default("uncertainty")  #: weight advantages by the critic's variance (the resolved config decides when it acts)
    seed: int = 0                               #: seeds the padding of incomplete answers (the run's seed)
    uncertainty_eps: float = default("uncertainty_eps")      #: w = 1 / (Var + eps)
    uncertainty_clip: tuple[float, float] = tuple(default("uncertainty_clip"))
    uncertainty_items: bool = default("uncertainty_items")   #: the weight scales the item advantages as well
    skip_zero_gain: bool = default("skip_zero_gain")         #: training prompts without a positive are left out
    instances: dict[str, _Instance] = field(default_factory=dict)
    stats: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    skipped_zero_gain: int = 0                  #: training instances left out by ``skip_zero_gain``

    @classmethod
    def from_config(cls, cfg) -> RankingEnv:
        """The environment of a resolved :class:`~training.config.TrainConfig` (the local and the verl
        trainer both build theirs here)."""
        return cls(cfg.algo, cfg.item_reward, cfg.item_normalisation, cfg.uncertainty, cfg.rl("seed"),
                   cfg.uncertainty_eps, tuple(cfg.uncertainty_clip), cfg.uncertainty_items, cfg.skip_zero_gain)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            from flexrec_bench.foundation.registry import did_you_mean

            raise ValueError(f"unknown algo {self.algo!r}; {did_you_mean(self.algo, list(ALGOS))}")
        if self.item_reward not in ITEM_REWARD_VARIANTS:
            raise ValueError(f"unknown item reward {self.item_reward!r}; expected one of {ITEM_REWARD_VARIANTS}")

    def add_split(self, split: DatasetSplit, filler=None, limit: int | None = None,
                  prompt: PromptConfig | None = None, count_tokens=None) -> list[dict]:
        """Register a split's instances; return TRL-style rows {prompt, instance_key}. ``filler``
        (the critic or a KNN imputer: ``fill(split) -> (gains, variances)``) supplies rewards for
        unobserved user-item pairs; without it they count as 0, as in the evaluation labels. With
        ``skip_zero_gain``, a training split's instances whose gains are all 0 get no row (counted in
        ``skipped_zero_gain``); validation and test splits keep every instance."""
        split = split.head(limit)
        if filler is not None:
            gains, var = filler.fill(split)
        else:
            gains, var = split.relevance, np.zeros_like(split.relevance)
        nvalid = split.mask.sum(1)
        rows = []
        prompt = prompt or PromptConfig()
        for i in range(len(split)):
            key = f"{split.need}|{split.split}|{i}"
            k = int(nvalid[i])
            g = gains[i, :k].astype(np.float64)
            if self.skip_zero_gain and split.split == "train" and not (g > 0).any():
                self.skipped_zero_gain += 1
                continue
            self.instances[key] = _Instance(key, k, g, var[i, :k].astype(np.float64), float(ideal_dcg(g[None])[0]))
            rows.append({"prompt": split_messages(split, i, prompt, count_tokens), "instance_key": key})
        return rows

    # -- rollouts -------------------------------------------------------------------------------
    def parse(self, key: str, text: str, offsets: Sequence[tuple[int, int]] | None) -> Rollout:
        """The rollout's ranking; items it does not name are padded in an order seeded by the seed,
        the instance and the text itself, so the same output always gets the same reward."""
        inst = self.instances[key]
        rng = np.random.default_rng([self.seed, 17, zlib.crc32(key.encode()), zlib.crc32(text.encode())])
        parsed = parse_ranking(text, [short_id(j) for j in range(inst.k)])  # the evaluator's parser
        order = to_permutation(parsed, inst.k, rng)
        first_span = dict(zip(parsed.positions, parsed.spans))  # padded items get no credit span
        spans: list[list[int]] = []
        rejected: list[int] = []
        if offsets is not None:
            chars = [first_span.get(p, (-1, -1)) for p in order]
            spans = token_spans(offsets, chars)
            named = {t for s in spans for t in s}
            rejected = sorted({t for s in token_spans(offsets, parsed.rejected) for t in s} - named)
        return Rollout(key, order, spans, parsed.complete, len(parsed.positions), rejected)

    def ranked_gains(self, r: Rollout) -> tuple[np.ndarray, np.ndarray]:
        inst = self.instances[r.key]
        o = np.asarray(r.order)
        return inst.gains[o], inst.variance[o]

    def sequence_reward(self, r: Rollout) -> float:
        g, _ = self.ranked_gains(r)
        return float(sequence_ndcg(g[None], np.array([self.instances[r.key].idcg]))[0])

    def group_advantages(self, rollouts: list[Rollout]) -> tuple[list[np.ndarray], np.ndarray]:
        """Per-rank advantages (one (K,) array per rollout) and sequence advantages (G,) for the
        rollouts of one prompt, following the algorithm and reward variant."""
        key = rollouts[0].key
        inst = self.instances[key]
        ranked = [self.ranked_gains(r) for r in rollouts]
        gains = np.stack([g for g, _ in ranked])
        var = np.stack([v for _, v in ranked])
        z = np.full(len(rollouts), inst.idcg)
        seq = sequence_ndcg(gains, z)
        seq_adv = sequence_advantages(seq)
        if self.algo == "rec-r1" or (self.algo == "flexrec" and self.item_reward == "sequence"):
            item_adv = np.repeat(seq_adv[:, None], inst.k, axis=1)
        elif self.algo == "rank-grpo":
            item_adv = rank_advantages(ITEM_REWARDS["suffix_dcg"](gains, z))
        else:
            rewards = ITEM_REWARDS[self.item_reward](gains, z)
            # padded ranks (items the output did not name) get no tokens: they stay out of the
            # group's mean and deviation, so they cannot shift the named items' advantages
            named = np.arange(inst.k)[None, :] < np.array([r.named for r in rollouts])[:, None]
            item_adv = item_advantages(rewards, named, per_rank=self.item_normalisation == "per_rank")
            self.stats["item_reward_mean"].append(float(rewards.mean()))
        if self.algo == "flexrec" and self.uncertainty:
            w = uncertainty_weights(sequence_variance(var, z), self.uncertainty_eps, tuple(self.uncertainty_clip))
            seq_adv = seq_adv * w
            if self.uncertainty_items:
                item_adv = item_adv * w[:, None]
            self.stats["adv_weight_mean"].append(float(w.mean()))
            self.stats["adv_weight_min"].append(float(w.min()))
        self.stats["ndcg"].extend(seq.tolist())
        return list(item_adv), seq_adv

    def token_advantages(self, keys: Sequence[str], texts: Sequence[str], offsets: Sequence[Sequence[tuple[int, int]]],
                         lengths: Sequence[int]) -> TokenCredit:
        """(T_b,) advantages (and rank indices) for each completion of a batch; completions of one
        prompt are grouped by key."""
        rollouts = [self.parse(k, t, o) for k, t, o in zip(keys, texts, offsets)]
        groups: dict[str, list[int]] = defaultdict(list)
        for b, k in enumerate(keys):
            groups[k].append(b)
        out: list[np.ndarray] = [np.zeros(n) for n in lengths]
        for members in groups.values():
            item_adv, seq_adv = self.group_advantages([rollouts[b] for b in members])
            # an invalid or repeated id names no item: its tokens get the group's lowest item
            # advantage (at most 0), as the worst placement would (ours; Rec-R1's sequence-level
            # credit keeps the sequence advantage on every token)
            worst = min(0.0, min((float(a[: rollouts[b].named].min()) for a, b in zip(item_adv, members)
                                  if rollouts[b].named), default=0.0))
            for j, b in enumerate(members):
                out[b] = per_token_advantages(lengths[b], seq_adv[j], rollouts[b].spans, item_adv[j],
                                              per_rank_mean=self.algo == "rank-grpo")
                if self.algo != "rec-r1" and not (self.algo == "flexrec" and self.item_reward == "sequence"):
                    out[b][[t for t in rollouts[b].rejected if t < lengths[b]]] = worst
        self.stats["format_ok"].extend(float(r.format_ok) for r in rollouts)
        return TokenCredit(out, [rank_index(n, r.spans) for n, r in zip(lengths, rollouts)])

    def token_rewards(self, keys: Sequence[str], texts: Sequence[str], offsets: Sequence[Sequence[tuple[int, int]]],
                      lengths: Sequence[int]) -> TokenCredit:
        """PPO (Table 7's PPO rows): item-level rewards, not advantages. The reward of the item at
        rank k (the ``item_reward`` variant; ``sequence``: the list's NDCG on its last token) sits on
        the last token naming it; GAE with the value model turns them into advantages. With the
        critic's uncertainty, each rollout's rewards are scaled by its weight, normalised over the
        batch (PPO has no groups)."""
        rollouts = [self.parse(k, t, o) for k, t, o in zip(keys, texts, offsets)]
        out = [np.zeros(n) for n in lengths]
        var_seq = np.zeros(len(rollouts))
        for b, r in enumerate(rollouts):
            inst = self.instances[r.key]
            g, v = self.ranked_gains(r)
            z = np.array([inst.idcg])
            var_seq[b] = sequence_variance(v[None], z)[0]
            if self.item_reward == "sequence" or self.algo != "flexrec":
                ends = [max((t for span in r.spans for t in span), default=lengths[b] - 1)]
                vals = [float(sequence_ndcg(g[None], z)[0])]
            else:
                rewards = ITEM_REWARDS[self.item_reward](g[None], z)[0]
                ends = [max(span) if span else -1 for span in r.spans]
                vals = rewards.tolist()
            for t, val in zip(ends, vals):
                if 0 <= t < lengths[b]:
                    out[b][t] += val
        if self.algo == "flexrec" and self.uncertainty:
            w = uncertainty_weights(var_seq, self.uncertainty_eps, tuple(self.uncertainty_clip))
            out = [o * wi for o, wi in zip(out, w)]
        self.stats["format_ok"].extend(float(r.format_ok) for r in rollouts)
        return TokenCredit(out, [rank_index(n, r.spans) for n, r in zip(lengths, rollouts)])

    def pop_stats(self) -> dict[str, float]:
        out = {f"flexrec/{k}": float(np.mean(v)) for k, v in self.stats.items() if v}
        self.stats.clear()
        return out
