source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run5_rev.txt
RATC_TEST_GPUS=0 timeout 150 python3 -m pytest -q -n 14 -p no:cacheprovider -m gpu tests/test_kernels_rat.py -k ws > $OUT/logs/run5_ws_tests.log 2>&1; tail -2 $OUT/logs/run5_ws_tests.log
V='[{"DQ_WS":1,"DQ_BC":128,"DQ_WS_KS":2,"DQ_WS_VS":2},{"DQ_WS":1,"DQ_BC":64,"DQ_WS_KS":3,"DQ_WS_VS":3},{"DQ_WS":1,"DQ_BC":128,"DQ_WS_KS":2,"DQ_WS_VS":1}]'
echo "== old package (before dS through smem)" > $OUT/logs/run5_ws_bwd.log
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 100 python3 docs/diag_session14/ws_bwd.py --variants '[]' >> $OUT/logs/run5_ws_bwd.log 2>&1
echo "== new package" >> $OUT/logs/run5_ws_bwd.log
timeout 150 python3 docs/diag_session14/ws_bwd.py --variants "$V" >> $OUT/logs/run5_ws_bwd.log 2>&1
echo "== old package again" >> $OUT/logs/run5_ws_bwd.log
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 100 python3 docs/diag_session14/ws_bwd.py --variants '[]' >> $OUT/logs/run5_ws_bwd.log 2>&1
cat $OUT/logs/run5_ws_bwd.log
timeout 120 python3 docs/diag_session14/ws_step.py --variant 'record={}' --variant 'dq128={"DQ_WS":1,"DQ_BC":128,"DQ_WS_KS":2,"DQ_WS_VS":2}' --sizes 131072x2 --rounds 4 > $OUT/logs/run5_ws_step.log 2>&1; grep median $OUT/logs/run5_ws_step.log
timeout 100 python3 docs/diag_session14/ws_step.py --variant 'record={}' --variant 'dq128={"DQ_WS":1,"DQ_BC":128,"DQ_WS_KS":2,"DQ_WS_VS":2}' --sizes 16384x16 --rounds 4 > $OUT/logs/run5_ws_step16k.log 2>&1; grep median $OUT/logs/run5_ws_step16k.log
cd $OUT && tar czf logs.tgz logs
