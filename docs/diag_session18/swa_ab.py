"""Session 18: the sliding-window block of this package against the one before the change
(generated.rat_swa_old, on PYTHONPATH): train step (forward + backward) and prefill (forward under
no_grad), do_bench medians in alternating rounds. Outputs compared by relative error first.

    PYTHONPATH=oldpkg:$PYTHONPATH python3 docs/diag_session18/swa_ab.py [--sizes 16384x16]
"""
import argparse
import statistics

import torch
from triton.testing import do_bench

import generated.rat_swa as new_pkg
import generated.rat_swa_old as old_pkg

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="16384x16,131072x2")
ap.add_argument("--rounds", type=int, default=3)
a = ap.parse_args()
print(torch.cuda.get_device_name(), flush=True)
for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    fns, outs = {}, {}
    for name, pkg in (("old", old_pkg), ("new", new_pkg)):
        torch.manual_seed(0)
        layer = pkg.MIXERS["swa"](device="cuda", dtype=torch.bfloat16)
        h = torch.randn(B, T, layer.d_model, device="cuda", dtype=torch.bfloat16,
                        generator=torch.Generator(device="cuda").manual_seed(1),
                        requires_grad=True)
        dy = torch.randn_like(h)
        params = [h, *layer.parameters()]

        def step(layer=layer, h=h, dy=dy, params=params):
            for p in params:
                p.grad = None
            layer(h).backward(dy)

        def prefill(layer=layer, h=h):
            with torch.no_grad():
                return layer(h)
        step()
        outs[name] = (prefill(), h.grad.clone())
        fns[("train", name)], fns[("prefill", name)] = step, prefill
    (y0, g0), (y1, g1) = outs["old"], outs["new"]
    rel = lambda u, v: ((u.float() - v.float()).norm() / v.float().norm()).item()  # noqa: E731
    print(f"T={T} B={B} new against old: y {rel(y1, y0):.1e}, h.grad {rel(g1, g0):.1e}",
          flush=True)
    del outs, y0, y1, g0, g1
    times = {k: [] for k in fns}
    keys = list(fns)
    for r in range(a.rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            times[k].append(do_bench(fns[k], warmup=10, rep=300, return_mode="median"))
    for (mode, name), ts in times.items():
        print(f"T={T} B={B} {mode} {name}: median {statistics.median(ts):.2f} ms (rounds "
              f"{', '.join(f'{t:.2f}' for t in ts)})", flush=True)
    del fns
    torch.cuda.empty_cache()
