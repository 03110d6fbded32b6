"""Session 12: the RAT forward (scan + attention launches) of two builds, timed alternately.

    python3 fwd_ab.py OLD_MODULE NEW_MODULE [--dry]

Both are generated/rat_swa/kernels/rat_rat.py (OLD from an earlier commit). Per train size, with
OLD's train record for both: each forward kernel's time (torch.profiler, the attention kernel's
launches summed), in ROUNDS alternating rounds, and NEW's y and lse against OLD's.
--dry: CPU, TRITON_INTERPRET=1, fp32, T = 80, 16-wide blocks: checks this script.
"""
import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diag_session10"))
from _common import kernel_ms, load, rel, train_inputs  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("old")
ap.add_argument("new")
ap.add_argument("--dry", action="store_true")
a = ap.parse_args()
SIZES = [(80, 1)] if a.dry else [(16384, 16), (131072, 2)]
DEV, DT = ("cpu", torch.float32) if a.dry else ("cuda", torch.bfloat16)
ROUNDS = 1 if a.dry else 4
KERNELS = ("rat_scan_fwd_kernel", "rat_attn_fwd_kernel")
print("dry run (CPU)" if a.dry else torch.cuda.get_device_name(), flush=True)
mods = {"old": load(a.old), "new": load(a.new)}
for T, B in SIZES:
    p, bias, rec, lse, y, scan, dy, ref = train_inputs(mods["old"], T, B, DEV, DT)
    if a.dry:
        rec = rec | dict(BT=16, BC=16)
    del scan, dy, ref
    outs, times = {}, {n: [] for n in mods}
    for r in range(ROUNDS):
        for n in (("old", "new") if r % 2 == 0 else ("new", "old")):
            lse_n = torch.empty_like(lse)

            def f(m=mods[n], lse_n=lse_n):
                return m.rat_fwd(p, bias, lse=lse_n, config=rec, mode="train", keep=True)[0]

            outs[n] = (f(), lse_n)
            ms = kernel_ms(f, a.dry)
            t = tuple(ms.get(k, 0.0) for k in KERNELS)
            times[n].append(t)
            print(f"T={T} B={B} round {r} {n}: scan {t[0]:.3f} attention {t[1]:.3f} ms",
                  flush=True)
    (y0, l0), (y1, l1) = outs["old"], outs["new"]
    print(f"T={T} B={B} new against old: y {rel(y1, y0):.1e}, lse max diff "
          f"{(l1 - l0).abs().max().item():.1e}", flush=True)
    for n, ts in times.items():
        print(f"T={T} B={B} median {n}: scan {statistics.median(t[0] for t in ts):.3f} "
              f"attention {statistics.median(t[1] for t in ts):.3f} ms", flush=True)
    del p, outs
    if not a.dry:
        torch.cuda.empty_cache()
