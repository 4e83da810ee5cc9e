#!/usr/bin/env bash
# Build the environment in which verl imports on CPU, next to the main one, and print its python.
# Usage: scripts/make-verl-env.sh [DIR]   (default .venv-verl)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.venv-verl}"
python3 -m venv "$dir"
"$dir/bin/python" -m pip install -q --upgrade pip
"$dir/bin/python" -m pip install -q torch==2.13.0
"$dir/bin/python" -m pip install -q --no-deps verl==0.9.1
"$dir/bin/python" -m pip install -q -r requirements-verl-cpu.txt -c constraints-verl.txt
"$dir/bin/python" -m pip install -q --no-deps -e .
echo "$(cd "$dir" && pwd)/bin/python"
