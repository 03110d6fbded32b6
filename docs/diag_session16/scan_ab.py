"""The RAT scans of this package against the package built before a change
(generated.rat_swa_old, on PYTHONPATH), in one process. Written in session 16 (the scans' loads
a step ahead); session 18 added the forward's relative errors and the float64 check.

    PYTHONPATH=oldpkg:$PYTHONPATH python3 docs/diag_session16/scan_ab.py [--sizes 16384x16]

For each size: rat_fwd's outputs of both packages compared bit for bit and by relative error,
rat_bwd's by relative error (the train record; the compiler may contract or reduce in another
order), and at sizes under 2^16 tokens (only checked, not timed) both packages against a float64
run of the old package's core_torch. Then the scan kernels' device time per variant
(torch.profiler, mean of --iters launches), then the block's train step of both packages
(do_bench medians, alternating rounds). The backward's kernels are timed for the scan and,
where the record launches it, the Triton dq.
"""
import argparse
import json
import statistics

import torch
from torch.profiler import ProfilerActivity, profile
from triton.testing import do_bench

import generated.rat_swa as new_pkg
import generated.rat_swa_old as old_pkg
from generated.rat_swa.kernels import rat_rat as new
from generated.rat_swa_old.kernels import rat_rat as old

FWD = [{}, {"SCAN_BK": 8}, {"SCAN_WARPS": 8}, {"SCAN_BK": 8, "SCAN_WARPS": 2}, {"SCAN_BK": 32}]
BWD = [{}, {"bwd_scan_num_warps": 8}, {"bwd_scan_num_warps": 2}, {"bwd_scan_num_warps": 1}]
ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="1000x3,16384x16,131072x2")
ap.add_argument("--iters", type=int, default=20)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--fwd-variants", default=json.dumps(FWD), help="JSON list of configs")
ap.add_argument("--bwd-variants", default=json.dumps(BWD), help="JSON list of configs")
a = ap.parse_args()
print(torch.cuda.get_device_name(), flush=True)


def kernel_ms(fn, name):
    """Mean device time (ms) of the kernels named `name` per call of fn."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(a.iters):
            fn()
        torch.cuda.synchronize()
    return sum(e.device_time_total for e in prof.key_averages() if e.key == name) / a.iters / 1e3


def rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm()).item()


def same(x, y):
    return all(torch.equal(u, v) for u, v in zip(x, y))


for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, new.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(new.D, device="cuda", generator=g)
    rec = new._launch_config(proj, mode="train")
    assert rec == old._launch_config(proj, mode="train")
    outs = {}
    for name, mod in (("old", old), ("new", new)):
        lse = torch.empty(B, new.H, T, device="cuda")
        y, scan = mod.rat_fwd(proj, bias, config=rec, lse=lse, mode="train", keep=True)
        dy = torch.randn(y.shape, device="cuda", dtype=y.dtype,
                         generator=torch.Generator(device="cuda").manual_seed(1))
        outs[name] = (y, lse, scan, dy, mod.rat_bwd(proj, bias, y, lse, dy, config=rec,
                                                     mode="train", scan=scan))
    (y0, l0, s0, dy, b0), (y1, l1, s1, _, b1) = outs["old"], outs["new"]
    print(f"T={T} B={B} identical: fwd y {torch.equal(y0, y1)}, lse {torch.equal(l0, l1)}, "
          f"scan {same(s0, s1)}; rel. err: fwd y {rel(y1, y0):.1e}, lse {rel(l1, l0):.1e}, scan "
          f"{max(rel(u, v) for u, v in zip(s1, s0)):.1e}; bwd dproj {rel(b1[0], b0[0]):.1e}, "
          f"dbias {rel(b1[1], b0[1]):.1e}", flush=True)
    if T * B < 2**16:  # a ragged size, checked only: both against float64
        p64 = proj.double().requires_grad_()
        b64 = bias.double().requires_grad_()
        y64 = old.core_torch(p64, b64)
        y64.backward(dy.double())
        for name, (y_, _, _, _, b_) in outs.items():
            print(f"  {name} against float64: y {rel(y_, y64):.2e}, dproj "
                  f"{rel(b_[0], p64.grad):.2e}, dbias {rel(b_[1], b64.grad):.2e}", flush=True)
        continue
    for v in json.loads(a.fwd_variants):
        for name, mod in (("old", old), ("new", new)):
            lse = torch.empty(B, new.H, T, device="cuda")
            ms = kernel_ms(lambda: mod.rat_fwd(proj, bias, config=rec | v, lse=lse, mode="train",
                                               keep=True), "rat_scan_fwd_kernel")
            print(f"  scan fwd {name} {json.dumps(v)}: {ms:.3f} ms", flush=True)
    for v in json.loads(a.bwd_variants):
        for name, mod in (("old", old), ("new", new)):
            for kernel in ("rat_scan_bwd_kernel", "rat_attn_bwd_dq_kernel"):
                ms = kernel_ms(lambda: mod.rat_bwd(proj, bias, y1, l1, dy, config=rec | v,
                                                   mode="train", scan=s1), kernel)
                print(f"  {kernel} {name} {json.dumps(v)}: {ms:.3f} ms", flush=True)
    del outs, y0, l0, s0, b0, y1, l1, s1, b1, proj
    torch.cuda.empty_cache()
    steps = {}
    for name, pkg in (("old", old_pkg), ("new", new_pkg)):
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
    times = {n: [] for n in steps}
    for i in range(a.rounds):
        for n in (list(steps) if i % 2 == 0 else list(steps)[::-1]):
            times[n].append(do_bench(steps[n], warmup=25, rep=500, return_mode="median"))
    for n, ts in times.items():
        print(f"T={T} B={B} step {n}: median {statistics.median(ts):.2f} ms "
              f"(rounds {', '.join(f'{t:.2f}' for t in ts)})", flush=True)
    del steps
    torch.cuda.empty_cache()
