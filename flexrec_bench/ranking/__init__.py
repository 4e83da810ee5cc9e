"""Ranking a built split: the rankers, prompts, parsing, constrained decoding, first-token scoring, windows and the local model folders."""
