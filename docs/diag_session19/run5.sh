source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run5_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run5_gpu.txt
timeout 380 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run5_train.json > $OUT/logs/run5_train.log 2>&1; grep -v -i warn $OUT/logs/run5_train.log | tail -12
for s in "16384 16" "131072 2"; do set -- $s
timeout 60 python3 scripts/kernel_profile.py layer generated.rat_swa rat --seq $1 --batch $2 --top 14 > $OUT/logs/run5_profile_$1.log 2>&1; grep -v -i warn $OUT/logs/run5_profile_$1.log | tail -16; done
cd $OUT && tar czf logs.tgz logs
