source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run3_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run3_gpu.txt
# rat_bwd with the scan backward's token loop software-pipelined (bwd_scan_num_stages), per warps
V='[{"bwd_scan_num_warps":4,"bwd_scan_num_stages":1}'
for ws in 1,2 2,2 4,2 4,3 8,2 8,3 4,4; do V="$V,{\"bwd_scan_num_warps\":${ws%,*},\"bwd_scan_num_stages\":${ws#*,}}"; done
V="$V]"
timeout 150 python3 docs/diag_session14/ws_bwd.py --sizes 16384x16,131072x2 --variants "$V" > $OUT/logs/run3_bwd.log 2>&1; grep -v Warn $OUT/logs/run3_bwd.log
timeout 200 python3 docs/diag_session14/ws_step.py --sizes 16384x16,131072x2 --rounds 3 --variant 'record={}' --variant 'w4s2={"bwd_scan_num_warps":4,"bwd_scan_num_stages":2}' --variant 'w8s2={"bwd_scan_num_warps":8,"bwd_scan_num_stages":2}' --variant 'w4s3={"bwd_scan_num_warps":4,"bwd_scan_num_stages":3}' > $OUT/logs/run3_step.log 2>&1; grep median $OUT/logs/run3_step.log
RATC_TEST_GPUS=0 timeout 200 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_grad_rat_rnn.py > $OUT/logs/run3_grad_tests.log 2>&1; tail -2 $OUT/logs/run3_grad_tests.log
cd $OUT && tar czf logs.tgz logs
