source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run6_rev.txt
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 170 python3 docs/diag_session18/swa_ab.py > $OUT/logs/run6_swa_ab.log 2>&1; grep -v -i warn $OUT/logs/run6_swa_ab.log
cd $OUT && tar czf logs.tgz logs
