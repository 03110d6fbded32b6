source scripts/gpu_env.sh; mkdir -p $OUT/logs
git_rev=$(cat REV); echo $git_rev > $OUT/logs/run1_rev.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/logs/run1_gpu.txt
RATC_TEST_GPUS=0 timeout 200 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_kernels_rat.py -k ws > $OUT/logs/run1_ws_tests.log 2>&1; tail -3 $OUT/logs/run1_ws_tests.log
V='[{"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":2},{"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":3},{"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":4},{"BWD_WS":1,"BWD_WS_BT":32,"BWD_WS_QS":3},{"BWD_WS":1,"BWD_WS_BT":32,"BWD_WS_QS":4}]'
timeout 200 python3 docs/diag_session14/ws_bwd.py --variants "$V" > $OUT/logs/run1_ws_bwd.log 2>&1; cat $OUT/logs/run1_ws_bwd.log
timeout 150 python3 docs/diag_session14/ws_step.py --variant 'record={}' --variant 'dkv64q3={"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":3}' --variant 'dkv64q2={"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":2}' --sizes 131072x2 --rounds 4 > $OUT/logs/run1_ws_step.log 2>&1; grep median $OUT/logs/run1_ws_step.log
cd $OUT && tar czf logs.tgz logs
