source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run1_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run1_gpu.txt
# correctness of the one-consumer kernels (and the rest of the warp-specialised set)
RATC_TEST_GPUS=0 timeout 200 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_kernels_rat.py -k "ws" > $OUT/logs/run1_ws_tests.log 2>&1; tail -3 $OUT/logs/run1_ws_tests.log
# kernels alone: forward variants, then rat_bwd with dq variants
timeout 100 python3 docs/diag_session14/ws_forward.py --sizes 16384x16,131072x2 --ws "64,2,3,1;64,2,2,1;64,3,3,1;128,2,3,2" > $OUT/logs/run1_fwd.log 2>&1; grep -v Warn $OUT/logs/run1_fwd.log
timeout 120 python3 docs/diag_session14/ws_bwd.py --sizes 16384x16,131072x2 --variants '[{"DQ_WS":1,"DQ_WS_WG":1,"DQ_BC":64,"DQ_WS_KS":2,"DQ_WS_VS":2},{"DQ_WS":1,"DQ_WS_WG":1,"DQ_BC":64,"DQ_WS_KS":3,"DQ_WS_VS":2},{"DQ_WS":1,"DQ_WS_WG":2,"DQ_BC":64,"DQ_WS_KS":3,"DQ_WS_VS":2}]' > $OUT/logs/run1_bwd.log 2>&1; grep -v Warn $OUT/logs/run1_bwd.log
cd $OUT && tar czf logs.tgz logs
