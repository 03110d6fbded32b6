"""Session 11: the RAT dq kernel summed over each q/k group (docs/diag_session10/dq_grouped.patch)
against main's per-head dq kernel, at block shapes the per-head record could not use (8 warps).

    python3 dq_sweep.py MAIN_MODULE GROUPED_MODULE [--dry] [--record-only]

Both modules are generated/rat_swa/kernels/rat_rat.py, built from main and from main with the
patch applied. Per train size: main's backward kernels at its record; the grouped build's dq and
scan-backward kernels at each (DQ_BT, DQ_BC, dq_num_warps, dq_num_stages), other keys at main's
record, with dproj's relative distance to main's.
--record-only: the second module at main's record alone (an A/B of two builds' backwards).
--dkv: sweep the dK/dV kernel's keys (BWD_BT, BWD_BC, bwd_num_warps, bwd_num_stages) instead.
--dry: CPU, TRITON_INTERPRET=1, fp32, one tiny size, two configs: checks this script.
"""
import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diag_session10"))
from _common import kernel_ms, load, rel, train_inputs  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("main")
ap.add_argument("grouped")
ap.add_argument("--dry", action="store_true")
ap.add_argument("--record-only", action="store_true")
ap.add_argument("--dkv", action="store_true")
a = ap.parse_args()
SIZES = [(80, 1)] if a.dry else [(16384, 16), (131072, 2)]
DEV, DT = ("cpu", torch.float32) if a.dry else ("cuda", torch.bfloat16)
GRID = [(64, 64, 4, 2)] + list(itertools.product((64, 128), (64, 128), (8,), (2, 3)))
if a.dkv:
    GRID = [(64, 128, 8, 3), (64, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 8, 3),
            (128, 64, 4, 2), (128, 128, 8, 2), (32, 128, 8, 3), (32, 64, 4, 3)]
if a.dry:
    GRID = [(16, 16, 4, 2), (16, 32, 8, 2)]
KERNELS = ("rat_attn_bwd_dq_kernel", "rat_attn_bwd_dkv_kernel", "rat_scan_bwd_kernel")


def parts(ms):
    return "  ".join(f"{k.replace('rat_', '').replace('_kernel', '')} {ms.get(k, 0):.3f}"
                     for k in KERNELS)


print("dry run (CPU)" if a.dry else torch.cuda.get_device_name(), flush=True)
main, grp = load(a.main), load(a.grouped)
for T, B in SIZES:
    p, bias, rec, lse, y, scan, dy, ref = train_inputs(main, T, B, DEV, DT)
    print(f"T={T} B={B} main's train record {rec}", flush=True)
    ms = kernel_ms(lambda: main.rat_bwd(p, bias, y, lse, dy, config=rec, mode="train",
                                        scan=scan), a.dry)
    print(f"  main, record: {parts(ms)}", flush=True)
    keys = (("BWD_BT", "BWD_BC", "bwd_num_warps", "bwd_num_stages") if a.dkv else
            ("DQ_BT", "DQ_BC", "dq_num_warps", "dq_num_stages"))
    for bt, bc, w, st in [tuple(rec[k] for k in keys)] if a.record_only else GRID:
        cfg = rec | dict(zip(keys, (bt, bc, w, st)))
        tag = (f"  {'second' if a.record_only or a.dkv else 'grouped'} {keys[0]} {bt:3d} "
               f"{keys[1]} {bc:3d} {w} warps {st} stages")
        try:
            err = rel(grp.rat_bwd(p, bias, y, lse, dy, config=cfg, mode="train", scan=scan)[0],
                      ref)
            ms = kernel_ms(lambda: grp.rat_bwd(p, bias, y, lse, dy, config=cfg, mode="train",
                                               scan=scan), a.dry)
        except Exception as e:  # noqa: BLE001
            print(f"{tag}: FAIL {type(e).__name__}: {str(e)[:120]}", flush=True)
            continue
        print(f"{tag}: {parts(ms)}  (dproj err {err:.0e})", flush=True)
    del p, y, scan, dy, ref
    if not a.dry:
        torch.cuda.empty_cache()
