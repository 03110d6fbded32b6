#!/usr/bin/env bash
# On one GPU (the device tool, an H100): ratc bench in train, decode and generate modes at the
# ANCHORS.md sizes; up to about 12 minutes in all on an H100 (run the parts in separate calls).
#   bash scripts/gpu_bench.sh [decode] [train] [generate]     # default: all three
# Writes $OUT (default ./out): <part>.json, <part>.log, decode.png, train.png, summary.txt.
# Every part runs under its own time limit (LIMIT_PCT=200 doubles them all); a layer part cut
# short keeps the rows it finished in its JSON (bench checkpoints before every layer and size);
# a generate part cut short leaves none. A compact summary prints last.
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
parts=${*:-decode train generate}
SECONDS=0

part() {  # part NAME LIMIT_S ratc-args...
  local name=$1 limit=$(( $2 * ${LIMIT_PCT:-100} / 100 ))
  shift 2
  echo "== $name (limit ${limit}s): ratc $*"
  timeout --kill-after=10 "$limit" python3 -m ratc "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "$name: exit $rc after ${SECONDS}s total" | tee -a "$OUT/times.txt"
}

if [[ " $parts " == *" decode "* ]]; then
  part decode 55 bench specs/rat_swa.yaml --mode decode --seq 16384,131072 --batch 16,2 \
    --rep 100 --json "$OUT/decode.json" --plot "$OUT/decode.png"
fi
if [[ " $parts " == *" train "* ]]; then
  part train 240 bench specs/rat_swa.yaml --mode train --seq 16384,131072 --batch 16,2 \
    --rep 40 --json "$OUT/train.json" --plot "$OUT/train.png"
fi
if [[ " $parts " == *" generate "* ]]; then
  for spec in rat_swa rat attention; do
    limit=150  # 50-75 s was too little on an H100 (2026-11-27): model, batch choice, compile
    part "generate_$spec" "$limit" bench "specs/$spec.yaml" --mode generate --prompt 3072 \
      --new 1024 --batch auto --json "$OUT/generate_$spec.json"
  done
fi

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None

print("=" * 100)
for mode, unit, target in (("train", "ms", {16384: 62, 131072: 117}),
                           ("decode", "us", {16384: 75, 131072: 75})):
    r = load(mode)
    if not r:
        print(f"{mode}: no results")
        continue
    print(f"{mode} on {r['device']} (torch {r['torch']}; "
          f"{r['ceilings']['bf16_matmul_tflops']:.0f} TFLOP/s, {r['ceilings']['copy_tb_s']:.2f} TB/s)")
    for row in r["rows"]:
        if row["ms"]:
            v = row["ms"] * (1e3 if unit == "us" else 1)
            val = f"{v:9.1f} {unit}"
        else:
            val = f"{row['note'][:40]:>12}"
        step = "" if row.get("graph") is None else ("graph " if row["graph"] else "eager ")
        extra = []
        if row["impl"] == "ratc (generated)" and row["layer"] == "rat":
            extra.append(f"target <= {target.get(row['seq'], '?')} {unit}")
        if row.get("peak_gib") is not None:
            extra.append(f"peak {row['peak_gib']:.1f} GiB")
        if row.get("roofline_pct"):
            extra.append(f"{row['roofline_pct']:.0f}% of floor")
        if row.get("speedup"):
            extra.append(f"x{row['speedup']:.2f}")
        if row.get("rel_err") is not None:
            extra.append(f"err {row['rel_err']:.1e}")
        print(f"  {row['layer']:4} {row['seq']:>6}x{row['batch']:<3} {step}{row['impl'][:38]:38} "
              f"{val}  {', '.join(extra)}")
targets = {"rat": 45000, "rat_swa": 20000}
for spec in ("rat_swa", "rat", "attention"):
    r = load(f"generate_{spec}")
    if not r:
        print(f"generate {spec}: no results")
        continue
    g = r["rows"][0]
    t = f" (target >= {targets[spec]:,})" if spec in targets else ""
    print(f"generate {spec:9} batch {g['batch']:5} prefill {g['prefill_s']:6.2f} s, decode "
          f"{g['decode_s']:6.2f} s: {g['tokens_per_s']:9,.0f} tok/s total, "
          f"{g['decode_tokens_per_s']:9,.0f} tok/s decode{t}; cache {g['cache_gib']:.1f} GiB, "
          f"peak {g['peak_gib']:.1f} GiB {g['note']}")
EOF
echo "total ${SECONDS}s"
