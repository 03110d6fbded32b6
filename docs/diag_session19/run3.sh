source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run3_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run3_gpu.txt
export PYTHONPATH=$PWD/oldpkg:$PYTHONPATH
# old 623966e; mid b183fb4 (dK/dV register operands); new: also q^ as the forward's and dq's
# register operand; doreg: new plus do as dq's register operand (hand-edited)
timeout 300 python3 docs/diag_session18/ws_ab.py --packages old,mid,doreg,new --sizes 16384x16,131072x2 --rounds 3 --step-rounds 3 > $OUT/logs/run3_ws_ab.log 2>&1; grep -v -i warn $OUT/logs/run3_ws_ab.log | grep "T=\|Error\|error" | tail -40
RATC_TEST_GPUS=0 timeout 200 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_kernels_rat.py > $OUT/logs/run3_gpu_tests.log 2>&1; tail -3 $OUT/logs/run3_gpu_tests.log
timeout 120 python3 docs/diag_session16/scan_ab.py --sizes 1000x3,16384x16,131072x2 --fwd-variants '[]' --bwd-variants '[]' --rounds 0 > $OUT/logs/run3_scan_ab.log 2>&1; grep -v -i warn $OUT/logs/run3_scan_ab.log | grep -v "step"
cd $OUT && tar czf logs.tgz logs
