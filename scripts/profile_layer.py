"""Where one generated layer spends its time on the GPU: torch.profiler over a few steps, CUDA
time per kernel, largest first.

    python3 scripts/profile_layer.py generated.rat_swa rat --seq 16384 --batch 16 --mode train

mode train: forward + backward of the block (the input and every parameter get gradients);
prefill: forward under no_grad. Prints the launch config the layer resolves for that mode and
shape, then a table of kernels (name, calls, total ms per step, share).
"""

import argparse
import importlib

import torch
from torch.profiler import ProfilerActivity, profile


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package", help="an importable generated package, e.g. generated.rat_swa")
    ap.add_argument("layer", help="a layer name of the spec, e.g. rat")
    ap.add_argument("--seq", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--mode", choices=("train", "prefill"), default="train")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()

    pkg = importlib.import_module(a.package)
    torch.manual_seed(0)
    block = pkg.MIXERS[a.layer](device="cuda", dtype=torch.bfloat16)
    h = torch.randn(a.batch, a.seq, block.d_model, device="cuda", dtype=torch.bfloat16,
                    requires_grad=a.mode == "train")
    dy = torch.randn_like(h)
    kern = block.kernels
    proj = torch.empty(a.batch, a.seq, kern.IN_FEATURES, device="cuda", dtype=torch.bfloat16,
                       requires_grad=a.mode == "train")
    if hasattr(kern, "_launch_config"):
        print(f"launch config ({a.mode}):", kern._launch_config(proj, None, mode=a.mode))

    def step():
        if a.mode == "train":
            block(h).backward(dy)
        else:
            with torch.no_grad():
                block(h)

    for _ in range(2):  # compile and warm up
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(a.steps):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    events.sort(key=lambda e: -e.device_time_total)
    total = sum(e.device_time_total for e in events)
    print(f"{a.package}.{a.layer} {a.mode} T={a.seq} B={a.batch} on "
          f"{torch.cuda.get_device_name()}: {total / a.steps / 1e3:.2f} ms of kernels per step")
    print(f"{'kernel':70} {'calls':>6} {'ms/step':>9} {'share':>6}")
    for e in events[:a.top]:
        print(f"{e.key[:70]:70} {e.count // a.steps:6d} "
              f"{e.device_time_total / a.steps / 1e3:9.3f} {100 * e.device_time_total / total:5.1f}%")


if __name__ == "__main__":
    main()
