"""flexrec-bench: need-aware LLM recommendation datasets, one evaluator, baselines and training."""

__version__ = "0.1.0"
