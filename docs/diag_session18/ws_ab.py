"""Session 18: the RAT kernels of three packages in one process: old (generated.rat_swa_old, the
package before this session), mid (generated.rat_swa_mid: this session's templates with the
Gluon kernels' exp2 as before) and new (generated.rat_swa), both of the first on PYTHONPATH.

    PYTHONPATH=oldpkg:$PYTHONPATH python3 docs/diag_session18/ws_ab.py [--sizes 131072x2]

Every package runs the new package's records (mid's own signature has none: its TUNED is set to
new's). --packages picks which of the three (session 19: old,new); --variants adds launch configs
over the train record, timed as more packages (kernels only). Per size: each RAT kernel's device time (torch.profiler, mean of --iters launches) in
rat_fwd (train and prefill) and rat_bwd, packages in rotating order over --rounds rounds, medians
printed; then the block's train step per package (do_bench medians, rotating order).
"""
import argparse
import importlib
import json
import statistics
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile
from triton.testing import do_bench

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="16384x16,131072x2")
ap.add_argument("--iters", type=int, default=20)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--step-rounds", type=int, default=3, help="0: kernels only")
ap.add_argument("--packages", default="old,mid,new", help="of old, mid, new (session 19: old,new)")
ap.add_argument("--variants", default="[]", help="JSON list of launch configs over the train "
                "record, each timed as one more package: new's kernels (session 19)")
a = ap.parse_args()
PKGS = {p: importlib.import_module("generated.rat_swa" + ("" if p == "new" else f"_{p}"))
        for p in a.packages.split(",")}
KERNELS = {p: importlib.import_module(f"{pkg.__name__}.kernels.rat_rat")
           for p, pkg in PKGS.items()}
for p in KERNELS:
    KERNELS[p].TUNED = KERNELS["new"].TUNED
print(torch.cuda.get_device_name(), flush=True)


def kernel_times(fn):
    """{kernel: mean device ms per call of fn}."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(a.iters):
            fn()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / a.iters / 1e3 for e in prof.key_averages()
            if e.key.startswith("rat_")}


for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    new = KERNELS["new"]
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, new.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(new.D, device="cuda", generator=g)
    recs = {m: new._launch_config(proj, mode=m) for m in ("train", "prefill")}
    times = defaultdict(list)
    runs = {n: (KERNELS[n], {}) for n in PKGS}
    runs.update({f"new {json.dumps(v)}": (KERNELS["new"], v) for v in json.loads(a.variants)})
    names = list(runs)
    for r in range(a.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            mod, v = runs[name]
            lse = torch.empty(B, new.H, T, device="cuda")
            for mode in ("prefill", "train"):
                for k, ms in kernel_times(lambda: mod.rat_fwd(proj, bias, config=recs[mode] | v,
                                                              lse=lse, mode=mode,
                                                              keep=mode == "train")).items():
                    times[(name, f"fwd {mode}", k)].append(ms)
            y, scan = mod.rat_fwd(proj, bias, config=recs["train"] | v, lse=lse, mode="train",
                                  keep=True)
            dy = torch.randn(y.shape, device="cuda", dtype=y.dtype,
                             generator=torch.Generator(device="cuda").manual_seed(1))
            for k, ms in kernel_times(lambda: mod.rat_bwd(proj, bias, y, lse, dy,
                                                          config=recs["train"] | v, mode="train",
                                                          scan=scan)).items():
                times[(name, "bwd", k)].append(ms)
            del y, scan, dy, lse
    for key in sorted({k[1:] for k in times}):
        row = "  ".join(f"{n} {statistics.median(times[(n, *key)]):.3f}" for n in names
                        if (n, *key) in times)
        print(f"T={T} B={B} {key[0]:12s} {key[1]:28s} {row}", flush=True)
    names = list(PKGS)
    del proj
    torch.cuda.empty_cache()
    if not a.step_rounds:
        continue
    steps = {}
    for name, pkg in PKGS.items():
        torch.manual_seed(0)
        layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
        h = torch.randn(B, T, layer.d_model, device="cuda", dtype=torch.bfloat16,
                        requires_grad=True)
        dy = torch.randn_like(h)
        params = [h, *layer.parameters()]

        def step(layer=layer, h=h, dy=dy, params=params):
            for p in params:
                p.grad = None
            layer(h).backward(dy)
        steps[name] = step
    st = defaultdict(list)
    for r in range(a.step_rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            st[name].append(do_bench(steps[name], warmup=25, rep=500, return_mode="median"))
    for n, ts in st.items():
        print(f"T={T} B={B} step {n}: median {statistics.median(ts):.2f} ms "
              f"(rounds {', '.join(f'{t:.2f}' for t in ts)})", flush=True)
    del steps
    torch.cuda.empty_cache()
