"""Session 11: where the RAT train step's bench time goes beyond its kernels' sum. One layer as
`ratc bench --mode train` runs it (bf16, grads set to None, fn(h).backward(dy)); torch.profiler
traces a few steps with CPU and CUDA activity; per step: wall span from the first kernel's start
to the last's end, the kernels' sum, the idle gaps on the GPU (largest first, with the kernels
either side), and each kernel's time.

    python3 step_trace.py [--seq 16384 --batch 16] [--out trace.json]
"""
import argparse
import json
import tempfile
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

import generated.rat_swa as pkg

ap = argparse.ArgumentParser()
ap.add_argument("--seq", type=int, default=16384)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--out")
a = ap.parse_args()

torch.manual_seed(0)
layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
h = torch.randn(a.batch, a.seq, layer.d_model, device="cuda", dtype=torch.bfloat16,
                requires_grad=True)
dy = torch.randn_like(h)
grads = [h, *layer.parameters()]


def step():
    for t in grads:
        t.grad = None
    layer(h).backward(dy)


for _ in range(3):
    step()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for i in range(a.steps):
        torch.cuda.synchronize()
        with torch.profiler.record_function(f"step{i}"):
            step()
        torch.cuda.synchronize()
path = a.out or tempfile.mktemp(suffix=".json")
prof.export_chrome_trace(path)
events = json.load(open(path))["traceEvents"]
gpu = sorted((e for e in events if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")),
             key=lambda e: e["ts"])
steps = sorted((e for e in events if e.get("name", "").startswith("step")
                and e.get("cat") == "user_annotation"), key=lambda e: e["ts"])
print(torch.cuda.get_device_name(), f"T={a.seq} B={a.batch}")
ends = [s["ts"] for s in steps[1:]] + [float("inf")]  # a step's kernels end before the next's
for s, end in zip(steps, ends):
    ks = [e for e in gpu if s["ts"] <= e["ts"] < end]
    span = ks[-1]["ts"] + ks[-1]["dur"] - ks[0]["ts"]
    busy = sum(e["dur"] for e in ks)
    gaps = sorted(((b["ts"] - (p["ts"] + p["dur"]), p["name"][:40], b["name"][:40])
                   for p, b in zip(ks, ks[1:])), reverse=True)
    print(f"{s['name']}: CPU {s['dur'] / 1e3:.3f} ms, GPU span {span / 1e3:.3f} ms, kernels "
          f"{busy / 1e3:.3f} ms ({len(ks)}), idle {(span - busy) / 1e3:.3f} ms; "
          f"first kernel {(ks[0]['ts'] - s['ts']) / 1e3:.3f} ms after the step began")
    for g, p, b in gaps[:6]:
        print(f"    gap {g / 1e3:.3f} ms  after {p}  before {b}")
by = defaultdict(float)
for e in gpu:
    if e["ts"] >= steps[-1]["ts"]:
        by[e["name"][:70]] += e["dur"]
print("last step's kernels:")
for name, us in sorted(by.items(), key=lambda x: -x[1]):
    print(f"  {us / 1e3:8.3f} ms  {name}")
