"""Rankers behind ``eval --model``: ``random``, ``popularity``, ``oracle``, ``star``, ``hf:<path>``,
``vllm:<path>``, ``openai:<model>``, plus plugins (``bert4rec:<checkpoint>``) from the
``flexrec_bench.rankers`` entry-point group."""

from flexrec_bench.ranking.rankers.base import RANKERS, Ranker, make_ranker

__all__ = ["RANKERS", "Ranker", "make_ranker"]
