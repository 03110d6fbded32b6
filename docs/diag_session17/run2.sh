source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run2_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run2_gpu.txt
# rat_bwd with the scan backward's channels split over BWD_SCAN_DS programs (errors against the record: expect 0)
timeout 150 python3 docs/diag_session14/ws_bwd.py --sizes 16384x16,131072x2 --variants '[{"BWD_SCAN_DS":1,"bwd_scan_num_warps":4},{"BWD_SCAN_DS":2,"bwd_scan_num_warps":1},{"BWD_SCAN_DS":4,"bwd_scan_num_warps":1},{"BWD_SCAN_DS":2,"bwd_scan_num_warps":2},{"BWD_SCAN_DS":4,"bwd_scan_num_warps":2},{"BWD_SCAN_DS":2,"bwd_scan_num_warps":4}]' > $OUT/logs/run2_bwd.log 2>&1; grep -v Warn $OUT/logs/run2_bwd.log
# the step, alternating rounds
timeout 200 python3 docs/diag_session14/ws_step.py --sizes 16384x16,131072x2 --rounds 3 --variant 'record={}' --variant 'ds2w1={"BWD_SCAN_DS":2,"bwd_scan_num_warps":1}' --variant 'ds4w1={"BWD_SCAN_DS":4,"bwd_scan_num_warps":1}' > $OUT/logs/run2_step.log 2>&1; grep median $OUT/logs/run2_step.log
RATC_TEST_GPUS=0 timeout 150 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_grad_rat_rnn.py > $OUT/logs/run2_grad_tests.log 2>&1; tail -2 $OUT/logs/run2_grad_tests.log
cd $OUT && tar czf logs.tgz logs
