source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run2_rev.txt
V='[{"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":2},{"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":3},{"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":4}]'
timeout 150 python3 docs/diag_session14/ws_bwd.py --sizes 131072x2 --variants "$V" > $OUT/logs/run2_ws_bwd.log 2>&1; cat $OUT/logs/run2_ws_bwd.log
timeout 150 python3 docs/diag_session14/ws_step.py --variant 'record={}' --variant 'dkv64q3={"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":3}' --variant 'dkv64q4={"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":4}' --sizes 131072x2 --rounds 4 > $OUT/logs/run2_ws_step.log 2>&1; grep median $OUT/logs/run2_ws_step.log
timeout 100 python3 docs/diag_session14/ws_step.py --variant 'record={}' --variant 'dkv64q4={"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":4}' --variant 'dkv64q3={"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":3}' --sizes 16384x16 --rounds 4 > $OUT/logs/run2_ws_step16k.log 2>&1; grep median $OUT/logs/run2_ws_step16k.log
RATC_TEST_GPUS=0 timeout 280 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_rms_norm.py tests/test_compile.py tests/test_decode.py tests/test_bench.py tests/test_kernels_rat.py "tests/test_grad_rat_rnn.py::test_gpu_rat_grad_medium" > $OUT/logs/run2_gpu_tests.log 2>&1; tail -3 $OUT/logs/run2_gpu_tests.log
cd $OUT && tar czf logs.tgz logs
