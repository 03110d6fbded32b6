source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run3_rev.txt
export PYTHONPATH=$PWD/oldpkg:$PYTHONPATH
timeout 420 python3 docs/diag_session16/scan_ab.py > $OUT/logs/run3_scan_ab.log 2>&1; grep -v Warn $OUT/logs/run3_scan_ab.log | grep -v warn_once
cd $OUT && tar czf logs.tgz logs
