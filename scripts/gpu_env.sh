# Sourced by scripts/gpu_*.sh on a GPU machine: the repo root as working folder, $OUT (default
# ./out) created, the wheels in .whl/ (../shared/tools/device-wheels) installed to /tmp/site
# (then moved aside, so nested scripts do not reinstall them at once), PYTHONPATH set.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  mv .whl /tmp/whl_installed.$$
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
