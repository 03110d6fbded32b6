"""Session 12: the RAT attention kernels' variants and block shapes the tuner's space lacks.

    python3 variants.py MODULE [--dry] [--only dkv,fwd,dq] [--sizes 16384x16,131072x2]

MODULE is generated/rat_swa/kernels/rat_rat.py. Per train size:
- dkv: the dK/dV kernel at the train record in variants made by text edits (`DKV` below):
  main; its query loop run from the last query block down ("rev"), so that programs launched
  together read the same q^ and do rows at the same time (L2 hits instead of HBM reads); "rev"
  with the chunk blocks on the fast grid axis ("rev+chunk-fast"). Timed in ROUNDS interleaved
  rounds (the card heats within a call), with dproj's relative distance to main's.
- fwd: the forward attention kernel at block shapes with BT = 256 (outside the tuner's space)
  and at the record, with y's distance to the record's.
- dq: the dq kernel at DQ_BT = 256 shapes and at the record.
--dry: CPU, TRITON_INTERPRET=1, fp32, T = 80, tiny blocks: checks this script and the edits.
"""
import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diag_session10"))
from _common import kernel_ms, load, rel, train_inputs  # noqa: E402

LOOP = "    for t0 in range((((i_c * BC + 1) * L) // BT) * BT, T, BT):\n"
REV = ("    n_t = tl.cdiv(T, BT)  # last query block first: programs launched together share rows\n"
       "    for i in range(0, n_t - ((i_c * BC + 1) * L) // BT):\n"
       "        t0 = (n_t - 1 - i) * BT\n")
GRID_K = "    i_bh, i_c = tl.program_id(0), tl.program_id(1)\n"
GRID_L = "rat_attn_bwd_dkv_kernel[lambda meta: (B * H, triton.cdiv(NC, meta[\"BC\"]))]("
DKV = {
    "main": [],
    "rev": [(LOOP, REV)],
    "rev+chunk-fast": [(LOOP, REV), (GRID_K, "    i_c, i_bh = tl.program_id(0), tl.program_id(1)\n"),
                       (GRID_L, "rat_attn_bwd_dkv_kernel[lambda meta: (triton.cdiv(NC, "
                                "meta[\"BC\"]), B * H)](")],
}
ROUNDS = 3
FWD = [(256, 64, 8, 2), (256, 64, 8, 3), (256, 32, 8, 2), (256, 128, 8, 2), (128, 128, 8, 2),
       (128, 64, 8, 2)]
DQ = [(256, 64, 8, 2), (256, 32, 8, 2), (256, 64, 8, 3), (128, 64, 8, 2)]

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--dry", action="store_true")
ap.add_argument("--only", default="dkv,fwd,dq")
ap.add_argument("--sizes", default="16384x16,131072x2")
a = ap.parse_args()
only = a.only.split(",")
SIZES = [(80, 1)] if a.dry else [tuple(map(int, s.split("x"))) for s in a.sizes.split(",")]
DEV, DT = ("cpu", torch.float32) if a.dry else ("cuda", torch.bfloat16)
if a.dry:
    ROUNDS, FWD, DQ = 1, [(32, 16, 4, 2)], [(32, 16, 4, 2)]
mods = {name: load(a.module, edits) for name, edits in DKV.items()}
main = mods["main"]
print("dry run (CPU)" if a.dry else torch.cuda.get_device_name(), flush=True)


def one(ms, name):
    return ms.get(name, 0.0)


for T, B in SIZES:
    p, bias, rec, lse, y, scan, dy, ref = train_inputs(main, T, B, DEV, DT)
    if a.dry:
        rec = rec | dict(BWD_BT=16, BWD_BC=16, DQ_BT=16, DQ_BC=16, BT=16, BC=16)
        lse = torch.empty_like(lse)
        y, scan = main.rat_fwd(p, bias, lse=lse, config=rec, mode="train", keep=True)
        ref = main.rat_bwd(p, bias, y, lse, dy, config=rec, mode="train", scan=scan)[0]
    print(f"T={T} B={B} record {rec}", flush=True)

    def bwd(mod, cfg):
        return lambda: mod.rat_bwd(p, bias, y, lse, dy, config=cfg, mode="train", scan=scan)

    if "dkv" in only:
        times = {n: [] for n in mods}
        for r in range(ROUNDS):
            for n, mod in (mods.items() if r % 2 == 0 else reversed(mods.items())):
                err = rel(bwd(mod, rec)()[0], ref)
                ms = kernel_ms(bwd(mod, rec), a.dry)
                t = one(ms, "rat_attn_bwd_dkv_kernel")
                times[n].append(t)
                print(f"  dkv round {r} {n:15s}: dkv {t:.3f} dq "
                      f"{one(ms, 'rat_attn_bwd_dq_kernel'):.3f} (dproj err {err:.0e})", flush=True)
        for n, ts in times.items():
            print(f"  dkv median {n:15s}: {statistics.median(ts):.3f} ms", flush=True)
    if "fwd" in only:
        keys = ("BT", "BC", "num_warps", "num_stages")
        for shape in FWD + [tuple(rec[k] for k in keys)]:
            cfg = rec | dict(zip(keys, shape))
            tag = f"  fwd BT {shape[0]:3d} BC {shape[1]:3d} {shape[2]} warps {shape[3]} stages"
            try:
                lse2 = torch.empty_like(lse)
                f = (lambda: main.rat_fwd(p, bias, lse=lse2, config=cfg, mode="train",
                                          keep=True))
                err = rel(f()[0], y)
                ms = kernel_ms(f, a.dry)
            except Exception as e:  # noqa: BLE001
                print(f"{tag}: FAIL {type(e).__name__}: {str(e)[:160]}", flush=True)
                continue
            print(f"{tag}: {one(ms, 'rat_attn_fwd_kernel'):.3f} ms (y err {err:.0e})",
                  flush=True)
    if "dq" in only:
        keys = ("DQ_BT", "DQ_BC", "dq_num_warps", "dq_num_stages")
        for shape in DQ + [tuple(rec[k] for k in keys)]:
            cfg = rec | dict(zip(keys, shape))
            tag = f"  dq DQ_BT {shape[0]:3d} DQ_BC {shape[1]:3d} {shape[2]} warps {shape[3]} stages"
            try:
                err = rel(bwd(main, cfg)()[0], ref)
                ms = kernel_ms(bwd(main, cfg), a.dry)
            except Exception as e:  # noqa: BLE001
                print(f"{tag}: FAIL {type(e).__name__}: {str(e)[:160]}", flush=True)
                continue
            print(f"{tag}: {one(ms, 'rat_attn_bwd_dq_kernel'):.3f} ms (dproj err {err:.0e})",
                  flush=True)
    del p, y, scan, dy, ref
    if not a.dry:
        torch.cuda.empty_cache()
