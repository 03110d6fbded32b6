"""Session 16: one RAT block train step (or prefill forward) at a size, after one warm-up, for a
profiler that wraps the process (ncu --launch-skip skips the warm-up's kernels).

    ncu ... python3 docs/diag_session16/one_step.py --size 16384x16 [--mode prefill]
        [--package generated.rat_swa_old]
"""
import argparse
import importlib

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--size", default="16384x16")
ap.add_argument("--mode", choices=("train", "prefill"), default="train")
ap.add_argument("--package", default="generated.rat_swa", help="(session 19) another package")
a = ap.parse_args()
pkg = importlib.import_module(a.package)
T, B = map(int, a.size.split("x"))
torch.manual_seed(0)
layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
h = torch.randn(B, T, layer.d_model, device="cuda", dtype=torch.bfloat16,
                requires_grad=a.mode == "train")
dy = torch.randn_like(h)
for _ in range(2):
    if a.mode == "prefill":
        with torch.no_grad():
            layer(h)
    else:
        layer(h).backward(dy)
torch.cuda.synchronize()
print(torch.cuda.get_device_name(), a.mode, T, B, "done")
