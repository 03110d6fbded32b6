#!/usr/bin/env bash
# Set up, then run the whole test suite (Triton kernels through TRITON_INTERPRET=1 on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest -q -ra tests
