source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run5_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run5_gpu.txt
# the final package against cd20701 (oldpkg): the scan kernels, the Triton dq and the step
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 150 python3 docs/diag_session16/scan_ab.py --sizes 1000x3,16384x16,131072x2 --fwd-variants '[]' --bwd-variants '[{}]' --rounds 3 > $OUT/logs/run5_scan_ab.log 2>&1; grep -v -i warn $OUT/logs/run5_scan_ab.log
RATC_TEST_GPUS=0 timeout 200 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_rms_norm.py tests/test_compile.py tests/test_decode.py tests/test_bench.py tests/test_kernels_rat.py tests/test_grad_rat_rnn.py::test_gpu_rat_grad_medium > $OUT/logs/run5_gpu_tests.log 2>&1; tail -3 $OUT/logs/run5_gpu_tests.log
timeout 230 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run5_train.json > $OUT/logs/run5_train.log 2>&1; tail -14 $OUT/logs/run5_train.log
cd $OUT && tar czf logs.tgz logs
