source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run3_rev.txt
timeout 330 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run3_train.json > $OUT/logs/run3_train.log 2>&1; tail -12 $OUT/logs/run3_train.log
timeout 120 python3 scripts/kernel_profile.py layer generated.rat_swa rat --seq 16384 --batch 16 --mode train > $OUT/logs/run3_profile16k.log 2>&1; head -40 $OUT/logs/run3_profile16k.log
cd $OUT && tar czf logs.tgz logs
