"""Session 14: the RAT block's train step as `ratc bench --mode train` times it (grads None,
layer(h).backward(dy), do_bench median), with the train record at each size patched per
variant, in alternating rounds: the A/B of the warp-specialised kernels inside the step.
Session 16 added `--mode prefill`: one forward under no_grad, as `ratc bench --mode prefill`.

    python3 docs/diag_session14/ws_step.py --variant 'triton={"WS": 0, "BC": 64}' \
        --variant 'record={}' [--sizes 131072x2] [--rounds 4] [--mode train|prefill]

A variant is name=JSON, the keys laid over the record (the package's TUNED table, this device,
the mode, the size's bucket) for its rounds.
"""
import argparse
import json
import statistics

import torch
from triton.testing import do_bench

import generated.rat_swa as pkg
from generated.rat_swa.kernels import rat_rat

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="131072x2")
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--rep", type=int, default=1000)
ap.add_argument("--variant", action="append", required=True)
ap.add_argument("--mode", choices=("train", "prefill"), default="train")
a = ap.parse_args()
name = torch.cuda.get_device_name()
print(name, flush=True)
variants = dict(v.split("=", 1) for v in a.variant)
for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    table = rat_rat.TUNED[name][a.mode]
    bucket = rat_rat._nearest_bucket(table, T, B)
    record = dict(table[bucket])
    torch.manual_seed(0)
    layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
    h = torch.randn(B, T, layer.d_model, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn_like(h)
    params = [h, *layer.parameters()]

    def step():
        if a.mode == "prefill":
            with torch.no_grad():
                return layer(h)
        for p in params:
            p.grad = None
        layer(h).backward(dy)

    times = {v: [] for v in variants}
    for i in range(a.rounds):
        for v in (list(variants) if i % 2 == 0 else list(variants)[::-1]):
            table[bucket] = record | json.loads(variants[v])
            ms = do_bench(step, warmup=25, rep=a.rep, return_mode="median")
            times[v].append(ms)
            print(f"T={T} B={B} ({bucket}) round {i} {v}: {ms:.2f} ms", flush=True)
    table[bucket] = record
    for v, ts in times.items():
        print(f"T={T} B={B} median {v} {variants[v]}: {statistics.median(ts):.2f} ms "
              f"(rounds {', '.join(f'{t:.2f}' for t in ts)})", flush=True)
    torch.cuda.empty_cache()
