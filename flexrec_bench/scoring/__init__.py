"""Scoring rankings: the one evaluator, summaries with bootstrap CIs, comparisons, beyond-accuracy metrics, position bias and the results file."""
