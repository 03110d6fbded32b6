"""Session 18: prefill (the block's forward under no_grad) of the RAT and sliding-window blocks,
this package against the one before the change (generated.rat_swa_old, on PYTHONPATH), do_bench
medians over --rounds alternating rounds.

    PYTHONPATH=oldpkg:$PYTHONPATH python3 docs/diag_session18/prefill_ab.py
"""
import argparse
import statistics

import torch
from triton.testing import do_bench

import generated.rat_swa as new_pkg
import generated.rat_swa_old as old_pkg

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="16384x16,131072x2")
ap.add_argument("--layers", default="swa,rat")
ap.add_argument("--rounds", type=int, default=6)
a = ap.parse_args()
print(torch.cuda.get_device_name(), flush=True)
for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    h = torch.randn(B, T, 2048, device="cuda", dtype=torch.bfloat16,
                    generator=torch.Generator(device="cuda").manual_seed(1))
    for mixer in a.layers.split(","):
        fns = {}
        for name, pkg in (("old", old_pkg), ("new", new_pkg)):
            torch.manual_seed(0)
            layer = pkg.MIXERS[mixer](device="cuda", dtype=torch.bfloat16)

            def prefill(layer=layer):
                with torch.no_grad():
                    return layer(h)
            prefill()
            fns[name] = prefill
        times = {k: [] for k in fns}
        for r in range(a.rounds):
            for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                times[k].append(do_bench(fns[k], warmup=10, rep=200, return_mode="median"))
        print(f"T={T} B={B} {mixer} prefill: " + "; ".join(
            f"{k} {statistics.median(ts):.2f} ms ({', '.join(f'{t:.2f}' for t in ts)})"
            for k, ts in times.items()), flush=True)
        del fns
        torch.cuda.empty_cache()
