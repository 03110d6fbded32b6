"""Session 9: where a RAT train step's GPU timeline sits idle. `ratc bench --mode train` at
16384 x 16 read 65.2 ms while the step's kernels summed to 62.9 ms (kernel_profile.py); this
profiles a few steps as the bench runs them (grads set to None first), and prints per step the
span from the first kernel's start to the last one's end, the kernels' busy time, the largest idle
gaps with the kernels around them, and the CUDA runtime calls the host made (a cudaMalloc,
cudaFree or synchronize inside a step stalls the queue).

    python3 docs/diag_session9/gaps.py [--seq 16384 --batch 16 --steps 3]
"""
import argparse
import collections
import importlib
import json
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

ap = argparse.ArgumentParser()
ap.add_argument("--seq", type=int, default=16384)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--steps", type=int, default=3)
a = ap.parse_args()

pkg = importlib.import_module("generated.rat_swa")
block = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
h = torch.randn(a.batch, a.seq, block.d_model, device="cuda", dtype=torch.bfloat16,
                requires_grad=True)
dy = torch.randn_like(h)
grads = [h, *block.parameters()]


def step():
    for t in grads:
        t.grad = None
    block(h).backward(dy)


for _ in range(3):
    step()
torch.cuda.synchronize()
marks = []
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for _ in range(a.steps):
        with torch.profiler.record_function("STEP"):
            step()
        torch.cuda.synchronize()
path = tempfile.mktemp(suffix=".json")
prof.export_chrome_trace(path)
events = json.load(open(path))["traceEvents"]
kernels = sorted((e for e in events if e.get("ph") == "X" and e.get("cat") in
                  ("kernel", "gpu_memset", "gpu_memcpy")), key=lambda e: e["ts"])
steps = sorted((e for e in events if e.get("ph") == "X" and e.get("name") == "STEP"
                and e.get("cat") == "user_annotation"), key=lambda e: e["ts"])
runtime = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cuda_runtime"]
print(torch.cuda.get_device_name(), f"T={a.seq} B={a.batch}")
for i, s in enumerate(steps):
    t0 = s["ts"]
    t1 = steps[i + 1]["ts"] if i + 1 < len(steps) else float("inf")
    ks = [k for k in kernels if t0 <= k["ts"] < t1]
    if not ks:
        continue
    span = ks[-1]["ts"] + ks[-1]["dur"] - ks[0]["ts"]
    busy = sum(k["dur"] for k in ks)
    print(f"step {i}: span {span / 1e3:.3f} ms, kernels busy {busy / 1e3:.3f} ms, "
          f"idle {(span - busy) / 1e3:.3f} ms, {len(ks)} kernels; host step "
          f"{s['dur'] / 1e3:.3f} ms")
    gaps = sorted(((b["ts"] - (p["ts"] + p["dur"]), p["name"][:40], b["name"][:40])
                   for p, b in zip(ks, ks[1:])), reverse=True)[:6]
    for g, p, b in gaps:
        print(f"    gap {g / 1e3:7.3f} ms  after {p:40s} before {b}")
    calls = collections.Counter()
    for r in runtime:
        if t0 <= r["ts"] < t1:
            calls[r["name"]] += r["dur"]
    print("    host CUDA runtime (ms):", ", ".join(f"{n} {d / 1e3:.3f}"
                                                  for n, d in calls.most_common(8)))
