"""Where compute runs: one rule for every part (embeddings, the critic, LLM ranking, training)."""

from __future__ import annotations


def resolve_device(device: str | None = None) -> str:
    """``device``, else ``auto``: CUDA when present, else the CPU (passed as an argument by every
    caller; nothing is read from the environment). Not part of a build's configuration or
    fingerprint: the device changes speed, not the labels."""
    device = device or "auto"
    if device == "auto":
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
    return device


def bf16_ok(device: str) -> bool:
    """Whether ``device`` is a CUDA device that computes in bfloat16 (A100, H100, ...)."""
    if not str(device).startswith("cuda"):
        return False
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
