source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run4_rev.txt
timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider -m gpu tests/test_kernels_rat.py -k ws > $OUT/logs/run4_ws_tests.log 2>&1; tail -2 $OUT/logs/run4_ws_tests.log
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 300 python3 docs/diag_session16/scan_ab.py --fwd-variants '[{}]' --bwd-variants '[{}, {"bwd_scan_num_warps": 1}]' > $OUT/logs/run4_scan_ab.log 2>&1; grep -v -i warn $OUT/logs/run4_scan_ab.log
timeout 150 python3 docs/diag_session14/ws_step.py --sizes 16384x16,131072x2 --rounds 3 --rep 500 --variant 'record={}' --variant 'scan1={"bwd_scan_num_warps": 1}' > $OUT/logs/run4_ws_step.log 2>&1; grep median $OUT/logs/run4_ws_step.log
cd $OUT && tar czf logs.tgz logs
