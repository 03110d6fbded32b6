"""Session 11: RMSNorm's launch parameters (kernels/rms_norm.py CONFIG: TILE, num_warps,
PROGRAMS_PER_SM; never tuned on a GPU) at the train bench's rows, M = 262144 of N = 2048 bf16:
the residual forward (y, rstd, the copy r) and the backward with dr, each config's outputs
checked equal to the default's, ms and the bytes' rate.

    python3 norm_sweep.py [--dry]      (--dry: CPU, TRITON_INTERPRET=1, small M, two configs)
"""
import argparse
import itertools

import torch
from triton.testing import do_bench

from generated.rat_swa.kernels import rms_norm as mod

ap = argparse.ArgumentParser()
ap.add_argument("--dry", action="store_true")
a = ap.parse_args()
DEV, M, N = ("cpu", 70, 2048) if a.dry else ("cuda", 262144, 2048)
FWD = list(itertools.product((2048, 4096, 8192, 16384), (4, 8, 16)))
BWD = list(itertools.product((2048, 4096, 8192), (4, 8, 16), (1, 2, 4, 8)))
if a.dry:
    FWD, BWD = FWD[:2], BWD[:2]
g = torch.Generator(device=DEV).manual_seed(0)
x, dy, dr = (torch.randn(M, N, device=DEV, dtype=torch.bfloat16, generator=g) for _ in range(3))
w = torch.randn(N, device=DEV, dtype=torch.bfloat16, generator=g)
print("dry run (CPU)" if a.dry else torch.cuda.get_device_name(), f"M={M} N={N} bf16; default",
      mod.CONFIG, flush=True)


def ms(fn):
    return 1.0 if a.dry else do_bench(fn, warmup=10, rep=200, return_mode="median")


y0, rstd0, r0 = mod.rms_norm_fwd(x, w, 1e-6, None, residual=True)
dx0, dw0 = mod.rms_norm_bwd(x, w, rstd0, dy, None, dr)
for tile, warps in FWD:
    cfg = dict(TILE=tile, num_warps=warps)
    y, rstd, r = mod.rms_norm_fwd(x, w, 1e-6, cfg, residual=True)
    same = torch.equal(y, y0) and torch.equal(rstd, rstd0) and torch.equal(r, r0)
    t = ms(lambda: mod.rms_norm_fwd(x, w, 1e-6, cfg, residual=True))
    print(f"fwd TILE {tile:5d} warps {warps:2d}: {t:.3f} ms ({3 * M * N * 2 / t / 1e6:.0f} GB/s)"
          f"{'' if same else '  DIFFERS'}", flush=True)
for tile, warps, per_sm in BWD:
    cfg = dict(TILE=tile, num_warps=warps, PROGRAMS_PER_SM=per_sm)
    dx, dw = mod.rms_norm_bwd(x, w, rstd0, dy, cfg, dr)
    err = ((dw - dw0).norm() / dw0.norm()).item()  # dw: partial sums in another grouping
    t = ms(lambda: mod.rms_norm_bwd(x, w, rstd0, dy, cfg, dr))
    print(f"bwd TILE {tile:5d} warps {warps:2d} programs/SM {per_sm}: {t:.3f} ms "
          f"({4 * M * N * 2 / t / 1e6:.0f} GB/s) dw rel. {err:.0e}"
          f"{'' if torch.equal(dx, dx0) else '  dx DIFFERS'}", flush=True)
