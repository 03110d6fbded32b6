source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run7_rev.txt
export PYTHONPATH=$PWD/oldpkg:$PYTHONPATH
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1); echo ncu $NCU
# the attention kernels' speed of light (with its breakdown: shared-memory banks, tensor pipes)
# in one train step at 16384 x 16, old (623966e) and new dK/dV; the Triton forward and dq too
for p in rat_swa_old rat_swa; do
timeout 110 $NCU --clock-control none -k regex:"rat_attn_(fwd_kernel|bwd_dq_kernel|bwd_dkv_ws)" --launch-skip 4 --launch-count 4 --section SpeedOfLight --print-details all python3 docs/diag_session16/one_step.py --package generated.$p --size 16384x16 > $OUT/logs/run7_ncu_$p.log 2>&1
grep -E "rat_attn_|Duration|Memory Throughput|Compute \(SM\)|bank_reads|bank_writes|mem_shared|gmma|tensor" $OUT/logs/run7_ncu_$p.log | head -60; done
cd $OUT && tar czf logs.tgz logs
