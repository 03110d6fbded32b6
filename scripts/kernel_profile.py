"""Where generated code spends its time on the GPU: torch.profiler over a few steps, CUDA time per
kernel, largest first.

    python3 scripts/kernel_profile.py layer generated.rat_swa rat --seq 16384 --batch 16 --mode train
    python3 scripts/kernel_profile.py decode generated.rat --batch 1368 --pos 3584 --capacity 4096
    python3 scripts/kernel_profile.py prefill generated.rat --batch 21 --seq 3072 --capacity 4096

layer: one block, --mode train (forward + backward; the input and every parameter get gradients)
or prefill (forward under no_grad); prints the launch config the layer resolves first.
decode: Model.decode (one token per row, eager) on a cache whose rows all sit at --pos (contents
zero: the time does not depend on them). prefill: Model.prefill with logits="last", the prompt
step of generation. Random-init bf16 weights throughout.
"""

import argparse
import importlib

import torch
from torch.profiler import ProfilerActivity, profile


def kernel_table(step, steps, title, top):
    """Profile `steps` calls of step() after two warm-up calls; print CUDA time per kernel."""
    for _ in range(2):  # compile and warm up
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    events.sort(key=lambda e: -e.device_time_total)
    total = sum(e.device_time_total for e in events)
    print(f"{title} on {torch.cuda.get_device_name()}: {total / steps / 1e3:.3f} ms of kernels "
          f"per step")
    print(f"{'kernel':70} {'calls':>6} {'ms/step':>9} {'share':>6}")
    for e in events[:top]:
        print(f"{e.key[:70]:70} {e.count // steps:6d} {e.device_time_total / steps / 1e3:9.3f} "
              f"{100 * e.device_time_total / total:5.1f}%")


def layer(a, pkg):
    block = pkg.MIXERS[a.layer](device="cuda", dtype=torch.bfloat16)
    train = a.mode == "train"
    h = torch.randn(a.batch, a.seq, block.d_model, device="cuda", dtype=torch.bfloat16,
                    requires_grad=train)
    dy = torch.randn_like(h)
    kern = block.kernels
    if hasattr(kern, "_launch_config"):
        proj = torch.empty(a.batch, a.seq, kern.IN_FEATURES, device="cuda", dtype=torch.bfloat16,
                           requires_grad=train)
        print(f"launch config ({a.mode}):", kern._launch_config(proj, None, mode=a.mode))

    def step():
        if train:
            for t in (h, *block.parameters()):  # as ratc bench: no accumulation into old grads
                t.grad = None
            block(h).backward(dy)
        else:
            with torch.no_grad():
                block(h)

    kernel_table(step, a.steps, f"{a.package}.{a.layer} {a.mode} T={a.seq} B={a.batch}", a.top)


def decode(a, pkg):
    model = pkg.Model(device="cuda", dtype=torch.bfloat16).eval()
    cache = model.init_cache(a.batch, a.capacity)
    tokens = torch.randint(0, model.head.lm_head.weight.shape[0], (a.batch,), device="cuda")

    def step():
        cache.pos.fill_(a.pos)
        model.decode(tokens, cache)

    kernel_table(step, a.steps, f"{a.package} decode B={a.batch} at {a.pos} of {a.capacity}",
                 a.top)


def prefill(a, pkg):
    model = pkg.Model(device="cuda", dtype=torch.bfloat16).eval()
    ids = torch.randint(0, model.head.lm_head.weight.shape[0], (a.batch, a.seq), device="cuda")
    kernel_table(lambda: model.prefill(ids, capacity=a.capacity, logits="last"), a.steps,
                 f"{a.package} prefill B={a.batch} T={a.seq}", a.top)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("layer", "decode", "prefill"))
    ap.add_argument("package", help="an importable generated package, e.g. generated.rat_swa")
    ap.add_argument("layer", nargs="?", help="layer: a layer name of the spec, e.g. rat")
    ap.add_argument("--seq", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--mode", choices=("train", "prefill"), default="train")
    ap.add_argument("--pos", type=int, default=3584)
    ap.add_argument("--capacity", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    if a.what == "layer" and not a.layer:
        ap.error("layer needs a layer name")
    torch.manual_seed(0)
    pkg = importlib.import_module(a.package)
    {"layer": layer, "decode": decode, "prefill": prefill}[a.what](a, pkg)


if __name__ == "__main__":
    main()
