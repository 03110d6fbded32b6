#!/usr/bin/env bash
# On a GPU machine (the device tool): `ratc tune` on specs/rat_swa.yaml at the ANCHORS sizes, the
# Optuna-against-sweep comparison, and (2+ GPUs) one study on all GPUs against the same on one.
#   bash scripts/gpu_tune.sh [prefill] [train] [decode] [sweep] [multi] [staged_16384]
#       [staged_131072]    (no argument: the first four; `multi` needs 2+ GPUs)
# Estimated on one H100 (compiles dominate; every study also stops at its --timeout):
#   prefill ~2.5 min, train ~4.5 min, decode ~1 min, sweep ~2.5 min, multi ~3 min (2 GPUs),
#   staged_16384, staged_131072 ~5 min each (RAT train, `--staged`, from the record; each
#   stops at its --timeout and records the best config so far: one a device call).
# Run at most ~two stages per device call (10-minute limit), e.g. "prefill decode", "train",
# "sweep", then "multi" on nvidia-h100-x2. Records: autotune/<GPU>.json (copied to $OUT/autotune/);
# RECORDS_DIR=DIR writes records there instead of autotune/ (the multi stage always writes to
# $OUT/multi_records_*). Study summaries: $OUT/tune_<stage>.json; logs: $OUT/tune_<stage>.log.
# Study journals stay in .ratc/studies/ on the machine: a repeated stage on a warm one resumes.
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
SPEC=${SPEC:-specs/rat_swa.yaml}
mkdir -p .ratc
stages=("$@")
[[ ${#stages[@]} -eq 0 ]] && stages=(prefill train decode sweep)

tune() {  # tune STAGE_NAME ARGS...: one `ratc tune` call, its table to the log, JSON to $OUT
  local name=$1
  shift
  local t0=$SECONDS
  python3 -m ratc tune "$SPEC" "$@" ${RECORDS_DIR:+--records-dir "$RECORDS_DIR"} --json "$OUT/tune_$name.json" 2>&1 | tee "$OUT/tune_$name.log" \
    | grep -v -E "^\s*(File|\^|Traceback|value_or_values|func\(trial\)|raise|trial\.set_user_attr)"
  echo "== $name: $((SECONDS - t0)) s wall" | tee -a "$OUT/tune_$name.log"
}

for stage in "${stages[@]}"; do
  case $stage in
    prefill)  # forward only, both layers, both ANCHORS shapes: 4 studies
      tune prefill_131072x2 --layer rat --layer swa --mode prefill --seq 131072 --batch 2 \
        --trials 8 --timeout 30
      tune prefill_16384x16 --layer rat --layer swa --mode prefill --seq 16384 --batch 16 \
        --trials 8 --timeout 30 ;;
    train)  # forward + backward with one config (attention adds its BWD_* keys): 4 studies
      tune train_131072x2 --layer rat --layer swa --mode train --seq 131072 --batch 2 \
        --trials 6 --timeout 50
      tune train_16384x16 --layer rat --layer swa --mode train --seq 16384 --batch 16 \
        --trials 6 --timeout 50 ;;
    decode)  # one step at position T-1 on a cache of capacity T (random contents)
      tune decode_131072x2 --layer rat --layer swa --mode decode --seq 131072 --batch 2 \
        --trials 12 --timeout 40 ;;
    sweep)  # RAT decode space (60 configs after pruning): a 20-trial study, then every config
      tune sweep_rat_decode --layer rat --mode decode --seq 131072 --batch 2 --trials 20 \
        --storage "$PWD/.ratc/sweep.journal" --sweep ;;
    multi)  # one study on every GPU, then the same study (fresh storage) on GPU 0 alone
      rm -f .ratc/multi_all.journal .ratc/multi_one.journal
      for gpus in all 0; do
        tag=$([[ $gpus == all ]] && echo all || echo one)
        # a fresh Triton cache each: neither run reuses the other's (or earlier stages') compiles
        TRITON_CACHE_DIR=$(mktemp -d) tune "multi_$tag" --layer rat --mode prefill --seq 16384 \
          --batch 16 --trials "${MULTI_TRIALS:-16}" --gpus "$gpus" --storage "$PWD/.ratc/multi_$tag.journal" \
          --records-dir "$OUT/multi_records_$tag"
      done
      grep -h "^== multi" "$OUT"/tune_multi_*.log ;;
    staged_16384|staged_131072)  # RAT train, one launch's keys at a time, compiled ahead
      seq=${stage#staged_}
      tune "staged_${seq}" --layer rat --mode train --seq "$seq" --batch $((262144 / seq)) \
        --staged --jobs $(( $(nproc) > 3 ? $(nproc) - 2 : 1 )) --timeout 270 ;;
    *) echo "unknown stage $stage (prefill, train, decode, sweep, multi, staged_16384," \
         "staged_131072)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT/autotune"
cp autotune/*.json "$OUT/autotune/" 2>/dev/null || true
ls -l "$OUT"
