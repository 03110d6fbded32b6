source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run4_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run4_gpu.txt
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 200 python3 docs/diag_session18/rms_ab.py > $OUT/logs/run4_rms_ab.log 2>&1; grep -v -i warn $OUT/logs/run4_rms_ab.log
cd $OUT && tar czf logs.tgz logs
