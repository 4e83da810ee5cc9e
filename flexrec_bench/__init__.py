"""flexrec-bench: need-aware LLM recommendation datasets, one evaluator, baselines and training."""

__version__ = "0.1.0"


def evaluate(rankings, split, **kwargs):
    """Score rankings on a built split; see :func:`flexrec_bench.evaluator.evaluate`."""
    from .evaluator import evaluate as _evaluate

    return _evaluate(rankings, split, **kwargs)


def load_split(data_dir, dataset, need, split="test"):
    """Load a built split; see :func:`flexrec_bench.splits.load_split`."""
    from .splits import load_split as _load

    return _load(data_dir, dataset, need, split)
