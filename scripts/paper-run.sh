#!/usr/bin/env bash
# The paper's FlexRec run on one GPU machine: Qwen2.5-3B-Instruct on KuaiRec, trained on interest,
# scored on interest, niche and trend (Tables 1, 2 and 6), through TRL (local) or verl + vLLM.
#
#   scripts/paper-run.sh local [extra `train` options]    # TRL, one GPU (the `gpu` preset)
#   scripts/paper-run.sh verl  [extra `train` options]    # verl + vLLM, every visible GPU
#
# Environment: MODEL (default Qwen/Qwen2.5-3B-Instruct, or a local folder), DATA (default data),
# OUT (default checkpoints/paper-run-<backend>), STEPS (default: the config's 500).
# Expected cost: about 43 GiB of GPU memory before activations for full-parameter bf16 GRPO
# (policy, gradients, AdamW moments, the reference; docs/usage.md). Step time and peak memory on
# the GPU at hand come from `scripts/gpu-smoke.sh` (its qwen2.5-3b-shape part, a few minutes): the
# run takes about STEPS x its step time. Neither was measured by the sessions that wrote this (no
# GPU was lent to them). KuaiRec is downloaded by hand: `build-data` says where to unzip it.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-local}
shift || true
MODEL=${MODEL:-Qwen/Qwen2.5-3B-Instruct}
DATA=${DATA:-data}
OUT=${OUT:-checkpoints/paper-run-$BACKEND}
STEPS=${STEPS:+--max-steps $STEPS}
case $BACKEND in
  local|verl) ;;
  *) echo "paper-run.sh: the backend is local or verl, got '$BACKEND'" >&2; exit 2 ;;
esac
[ -f "$DATA/kuairec/manifest.json" ] || flexrec-bench build-data --dataset kuairec --out "$DATA"
[ -f "$DATA/critics/kuairec/critic.pt" ] || flexrec-bench train-critic --dataset kuairec --data "$DATA"
if [ "$BACKEND" = local ]; then
  flexrec-bench train --algo flexrec --model "$MODEL" --dataset kuairec --data "$DATA" --need interest \
    --eval-need interest,niche,trend --preset gpu --output-dir "$OUT" $STEPS "$@"
  POLICY="$OUT/final"
else
  flexrec-bench train --backend verl --algo flexrec --model "$MODEL" --dataset kuairec --data "$DATA" \
    --need interest --eval-need interest,niche,trend --output-dir "$OUT" $STEPS "$@"
  # verl saves FSDP shards; its merger writes a Hugging Face folder that `eval --model hf:` loads
  LAST=$(ls -d "$OUT"/global_step_* | sort -t_ -k3 -n | tail -1)
  python -m verl.model_merger merge --backend fsdp --local_dir "$LAST/actor" --target_dir "$OUT/final"
  POLICY="$OUT/final"
fi
for NEED in interest niche trend; do
  flexrec-bench eval --model "hf:$POLICY" --dataset kuairec --data "$DATA" --need "$NEED"
done
