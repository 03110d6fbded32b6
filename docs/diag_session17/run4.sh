source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run4_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run4_gpu.txt
# the H200 train records now pipeline the scan backward's loop at 2 stages (1 warp): against 1 stage
timeout 110 python3 docs/diag_session14/ws_step.py --sizes 16384x16,131072x2 --rounds 3 --variant 'record={}' --variant 's1={"bwd_scan_num_stages":1}' > $OUT/logs/run4_step.log 2>&1; grep median $OUT/logs/run4_step.log
timeout 200 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run4_train.json > $OUT/logs/run4_train.log 2>&1; tail -14 $OUT/logs/run4_train.log
RATC_TEST_GPUS=0 timeout 230 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_rms_norm.py tests/test_compile.py tests/test_decode.py tests/test_bench.py tests/test_kernels_rat.py tests/test_grad_rat_rnn.py::test_gpu_rat_grad_medium > $OUT/logs/run4_gpu_tests.log 2>&1; tail -3 $OUT/logs/run4_gpu_tests.log
cd $OUT && tar czf logs.tgz logs
