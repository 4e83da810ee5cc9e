"""flexrec-bench: need-aware LLM recommendation datasets, one evaluator, baselines and training."""

from flexrec_bench.foundation.version import __version__  # noqa: F401


def evaluate(rankings, split, **kwargs):
    """Score rankings on a built split; see :func:`flexrec_bench.scoring.evaluator.evaluate`."""
    from flexrec_bench.scoring.evaluator import evaluate as _evaluate

    return _evaluate(rankings, split, **kwargs)


def load_split(data_dir, dataset, need, split="test"):
    """Load a built split; see :func:`flexrec_bench.building.splits.load_split`."""
    from flexrec_bench.building.splits import load_split as _load

    return _load(data_dir, dataset, need, split)
