source scripts/gpu_env.sh > /dev/null 2>&1; mkdir -p $OUT/logs
cat REV > $OUT/logs/run7_rev.txt
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 130 python3 docs/diag_session18/prefill_ab.py > $OUT/logs/run7_prefill_ab.log 2>&1; grep -v -i warn $OUT/logs/run7_prefill_ab.log
cd $OUT && tar czf logs.tgz logs
