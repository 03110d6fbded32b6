source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run1_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run1_gpu.txt
# prototype (generated/rat_swa edited by hand, not from the templates): the gates' sigmoid as
# ex2.approx.ftz + rcp.approx.ftz; the scan backward rotates dq^ after the group's sum and drops
# two redundant selects; against the package at HEAD (oldpkg/generated/rat_swa_old)
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 420 python3 docs/diag_session16/scan_ab.py --sizes 1000x3,16384x16,131072x2 --fwd-variants '[{}, {"SCAN_WARPS": 2}]' --bwd-variants '[{}, {"bwd_scan_num_warps": 2}, {"bwd_scan_num_stages": 1}]' --rounds 3 > $OUT/logs/run1_scan_ab.log 2>&1; grep -v -i warn $OUT/logs/run1_scan_ab.log
cd $OUT && tar czf logs.tgz logs
