source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run3_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run3_gpu.txt
# old (cd20701) / mid (this session's templates, the Gluon kernels' exp2 as before) / new
PYTHONPATH=$PWD/oldpkg:$PYTHONPATH timeout 260 python3 docs/diag_session18/ws_ab.py > $OUT/logs/run3_ws_ab.log 2>&1; grep -v -i warn $OUT/logs/run3_ws_ab.log
timeout 230 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run3_train.json > $OUT/logs/run3_train.log 2>&1; tail -14 $OUT/logs/run3_train.log
cd $OUT && tar czf logs.tgz logs
