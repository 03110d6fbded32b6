source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run2_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run2_gpu.txt
export PYTHONPATH=$PWD/oldpkg:$PYTHONPATH
# 7f3a416 (PTX exp2 and sigmoid, the scan backward's group dq turned once) against cd20701
timeout 200 python3 docs/diag_session16/scan_ab.py --sizes 1000x3,16384x16,131072x2 --fwd-variants '[{}]' --bwd-variants '[{}]' --rounds 3 > $OUT/logs/run2_scan_ab.log 2>&1; grep -v -i warn $OUT/logs/run2_scan_ab.log
for p in rat_swa_old rat_swa; do for s in "16384 16" "131072 2"; do set -- $s
timeout 60 python3 scripts/kernel_profile.py layer generated.$p rat --seq $1 --batch $2 --top 14 > $OUT/logs/run2_profile_${p}_$1.log 2>&1; grep -v -i warn $OUT/logs/run2_profile_${p}_$1.log | tail -16; done; done
RATC_TEST_GPUS=0 timeout 200 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_rms_norm.py tests/test_compile.py tests/test_decode.py tests/test_bench.py tests/test_kernels_rat.py tests/test_grad_rat_rnn.py::test_gpu_rat_grad_medium > $OUT/logs/run2_gpu_tests.log 2>&1; tail -3 $OUT/logs/run2_gpu_tests.log
RATC_TEST_GPUS=0 timeout 120 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_kernels_attention.py tests/test_grad_attention.py tests/test_kernels_rnn.py > $OUT/logs/run2_gpu_tests_attn_rnn.log 2>&1; tail -3 $OUT/logs/run2_gpu_tests_attn_rnn.log
cd $OUT && tar czf logs.tgz logs
