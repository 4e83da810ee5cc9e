"""The GPU run is scripted and, without a GPU, checked on the CPU up to the point CUDA is needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_gpu_smoke_runs_on_cpu_to_the_cuda_boundary(tmp_path):
    import torch

    import gpu_smoke

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run scripts/gpu-smoke.sh itself")
    with pytest.raises(SystemExit, match="--cpu-check"):
        gpu_smoke.main(["--out", str(tmp_path / "r.json")])
    report = gpu_smoke.main(["--cpu-check", "--out", str(tmp_path / "r.json")])
    assert report["cuda"] is False and "CUDA boundary" in report["note"]
    tiny = report["parts"]["tiny"]
    assert tiny["ran"] and tiny["device"] == "cpu" and tiny["step_time_s"] > 0 and tiny["tokens_per_s"] > 0
    shape = report["parts"]["qwen2.5-0.5b-shape"]
    assert not shape["ran"] and "needs CUDA" in shape["why"] and 480e6 < shape["parameters"] < 510e6
    assert not report["parts"]["verl"]["ran"] and report["parts"]["verl"]["why"]
    assert (tmp_path / "r.json").exists()
