#!/usr/bin/env bash
# The trainers on one GPU, timed (step time, tokens/s, peak memory -> benchmarks/out/gpu_smoke.json).
# Under 5 minutes on one H200. Without a GPU: scripts/gpu-smoke.sh --cpu-check (every part up to CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_smoke.py "$@"
