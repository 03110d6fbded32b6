source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run7_rev.txt
timeout 300 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 3000 --json $OUT/logs/run7_train.json > $OUT/logs/run7_train.log 2>&1; tail -12 $OUT/logs/run7_train.log
timeout 100 python3 scripts/kernel_profile.py layer generated.rat_swa rat --seq 131072 --batch 2 --mode train > $OUT/logs/run7_profile131k.log 2>&1; grep -v Warn $OUT/logs/run7_profile131k.log | head -24
cd $OUT && tar czf logs.tgz logs
