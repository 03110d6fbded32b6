"""Session 14: the RAT forward (scan + attention, as rat_fwd launches it) with the shipped
warp-specialised attention (WS = 1) against the Triton kernel (the record, WS = 0), per mode
(train: lse and the kept scan outputs; prefill: neither) at the ANCHORS sizes.

    python3 docs/diag_session14/ws_forward.py [generated.rat_swa.kernels.rat_rat] [--sizes ...]

Each line: do_bench median (ms) of rat_fwd, y's relative error against the record's y. Every
WS = 1 launch is asserted to reach the Gluon kernel.
"""
import argparse
import importlib

import torch
from triton.testing import do_bench

ap = argparse.ArgumentParser()
ap.add_argument("module", nargs="?", default="generated.rat_swa.kernels.rat_rat")
ap.add_argument("--sizes", default="131072x2,16384x16")
ap.add_argument("--ws", default="128,2,3;128,2,4;64,2,3;64,3,4;128,3,3",
                help="BC,KS,VS;... of the WS = 1 configs")
a = ap.parse_args()
mod = importlib.import_module(a.module)
print(torch.cuda.get_device_name(), flush=True)
launched = []
launch = mod._rat_attn_fwd_ws
mod._rat_attn_fwd_ws = lambda *args: (launched.append(1), launch(*args))
for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(mod.D, device="cuda", generator=g)
    for mode in ("train", "prefill"):
        rec = mod._launch_config(proj, mode=mode)
        lse = torch.empty(B, mod.H, T, device="cuda") if mode == "train" else None

        def fwd(cfg):
            return mod.rat_fwd(proj, bias, config=cfg, lse=lse, mode=mode, keep=mode == "train")

        def run(name, cfg, y0=None):
            n = len(launched)
            out = fwd(cfg)
            y = out[0] if mode == "train" else out
            assert len(launched) == n + cfg.get("WS", 0)
            err = "" if y0 is None else (
                f", y rel. err {((y.float() - y0.float()).norm() / y0.float().norm()).item():.1e}")
            ms = do_bench(lambda: fwd(cfg), rep=300)
            print(f"  T={T} B={B} {mode} {name}: {ms:.3f} ms{err}", flush=True)
            return y, ms

        shown = {k: rec[k] for k in ("BT", "BC", "num_warps", "num_stages", "WS")}
        y0, t0 = run(f"record {shown}", rec)
        for spec in a.ws.split(";"):
            bc, ks, vs = map(int, spec.split(","))
            _, ms = run(f"WS BC {bc}, KS {ks}, VS {vs}",
                        rec | dict(WS=1, BC=bc, WS_KS=ks, WS_VS=vs), y0)
            print(f"    {t0 / ms:.3f}x the record", flush=True)
        del y0
    torch.cuda.empty_cache()
