"""Session 18: the RMSNorm kernels at the 1.3B spec's train sizes (262144 rows of 2048, bf16)
under launch configs, against the package before the change (generated.rat_swa_old, on
PYTHONPATH), in one process.

    PYTHONPATH=oldpkg:$PYTHONPATH python3 docs/diag_session18/rms_ab.py

Backward with the residual gradient (what a block's input norm runs: reads x, dy, dr, writes
dx), and the forward with the residual copy (reads x, writes y and r); do_bench medians over
--rounds rounds in rotating order, with the bytes moved per ms. Each config's dx and dw are
compared with the old package's default.
"""
import argparse
import json
import statistics

import torch
from triton.testing import do_bench

from generated.rat_swa.kernels import rms_norm as new
from generated.rat_swa_old.kernels import rms_norm as old

BWD = [{}, {"STAGES": 2}, {"STAGES": 3}, {"PROGRAMS_PER_SM": 3}, {"PROGRAMS_PER_SM": 4},
       {"PROGRAMS_PER_SM": 4, "STAGES": 2}, {"TILE": 8192}, {"TILE": 8192, "STAGES": 2},
       {"TILE": 8192, "PROGRAMS_PER_SM": 1}, {"TILE": 2048, "num_warps": 4, "PROGRAMS_PER_SM": 4},
       {"TILE": 2048, "num_warps": 4, "PROGRAMS_PER_SM": 4, "STAGES": 2}]
FWD = [{}, {"TILE": 2048, "num_warps": 4}, {"TILE": 8192}, {"TILE": 2048}]
ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=262144)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--bwd", default=json.dumps(BWD))
ap.add_argument("--fwd", default=json.dumps(FWD))
a = ap.parse_args()
print(torch.cuda.get_device_name(), flush=True)
M, N = a.rows, 2048
g = torch.Generator(device="cuda").manual_seed(0)
x = torch.randn(M, N, device="cuda", dtype=torch.bfloat16, generator=g)
w = torch.randn(N, device="cuda", dtype=torch.bfloat16, generator=g)
dy = torch.randn(M, N, device="cuda", dtype=torch.bfloat16, generator=g)
dr = torch.randn(M, N, device="cuda", dtype=torch.bfloat16, generator=g)
_, rstd, _ = old.rms_norm_fwd(x, w, 1e-6, residual=True)
dx0, dw0 = old.rms_norm_bwd(x, w, rstd, dy, dr=dr)
GB = M * N * 2 / 1e9


def rel(u, v):
    return ((u.float() - v.float()).norm() / v.float().norm()).item()


runs = {"old {}": lambda: old.rms_norm_bwd(x, w, rstd, dy, dr=dr)}
for c in json.loads(a.bwd):
    dx1, dw1 = new.rms_norm_bwd(x, w, rstd, dy, config=c, dr=dr)
    print(f"bwd {json.dumps(c)}: rel. err dx {rel(dx1, dx0):.1e}, dw {rel(dw1, dw0):.1e}",
          flush=True)
    runs[f"new {json.dumps(c)}"] = lambda c=c: new.rms_norm_bwd(x, w, rstd, dy, config=c, dr=dr)
fwd = {"old {}": lambda: old.rms_norm_fwd(x, w, 1e-6, residual=True)}
for c in json.loads(a.fwd):
    fwd[f"new {json.dumps(c)}"] = lambda c=c: new.rms_norm_fwd(x, w, 1e-6, config=c,
                                                               residual=True)
for what, fns, gb in (("bwd", runs, 4 * GB), ("fwd", fwd, 3 * GB)):
    times = {k: [] for k in fns}
    keys = list(fns)
    for r in range(a.rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            times[k].append(do_bench(fns[k], warmup=25, rep=200, return_mode="median"))
    for k, ts in times.items():
        ms = statistics.median(ts)
        print(f"{what} {k}: {ms:.3f} ms, {gb / ms:.2f} TB/s (rounds "
              f"{', '.join(f'{t:.3f}' for t in ts)})", flush=True)
