source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run4_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run4_gpu.txt
# dK/dV (register operands) stage and query-block variants over the train records
timeout 200 python3 docs/diag_session18/ws_ab.py --packages new --sizes 16384x16,131072x2 --rounds 3 --step-rounds 0 --variants '[{"BWD_WS_QS": 2}, {"BWD_WS_QS": 3}, {"BWD_WS_QS": 4}, {"BWD_WS_BT": 32, "BWD_WS_QS": 4}]' > $OUT/logs/run4_ws_ab.log 2>&1; grep -v -i warn $OUT/logs/run4_ws_ab.log | grep "dkv\|Error\|error" | tail -20
timeout 380 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run4_train.json > $OUT/logs/run4_train.log 2>&1; grep -v -i warn $OUT/logs/run4_train.log | tail -14
cd $OUT && tar czf logs.tgz logs
