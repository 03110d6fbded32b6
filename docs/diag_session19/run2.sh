source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run2_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run2_gpu.txt
export PYTHONPATH=$PWD/oldpkg:$PYTHONPATH
# dK/dV with P^T, dS^T as register operands (new) against 623966e (old, through shared memory)
timeout 150 python3 docs/diag_session18/ws_ab.py --packages old,new --sizes 16384x16,131072x2 --rounds 3 --step-rounds 0 > $OUT/logs/run2_ws_ab.log 2>&1; grep -v -i warn $OUT/logs/run2_ws_ab.log | grep "bwd\|Error\|error" | tail -20
#RATC_TEST_GPUS=0 timeout 200 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_rms_norm.py tests/test_compile.py tests/test_decode.py tests/test_bench.py tests/test_kernels_rat.py tests/test_grad_rat_rnn.py::test_gpu_rat_grad_medium > $OUT/logs/run2_gpu_tests.log 2>&1; tail -3 $OUT/logs/run2_gpu_tests.log
timeout 200 python3 docs/diag_session16/scan_ab.py --sizes 1000x3,16384x16,131072x2 --fwd-variants '[]' --bwd-variants '[]' --rounds 3 > $OUT/logs/run2_scan_ab.log 2>&1; grep -v -i warn $OUT/logs/run2_scan_ab.log
cd $OUT && tar czf logs.tgz logs
