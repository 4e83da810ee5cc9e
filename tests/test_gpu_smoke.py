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
    big = report["parts"]["qwen2.5-3b-shape"]  # the paper's model: 3.09B parameters, 28.7 GiB before activations
    assert not big["ran"] and 3.0e9 < big["parameters"] < 3.2e9  # (31.3 GiB peak measured on an H200, stop 43)
    assert 27 < big["memory_estimate_gib"]["total_before_activations"] < 31
    assert 55 < big["memory_estimate_gib"]["with_fp32_master_and_moments"] < 60
    assert not report["parts"]["verl"]["ran"] and report["parts"]["verl"]["why"]
    assert (tmp_path / "r.json").exists() and report["finished"] and all("part_wall_s" in p for p in report["parts"].values())
    with pytest.raises(SystemExit, match="--parts: unknown qwen9; the parts: tiny"):
        gpu_smoke.main(["--cpu-check", "--parts", "tiny,qwen9", "--out", str(tmp_path / "r2.json")])
    some = gpu_smoke.main(["--cpu-check", "--parts", "verl,qwen2.5-3b-shape", "--out", str(tmp_path / "r3.json")])
    assert list(some["parts"]) == ["verl", "qwen2.5-3b-shape"]  # the parts named, in their order


def test_the_papers_run_is_scripted_for_both_backends():
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "paper-run.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    r = subprocess.run(["bash", str(script), "vllm"], capture_output=True, text=True)
    assert r.returncode == 2 and "the backend is local or verl, got 'vllm'" in r.stderr
    text = script.read_text()
    assert "--preset gpu" in text and "--backend verl" in text and "verl.model_merger merge --backend fsdp" in text
    # every flexrec-bench command it runs exists with the options it names
    from typer.main import get_command

    from flexrec_bench.cli import app

    commands = [c.split("flexrec-bench ", 1)[1] for c in text.replace("\\\n", " ").splitlines()
                if "flexrec-bench " in c and not c.lstrip().startswith("#")]
    assert len(commands) == 5
    for c in commands:
        name, *args = c.split()
        cmd = get_command(app).commands[name]
        known = {o for prm in cmd.params for o in prm.opts}
        assert not [a for a in args if a.startswith("--") and a not in known], c
