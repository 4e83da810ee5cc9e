"""Baselines of the paper's tables: BERT4Rec (RecBole), TALLRec (LoRA SFT). STAR lives in the core
(``flexrec_bench/ranking/rankers/star.py``: it is also the candidate generator); Rec-R1 and Rank-GRPO are
algorithms of ``training/`` (``flexrec-bench train --algo rec-r1|rank-grpo``)."""
