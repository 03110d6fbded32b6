source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run5_rev.txt
# a staged tune of the RAT train step at 16384 x 16 on this H200 (from the record), then the step
# A/B of its record against the one before (full config as a variant)
timeout 230 python3 -m ratc tune specs/rat_swa.yaml --layer rat --mode train --seq 16384 --batch 16 --staged --jobs 14 --timeout 200 > $OUT/logs/run5_tune.log 2>&1; tail -25 $OUT/logs/run5_tune.log
cp autotune/NVIDIA_H200.json $OUT/logs/run5_NVIDIA_H200.json
python3 -m ratc build specs/rat_swa.yaml > /dev/null
timeout 90 python3 docs/diag_session14/ws_step.py --sizes 16384x16 --rounds 3 --variant 'tuned={}' --variant 'before={"SCAN_BK":16,"SCAN_WARPS":4,"BT":64,"BC":32,"num_warps":4,"num_stages":3,"fp32_dot":"ieee","WS":0,"WS_KS":2,"WS_VS":3,"BWD_BT":64,"BWD_BC":128,"bwd_num_warps":8,"bwd_num_stages":3,"DQ_BT":64,"DQ_BC":64,"dq_num_warps":4,"dq_num_stages":2,"BWD_SCAN_BK":1,"bwd_scan_num_warps":1,"bwd_scan_num_stages":2,"DQ_WS":0,"DQ_WS_KS":2,"DQ_WS_VS":2,"BWD_WS":1,"BWD_WS_BT":64,"BWD_WS_QS":4}' > $OUT/logs/run5_step.log 2>&1; grep median $OUT/logs/run5_step.log
cd $OUT && tar czf logs.tgz logs
