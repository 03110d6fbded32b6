source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run5_rev.txt
timeout 190 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run5_train.json > $OUT/logs/run5_train.log 2>&1; tail -14 $OUT/logs/run5_train.log
RATC_TEST_GPUS=0 timeout 220 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_rms_norm.py tests/test_compile.py tests/test_decode.py tests/test_bench.py tests/test_kernels_rat.py "tests/test_grad_rat_rnn.py::test_gpu_rat_grad_medium" > $OUT/logs/run5_gpu_tests.log 2>&1; tail -3 $OUT/logs/run5_gpu_tests.log
timeout 90 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode prefill --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run5_prefill.json > $OUT/logs/run5_prefill.log 2>&1; tail -12 $OUT/logs/run5_prefill.log
timeout 50 python3 scripts/kernel_profile.py layer generated.rat_swa rat --seq 16384 --batch 16 --mode train > $OUT/logs/run5_profile16k.log 2>&1; grep -v -i warn $OUT/logs/run5_profile16k.log | head -20
cd $OUT && tar czf logs.tgz logs
