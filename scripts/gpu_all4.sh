#!/usr/bin/env bash
# On a 4-GPU machine (device kind nvidia-h100-x4), everything GPU-side in one call of ~8 minutes,
# three streams at once (session 3's final call; an x4 call costs the same device time per minute
# as an x1):
#   GPU 0     the compiled GPU tests (-m gpu: gradients, compile/inductor, RMSNorm, decode, RAT
#             kernels), kernel profiles of the RAT train step and a rat decode step, then the
#             generated-vs-reference training comparison (scripts/compare_reference.py --amp)
#   GPU 1     scripts/gpu_bench.sh decode train, then whole-model generation for specs/rat.yaml
#   GPU 2, 3  scripts/dist_check.py (DDP and FSDP2 over NCCL), one tuning study on both GPUs
#             (--gpus all), then: GPU 3 the same study alone (the wall-time gain) and RAT train
#             tuning at 131072x2; GPU 2 generation for rat_swa and attention
# Records go to $OUT/r/records and $OUT/r/multi_*, never autotune/ (tests build from it). Every
# stream stops by LIMIT seconds (default 470); everything lands in $OUT/all.tgz (the device tool
# returns at most 8 files) and a summary prints last.
source "$(dirname "$0")/gpu_env.sh"
R=$OUT/r
mkdir -p "$R/tune" "$R/records" "$R/bench" .ratc
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader >"$R/gpu.txt"
LIMIT=${LIMIT:-470}

tests_stream() {
  export CUDA_VISIBLE_DEVICES=0
  timeout -s INT 300 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_compile.py \
    tests/test_grad_rat_rnn.py tests/test_grad_attention.py tests/test_rms_norm.py \
    tests/test_decode.py tests/test_kernels_rat.py -m gpu -rfE --junitxml="$R/junit.xml" \
    >"$R/tests.log" 2>&1
  for args in "layer generated.rat_swa rat --seq 16384 --batch 16" \
              "layer generated.rat_swa rat --seq 131072 --batch 2" \
              "decode generated.rat --batch 1368 --steps 2"; do
    echo "=== $args"
    timeout 60 python3 scripts/kernel_profile.py $args 2>&1 | grep -v -i warn | tail -28
  done >"$R/profile.txt"
  timeout 150 python3 scripts/compare_reference.py specs/small_rat_swa.yaml --steps 300 \
    --batch 8 --amp --out "$R/compare" >"$R/compare.log" 2>&1
  echo "compare: exit $?" >>"$R/compare.log"
}

generate() {  # generate SPEC
  timeout 160 python3 -m ratc bench "specs/$1.yaml" --mode generate --prompt 3072 --new 1024 \
    --batch auto --json "$R/bench/generate_$1.json" >"$R/bench/generate_$1.log" 2>&1
}

bench_stream() {
  export CUDA_VISIBLE_DEVICES=1
  OUT=$R/bench bash scripts/gpu_bench.sh decode train >"$R/bench.out" 2>&1
  generate rat
}

tune() {  # tune NAME LIMIT_S ARGS...: one `ratc tune specs/rat_swa.yaml` call, wall time logged
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  TRITON_CACHE_DIR=$(mktemp -d) timeout "$limit" python3 -m ratc tune specs/rat_swa.yaml "$@" \
    --json "$R/tune/$name.json" >"$R/tune_$name.out" 2>&1
  echo "== $name: $((SECONDS - t0)) s wall" >>"$R/tune_$name.out"
}

pair_stream() {
  local study=(--layer swa --mode prefill --seq 16384 --batch 16 --trials 16 --gpus all)
  export CUDA_VISIBLE_DEVICES=2,3
  timeout 100 python3 -m torch.distributed.run --nproc_per_node 2 scripts/dist_check.py \
    >"$R/dist.log" 2>&1
  echo "dist_check: exit $?" >>"$R/dist.log"
  tune multi_all 120 "${study[@]}" \
    --storage "$PWD/.ratc/multi_all.journal" --records-dir "$R/multi_all"
  (
    export CUDA_VISIBLE_DEVICES=3
    tune multi_one 150 "${study[@]}" --storage "$PWD/.ratc/multi_one.journal" \
      --records-dir "$R/multi_one"
    tune train_131072x2 250 --layer rat --mode train --seq 131072 --batch 2 --trials 8 \
      --timeout 190 --records-dir "$R/records"
  ) &
  export CUDA_VISIBLE_DEVICES=2
  generate rat_swa
  generate attention
  wait
}

tests_stream & a=$!
bench_stream & b=$!
pair_stream & c=$!
( sleep "$LIMIT"; pkill -INT -f pytest; pkill -f "ratc (bench|tune)"; pkill -f compare_reference
  pkill -f kernel_profile ) &
guard=$!
wait $a $b $c
kill $guard 2>/dev/null
tar czf "$OUT/all.tgz" -C "$OUT" r
tail -n 3 "$R/tests.log"
tail -n 32 "$R/bench/summary.txt" 2>/dev/null | cut -c1-140
for spec in rat_swa rat attention; do
  grep -A3 "┏" "$R/bench/generate_$spec.log" 2>/dev/null | tail -n 1 | cut -c1-150
done
for f in "$R"/tune_*.out; do echo "--- $f"; grep -E "^== |│" "$f" | tail -n 4 | cut -c1-200; done
tail -n 2 "$R/compare.log"
grep -h "PASS\|FAIL\|exit" "$R/dist.log" | tail -n 4
