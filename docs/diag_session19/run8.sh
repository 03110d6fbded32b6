source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run8_rev.txt
# the final commit (the template re-wrapped, records re-keyed): the RAT kernel tests compiled
RATC_TEST_GPUS=0 timeout 150 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_kernels_rat.py tests/test_grad_rat_rnn.py::test_gpu_rat_grad_medium tests/test_bench.py > $OUT/logs/run8_gpu_tests.log 2>&1; tail -3 $OUT/logs/run8_gpu_tests.log
cd $OUT && tar czf logs.tgz logs
