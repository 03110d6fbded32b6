#!/usr/bin/env bash
# On a GPU machine (the device tool): compiled kernel tests and/or the prefill benchmark.
#   bash scripts/gpu_check.sh [tests] [bench] [extra pytest args...]
# With pytest-xdist (carry its wheel), pass `-n 14` — one GPU runs the ~400 tests in about 8 min.
# Logs and results go under $OUT (default ./out). Wheels in .whl/ (device-wheels) are installed
# to /tmp/site first when present.
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
what=${1:-all}
shift || true
if [[ $what == tests || $what == all ]]; then
  python3 -m pytest -q -ra tests/test_kernels_*.py tests/test_grad_*.py tests/test_decode.py \
    tests/test_build.py tests/test_compile.py tests/test_bench.py -k "not test_smoke_run" "$@" \
    2>&1 | tee "$OUT/tests.log" | tail -40
fi
if [[ $what == bench || $what == all ]]; then
  python3 -m ratc bench specs/rat_swa.yaml --seq 16384,131072 --batch 16,2 \
    --json "$OUT/bench.json" --plot "$OUT/bench.png" 2>&1 | tee "$OUT/bench.log"
fi
