"""Session 14: the RAT backward (rat_bwd, as the train step launches it) with the
warp-specialised dq kernel (DQ_WS = 1) against the Triton dq kernel (the train record), at the
ANCHORS sizes, on the same forward outputs.

    python3 docs/diag_session14/ws_bwd.py [MODULE] [--sizes 131072x2,16384x16]
        [--dq DQ_BC,KS,VS;...]

Each line: do_bench median (ms) of rat_bwd, and dproj's and the gate-bias gradient's relative
error against the record's. Every DQ_WS = 1 launch is asserted to reach the Gluon kernel.
"""
import argparse
import importlib

import torch
from triton.testing import do_bench

ap = argparse.ArgumentParser()
ap.add_argument("module", nargs="?", default="generated.rat_swa.kernels.rat_rat")
ap.add_argument("--sizes", default="131072x2,16384x16")
ap.add_argument("--dq", default="64,2,2;64,3,2;64,3,3;128,2,2")
a = ap.parse_args()
mod = importlib.import_module(a.module)
print(torch.cuda.get_device_name(), flush=True)
launched = []
launch = mod._rat_attn_bwd_dq_ws
mod._rat_attn_bwd_dq_ws = lambda *args: (launched.append(1), launch(*args))


def rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm()).item()


for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(mod.D, device="cuda", generator=g)
    rec = mod._launch_config(proj, mode="train")
    lse = torch.empty(B, mod.H, T, device="cuda")
    y, scan = mod.rat_fwd(proj, bias, config=rec, lse=lse, mode="train", keep=True)
    dy = torch.randn(y.shape, device="cuda", dtype=y.dtype, generator=g)

    def bwd(cfg):
        return mod.rat_bwd(proj, bias, y, lse, dy, config=cfg, mode="train", scan=scan)

    shown = {k: rec[k] for k in ("DQ_BT", "DQ_BC", "dq_num_warps", "dq_num_stages", "DQ_WS")}
    ref = bwd(rec)
    t0 = do_bench(lambda: bwd(rec), rep=300)
    print(f"T={T} B={B} rat_bwd, record {shown}: {t0:.3f} ms", flush=True)
    for spec in a.dq.split(";"):
        bc, ks, vs = map(int, spec.split(","))
        cfg = rec | dict(DQ_WS=1, DQ_BC=bc, DQ_WS_KS=ks, DQ_WS_VS=vs)
        n = len(launched)
        try:
            got = bwd(cfg)
            assert len(launched) == n + 1
            ms = do_bench(lambda: bwd(cfg), rep=300)
        except Exception as e:  # noqa: BLE001 - a failing configuration is a result
            print(f"  DQ_WS BC {bc}, KS {ks}, VS {vs}: FAIL {type(e).__name__}: {str(e)[:200]}")
            continue
        print(f"  DQ_WS BC {bc}, KS {ks}, VS {vs}: {ms:.3f} ms ({t0 / ms:.3f}x), dproj rel. err "
              f"{rel(got[0], ref[0]):.1e}, dgate_bias {rel(got[1], ref[1]):.1e}", flush=True)
    torch.cuda.empty_cache()
