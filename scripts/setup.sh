#!/usr/bin/env bash
# Install ratc and its dependencies into the current Python (CPU build of torch; GPU users bring
# their own CUDA build and skip the torch pin). numpy < 2.4: Triton 3.6's interpreter needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "torch==2.13.0" "triton==3.6.0" "numpy<2.4"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
