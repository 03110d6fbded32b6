source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run4_rev.txt
timeout 330 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run4_train.json > $OUT/logs/run4_train.log 2>&1; tail -12 $OUT/logs/run4_train.log
timeout 200 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode prefill --seq 16384,131072 --batch 16,2 --rep 200 --json $OUT/logs/run4_prefill.json > $OUT/logs/run4_prefill.log 2>&1; tail -12 $OUT/logs/run4_prefill.log
cd $OUT && tar czf logs.tgz logs
