source scripts/gpu_env.sh; mkdir -p $OUT/logs
cat REV > $OUT/logs/run6_rev.txt
nvidia-smi --query-gpu=name,clocks.sm,power.limit --format=csv > $OUT/logs/run6_gpu.txt
timeout 380 python3 -m ratc bench specs/rat_swa.yaml --layer rat --mode train --seq 16384,131072 --batch 16,2 --rep 1000 --json $OUT/logs/run6_train.json > $OUT/logs/run6_train.log 2>&1; grep -v -i warn $OUT/logs/run6_train.log | tail -12
cd $OUT && tar czf logs.tgz logs
