source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run6_rev.txt
V=$(python3 -c 'import json,itertools;print(json.dumps([dict(BWD_SCAN_BK=b,bwd_scan_num_warps=w) for b,w in itertools.product((1,2,4),(1,2,4,8)) if (b,w)!=(1,4)]))')
timeout 200 python3 docs/diag_session14/ws_bwd.py --variants "$V" > $OUT/logs/run6_scan_bwd.log 2>&1; cat $OUT/logs/run6_scan_bwd.log
for size in 16384x16 131072x2; do
  T=${size%x*}
  BEST=$(python3 - "$T" $OUT/logs/run6_scan_bwd.log <<'PY'
import sys, re, ast
T, log = sys.argv[1], open(sys.argv[2]).read().split("T=")
block = [b for b in log if b.startswith(T + " ")][0]
rows = [(float(m.group(2)), m.group(1)) for m in re.finditer(r"  (\{.*?\}): ([\d.]+) ms", block)]
print(min(rows)[1].replace("'", '"'))
PY
)
  echo "$size best $BEST"
  timeout 150 python3 docs/diag_session14/ws_step.py --variant 'record={}' --variant "scan=$BEST" --sizes $size --rounds 4 > $OUT/logs/run6_step_$size.log 2>&1; grep median $OUT/logs/run6_step_$size.log
done
cd $OUT && tar czf logs.tgz logs
