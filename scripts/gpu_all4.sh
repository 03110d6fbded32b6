#!/usr/bin/env bash
# On a 4-GPU machine (device kind nvidia-h100-x4), everything GPU-side in one call of ~9 minutes,
# three streams at once:
#   GPU 1     scripts/gpu_bench.sh (train, decode, generate), then the generated-vs-reference
#             training comparison (scripts/compare_reference.py)
#   GPU 2     ratc tune: prefill at both ANCHORS sizes, the decode sweep comparison, train at
#             131072x2; records in autotune/
#   GPU 0, 3  scripts/dist_check.py (DDP and FSDP2 over NCCL), the compiled GPU tests spread over
#             both (RATC_TEST_GPUS), then one tuning study on both GPUs against the same on one
# Every stream stops by LIMIT seconds (default 530); everything lands in $OUT/all.tgz (the device
# tool returns at most 8 files) and a summary prints last.
source "$(dirname "$0")/gpu_env.sh"
R=$OUT/r
mkdir -p "$R"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader >"$R/gpu.txt"
LIMIT=${LIMIT:-530}

bench_stream() {
  export CUDA_VISIBLE_DEVICES=1
  OUT=$R/bench bash scripts/gpu_bench.sh >"$R/bench.out" 2>&1
  timeout 140 python3 scripts/compare_reference.py specs/small_rat_swa.yaml --steps 150 \
    --batch 8 --out "$R/compare" >"$R/compare.log" 2>&1
  echo "compare: exit $?" >>"$R/compare.log"
}

tune_stream() {
  export CUDA_VISIBLE_DEVICES=2 RECORDS_DIR=$R/records  # not autotune/: tests build from it
  OUT=$R/tune bash scripts/gpu_tune.sh prefill >"$R/tune_prefill.out" 2>&1
  OUT=$R/tune timeout 200 bash scripts/gpu_tune.sh sweep >"$R/tune_sweep.out" 2>&1
  timeout 150 python3 -m ratc tune specs/rat_swa.yaml --layer rat --layer swa --mode train \
    --seq 131072 --batch 2 --trials 6 --timeout 50 --records-dir "$RECORDS_DIR" \
    --json "$R/tune/tune_train_131072x2.json" \
    >"$R/tune_train.out" 2>&1
}

pair_stream() {
  export CUDA_VISIBLE_DEVICES=0,3
  timeout 100 python3 -m torch.distributed.run --nproc_per_node 2 scripts/dist_check.py >"$R/dist.log" 2>&1
  echo "dist_check: exit $?" >>"$R/dist.log"
  RATC_TEST_GPUS=0,3 timeout -s INT 240 python3 -m pytest -q -n 28 -p no:cacheprovider \
    tests/test_grad_*.py tests/test_decode.py tests/test_build.py tests/test_compile.py \
    tests/test_bench.py tests/test_kernels_*.py -k "(gpu or not test_kernels_) and not smoke_run" \
    --junitxml="$R/junit.xml" -rfE >"$R/tests.log" 2>&1
  MULTI_TRIALS=10 OUT=$R/multi timeout 180 bash scripts/gpu_tune.sh multi >"$R/tune_multi.out" 2>&1
}

bench_stream & b=$!
tune_stream & t=$!
pair_stream & p=$!
( sleep "$LIMIT"; kill $b $t $p 2>/dev/null; pkill -INT -f pytest; pkill -f "ratc (bench|tune)" ) &
guard=$!
wait $b $t $p
kill $guard 2>/dev/null
tar czf "$OUT/all.tgz" -C "$OUT" r
tail -n 3 "$R/tests.log"
cat "$R/bench/summary.txt" 2>/dev/null | tail -n 30
grep -h "PASS\|FAIL\|exit" "$R/dist.log" | tail -n 6
grep -h "^== " "$R"/tune/*.log "$R"/multi/*.log 2>/dev/null
tail -n 2 "$R/compare.log"
