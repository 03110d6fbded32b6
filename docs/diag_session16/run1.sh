source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run1_rev.txt; nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.limit --format=csv > $OUT/logs/run1_gpu.txt
H1_131='{"BC":128,"BT":128,"BWD_BC":128,"BWD_BT":64,"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":3,"DQ_BC":64,"DQ_BT":128,"DQ_WS":1,"DQ_WS_KS":3,"DQ_WS_VS":2,"SCAN_BK":16,"SCAN_WARPS":2,"WS":1,"WS_KS":2,"WS_VS":3,"bwd_num_stages":3,"bwd_num_warps":8,"dq_num_stages":2,"dq_num_warps":8,"num_stages":2,"num_warps":4}'
H1_16='{"BC":32,"BT":64,"BWD_BC":128,"BWD_BT":64,"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":4,"DQ_BC":64,"DQ_BT":64,"SCAN_BK":16,"SCAN_WARPS":4,"bwd_num_stages":3,"bwd_num_warps":8,"dq_num_stages":2,"dq_num_warps":4,"num_stages":3,"num_warps":4}'
P1_131='{"BC":128,"BT":128,"SCAN_BK":16,"SCAN_WARPS":4,"WS":1,"WS_KS":2,"WS_VS":4,"num_stages":2,"num_warps":4}'
P1_16='{"BC":32,"BT":64,"SCAN_BK":8,"SCAN_WARPS":2,"num_stages":3,"num_warps":4}'
S=docs/diag_session14/ws_step.py
timeout 120 python3 -m pytest -q -n 8 -p no:cacheprovider -m gpu tests/test_kernels_rat.py -k ws > $OUT/logs/run1_ws_tests.log 2>&1; tail -2 $OUT/logs/run1_ws_tests.log
timeout 150 python3 $S --sizes 131072x2 --rounds 3 --rep 500 --variant 'h200={}' --variant "h100=$H1_131" > $OUT/logs/run1_train131k.log 2>&1; grep median $OUT/logs/run1_train131k.log
timeout 120 python3 $S --sizes 16384x16 --rounds 3 --rep 500 --variant 'h200={}' --variant "h100=$H1_16" --variant "h100_dqws=$(echo $H1_16 | sed 's/}$/,"DQ_WS":1,"DQ_WS_KS":3,"DQ_WS_VS":2,"DQ_BT":128}/')" > $OUT/logs/run1_train16k.log 2>&1; grep median $OUT/logs/run1_train16k.log
timeout 90 python3 $S --mode prefill --sizes 131072x2 --rounds 3 --rep 500 --variant 'h200={}' --variant "h100=$P1_131" > $OUT/logs/run1_prefill131k.log 2>&1; grep median $OUT/logs/run1_prefill131k.log
timeout 90 python3 $S --mode prefill --sizes 16384x16 --rounds 3 --rep 500 --variant 'h200={}' --variant "h100=$P1_16" > $OUT/logs/run1_prefill16k.log 2>&1; grep median $OUT/logs/run1_prefill16k.log
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1); echo ncu $NCU
timeout 150 $NCU --clock-control none -k regex:rat_scan --launch-skip 2 --launch-count 2 --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --section SchedulerStats python3 docs/diag_session16/one_step.py --size 16384x16 > $OUT/logs/run1_ncu_scan.log 2>&1; grep -E "rat_scan|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Theoretical Occ|Stall|Warp Cycles Per Issued" $OUT/logs/run1_ncu_scan.log | head -40
cd $OUT && tar czf logs.tgz logs
