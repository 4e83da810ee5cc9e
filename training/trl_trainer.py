"""The local backend's trainer: TRL 1.16's ``GRPOTrainer``, subclassed only where it must be.

After TRL generates and scores the rollouts, the sequence-level advantages are replaced by per-token
ones (item spans from the tokenizer's own offsets). With ``constrained_decoding`` the rollouts can only
write permutations and the policy gradient uses the constrained distribution. KL to the reference
policy (``beta``) and the entropy bonus (``entropy_coef``) are TRL's. For Rank-GRPO the
log-probabilities that enter the importance ratio (and the KL) are rank-level: each item's tokens carry
the mean log-probability of the item (:func:`advantages.rank_level_logps`).
"""

from __future__ import annotations

import re

import numpy as np

from flexrec_bench.foundation.errors import require

from .env import RankingEnv


#: a candidate as a prompt lists it ("[C12] ..."): the grammar of a rollout names exactly these
_CANDIDATE_MARK = re.compile(r"^\[C(\d+)\]", re.M)


def build_trainer_class():
    trl = require("trl", "train", "local training")
    from .advantages import token_offsets

    class RankingGRPOTrainer(trl.GRPOTrainer):
        """GRPO with per-token advantages from the ranking environment."""

        def __init__(self, *args, ranking_env: RankingEnv, constrained: bool = False, squeeze_guard: bool = False,
                     **kwargs):
            super().__init__(*args, **kwargs)
            self.ranking_env = ranking_env
            self.constrained = constrained
            self.squeeze_guard = squeeze_guard
            self._rank_index = None

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            if self.constrained or self.squeeze_guard:
                out = self._constrained_logps(*args, **kwargs)
            else:
                out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            if self._rank_index is None:
                return out
            from .advantages import rank_level_logps

            return (rank_level_logps(out[0], self._rank_index), *out[1:])

        # -- constrained decoding (ours): rollouts that can only be permutations ---------------------
        def _grammar(self, prompt_ids):
            """The answer grammar of a prompt: its candidate count is the number of ids it lists."""
            from flexrec_bench.ranking.constrained import AnswerGrammar

            text = self.processing_class.decode(prompt_ids, skip_special_tokens=True)
            k = len(set(_CANDIDATE_MARK.findall(text)))
            cache = self.__dict__.setdefault("_grammars", {})
            if k not in cache:
                cache[k] = AnswerGrammar.build(self.processing_class, max(k, 1))
            return cache[k]

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            """TRL's generation, with the grammar's logits processor on the model's ``generate``."""
            if not self.constrained:
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            from transformers import LogitsProcessorList

            from flexrec_bench.ranking.constrained import ConstrainedLogits

            target = self.accelerator.unwrap_model(self.model_wrapped)
            had = "generate" in target.__dict__
            original = target.generate

            def generate(*a, **kw):
                ids = kw["input_ids"]
                grammars = [self._grammar(row[mask.bool()].tolist()) for row, mask in zip(ids, kw["attention_mask"])]
                kw["logits_processor"] = LogitsProcessorList([ConstrainedLogits(grammars, ids.shape[1])])
                return original(*a, **kw)

            target.generate = generate
            try:
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            finally:
                if had:
                    target.generate = original
                else:
                    del target.generate

        def _constrained_logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                               compute_entropy=False, compute_aux_loss=False, **_):
            """Per-token log-probs (and entropies) of the completions under the constrained
            distribution: the model's logits renormalised over the tokens the grammar allowed at
            each position (flexrec_bench.ranking.constrained.constrained_logprobs). Positions after the
            answer ended score 0 (the completion mask drops them). With ``squeeze_guard`` the rollouts
            were free: a completion's valid prefix is scored under the grammar, the rest (from its
            first invalid token) under the model's whole distribution."""
            import torch

            from flexrec_bench.ranking.constrained import allowed_masks

            batch_size = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                ids, att = input_ids[start:start + batch_size], attention_mask[start:start + batch_size]
                with self.accelerator.autocast():
                    logits = model(input_ids=ids, attention_mask=att).logits[:, -logits_to_keep - 1:-1, :].float()
                comp = ids[:, -logits_to_keep:]
                masks = torch.stack([allowed_masks(self._grammar(row[:-logits_to_keep][a[:-logits_to_keep].bool()]
                                                                 .tolist()), c.tolist(), logits.shape[-1],
                                                   lenient=self.squeeze_guard)
                                     for row, a, c in zip(ids, att, comp)]).to(logits.device)
                masked = logits.masked_fill(~masks, float("-inf"))
                lp = torch.log_softmax(masked, dim=-1)
                tok_lp = lp.gather(-1, comp[..., None])[..., 0]
                logps.append(torch.where(torch.isfinite(tok_lp), tok_lp, torch.zeros_like(tok_lp)))
                if compute_entropy:
                    p = lp.exp()
                    entropies.append(-(p * torch.where(masks, lp, torch.zeros_like(lp))).sum(-1))
            return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

        def _compute_loss(self, model, inputs):
            self._rank_index = inputs.get("rank_index") if self.ranking_env.algo == "rank-grpo" else None
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._rank_index = None

        def _generate_and_score_completions(self, inputs):
            import torch

            from .advantages import rank_level_logps

            out = super()._generate_and_score_completions(inputs)
            if self.ranking_env.algo == "rec-r1":
                return out
            ids, mask = out["completion_ids"], out["completion_mask"]
            tok = self.processing_class
            texts, offsets, lengths = [], [], []
            for row, m in zip(ids.tolist(), mask.tolist()):
                n = int(sum(m))
                text, offs = token_offsets(tok, row[:n])
                texts.append(text)
                offsets.append(offs)
                lengths.append(ids.shape[1])
            keys = [x["instance_key"] for x in inputs]
            credit = self.ranking_env.token_advantages(keys, texts, offsets, lengths)
            out["advantages"] = torch.tensor(np.stack(credit.advantages), dtype=torch.float32, device=ids.device) * mask
            if self.ranking_env.algo == "rank-grpo":
                ranks = torch.tensor(np.stack(credit.ranks), dtype=torch.long, device=ids.device)
                out["rank_index"] = ranks
                self.ranking_env.stats["rank_token_share"].append(float((ranks >= 0).float().mean()))
                for key in ("old_per_token_logps", "ref_per_token_logps"):  # the same rank-level view as the loss's
                    if out.get(key) is not None:
                        out[key] = rank_level_logps(out[key], ranks)
            return out

        def log(self, logs, *args, **kwargs):
            logs = {**logs, **self.ranking_env.pop_stats()} if "loss" in logs else logs
            return super().log(logs, *args, **kwargs)

    return RankingGRPOTrainer
