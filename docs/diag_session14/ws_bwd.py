"""Session 14: the RAT backward (rat_bwd, as the train step launches it) with the
warp-specialised dq (DQ_WS = 1) and dK/dV (BWD_WS = 1) kernels against the Triton kernels (the
train record), at the ANCHORS sizes, on the same forward outputs.

    python3 docs/diag_session14/ws_bwd.py [MODULE] [--sizes 131072x2,16384x16]
        [--variants '[{"DQ_WS": 1, ...}, ...]']

Each line: do_bench median (ms) of rat_bwd with a variant's keys over the record, and dproj's
and the gate-bias gradient's relative error against the record's. Every *_WS = 1 launch is
asserted to reach its Gluon kernel.
"""
import argparse
import importlib
import json

import torch
from triton.testing import do_bench

DQ = {"DQ_WS": 1, "DQ_BC": 64, "DQ_WS_KS": 3, "DQ_WS_VS": 2}
VARIANTS = [DQ] + [{"BWD_WS": 1, "BWD_WS_BT": bt, "BWD_WS_QS": qs}
                   for bt, qs in ((64, 2), (64, 3), (32, 3), (32, 4))]
ap = argparse.ArgumentParser()
ap.add_argument("module", nargs="?", default="generated.rat_swa.kernels.rat_rat")
ap.add_argument("--sizes", default="131072x2,16384x16")
ap.add_argument("--variants", default=json.dumps(VARIANTS))
a = ap.parse_args()
mod = importlib.import_module(a.module)
print(torch.cuda.get_device_name(), flush=True)
launched = {"DQ_WS": [], "BWD_WS": []}
for key, name in (("DQ_WS", "_rat_attn_bwd_dq_ws"), ("BWD_WS", "_rat_attn_bwd_dkv_ws")):
    setattr(mod, name, lambda *args, f=getattr(mod, name), n=launched[key]: (n.append(1), f(*args)))


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

    shown = {k: v for k, v in rec.items() if k.startswith(("DQ", "dq", "BWD_B", "bwd_num"))}
    ref = bwd(rec)
    t0 = do_bench(lambda: bwd(rec), rep=300)
    print(f"T={T} B={B} rat_bwd, record {shown}: {t0:.3f} ms", flush=True)
    for v in json.loads(a.variants):
        cfg = rec | v
        before = {k: len(n) for k, n in launched.items()}
        try:
            got = bwd(cfg)
            assert all(len(n) == before[k] + cfg.get(k, 0) for k, n in launched.items())
            ms = do_bench(lambda: bwd(cfg), rep=300)
        except Exception as e:  # noqa: BLE001 - a failing configuration is a result
            print(f"  {v}: FAIL {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        print(f"  {v}: {ms:.3f} ms ({t0 / ms:.3f}x), dproj rel. err {rel(got[0], ref[0]):.1e}, "
              f"dgate_bias {rel(got[1], ref[1]):.1e}", flush=True)
    torch.cuda.empty_cache()
