"""Session 10: the RAT train step's kernels, one at a time (torch.profiler), in two builds of
generated/rat_swa/kernels/rat_rat.py and in text-edited variants of the scans.

    python3 scan_sweep.py NEW_MODULE [--old OLD_MODULE] [--dry]

- every backward kernel of OLD (e.g. the module at an earlier commit) and NEW at the train
  record, and the relative distance of their dproj;
- the forward scan's (SCAN_BK, SCAN_WARPS) and the backward scan's (BWD_SCAN_BK,
  bwd_scan_num_warps; in session 9's build both launches read SCAN_*, the backward's
  programs taking SCAN_BK / 8 chunks of the group's 8 heads), the other keys at the record;
- variant "static L": both scans' loops over the chunk's L tokens unrolled (tl.static_range).

--dry: CPU, TRITON_INTERPRET=1, fp32, one tiny size, two configs: checks this script.
"""
import argparse
import itertools

import torch

from _common import kernel_ms, load, rel, train_inputs

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--old")
ap.add_argument("--dry", action="store_true")
a = ap.parse_args()
SIZES = [(80, 1)] if a.dry else [(16384, 16), (131072, 2)]
DEV, DT = ("cpu", torch.float32) if a.dry else ("cuda", torch.bfloat16)
FWD_GRID = list(itertools.product((8, 16, 32), (2, 4, 8)))
BWD_GRID = list(itertools.product((1, 2, 4), (1, 2, 4)))
if a.dry:
    FWD_GRID, BWD_GRID = FWD_GRID[:2], BWD_GRID[1:3]
BWD_KERNELS = ("rat_attn_bwd_dq_kernel", "rat_attn_bwd_dkv_kernel", "rat_scan_bwd_kernel")
VARIANTS = {
    "as built": [],
    "static L": [("    for l in range(L):\n        o_t = o_c * L + l\n",
                  "    for l in tl.static_range(L):\n        o_t = o_c * L + l\n"),
                 ("    for i in range(L):\n        l = L - 1 - i\n",
                  "    for i in tl.static_range(L):\n        l = L - 1 - i\n")],
}


print("dry run (CPU)" if a.dry else torch.cuda.get_device_name(), flush=True)
mods = {name: load(a.module, edits) for name, edits in VARIANTS.items()}
new = mods["as built"]
old = load(a.old) if a.old else None
for T, B in SIZES:
    p, bias, rec, lse, y, scan, dy, ref = train_inputs(new, T, B, DEV, DT)
    print(f"T={T} B={B} train record {rec}", flush=True)
    if old is not None:
        for name, m in (("old", old), ("new", new)):
            out = m.rat_bwd(p, bias, y, lse, dy, config=rec, mode="train", scan=scan)[0]
            ms = kernel_ms(lambda: m.rat_bwd(p, bias, y, lse, dy, config=rec, mode="train",
                                             scan=scan), a.dry)
            parts = "  ".join(f"{k.replace('rat_', '').replace('_kernel', '')} {ms.get(k, 0):.3f}"
                              for k in BWD_KERNELS)
            print(f"  {name} backward: {parts}  sum {sum(ms.get(k, 0) for k in BWD_KERNELS):.3f}"
                  f" ms; dproj rel. to new {rel(out, ref):.1e}", flush=True)
    for variant, m in mods.items():
        for part, grid, keys in (("fwd", FWD_GRID, ("SCAN_BK", "SCAN_WARPS")),
                                 ("bwd", BWD_GRID, ("BWD_SCAN_BK", "bwd_scan_num_warps"))):
            for bk, w in grid:
                cfg = rec | dict(zip(keys, (bk, w)))
                tag = f"  T={T} B={B} {variant:9s} scan {part} BK {bk:2d} warps {w}"
                try:
                    if part == "fwd":
                        yv, sv = m.rat_fwd(p, bias, lse=lse, config=cfg, mode="train", keep=True)
                        err = rel(yv, y)
                        del yv, sv
                        ms = kernel_ms(lambda: m.rat_fwd(p, bias, lse=lse, config=cfg,
                                                         mode="train", keep=True), a.dry)
                    else:
                        err = rel(m.rat_bwd(p, bias, y, lse, dy, config=cfg, mode="train",
                                            scan=scan)[0], ref)
                        ms = kernel_ms(lambda: m.rat_bwd(p, bias, y, lse, dy, config=cfg,
                                                         mode="train", scan=scan), a.dry)
                except Exception as e:  # noqa: BLE001
                    print(f"{tag} FAIL {type(e).__name__}: {str(e)[:100]}", flush=True)
                    continue
                is_rec = (bk, w) == (rec.get(keys[0]), rec.get(keys[1]))
                print(f"{tag}: {ms.get(f'rat_scan_{part}_kernel', 0):.3f} ms (err {err:.0e})"
                      f"{' (record)' if is_rec else ''}", flush=True)
    del p, y, scan, dy, ref
    if not a.dry:
        torch.cuda.empty_cache()
