#!/usr/bin/env bash
# On a GPU machine: train the small specs as byte-level LMs for the same number of tokens each
# (issue: end to end), spreading them round-robin over the listed GPUs; runs go to $OUT as JSON.
#   GPUS="2 3" STEPS=800 bash scripts/gpu_train.sh specs/small_rnn.yaml specs/small_rat.yaml ...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
GPUS=(${GPUS:-0})
STEPS=${STEPS:-800}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
declare -A queue
i=0
for spec in "$@"; do
  gpu=${GPUS[$((i % ${#GPUS[@]}))]}
  queue[$gpu]+="$spec "
  i=$((i + 1))
done
for gpu in "${!queue[@]}"; do
  (
    for spec in ${queue[$gpu]}; do
      name=$(basename "$spec" .yaml)
      CUDA_VISIBLE_DEVICES=$gpu python3 -m ratc train "$spec" --steps "$STEPS" --batch 16 \
        --seq 2048 --lr 2e-3 --eval-every 100 --amp --sample 300 --json "$OUT/$name.json" \
        >"$OUT/$name.log" 2>&1
      echo "$name on GPU $gpu: exit $?, $(grep -h 'tokens/s' "$OUT/$name.log" | tail -1)"
    done
  ) &
done
wait
