"""Session 10: the RAT forward attention kernel (rat_attn_fwd_kernel) alone, as built and in
text-edited variants, at the records' launch configs and a few key blocks (torch.profiler).

    python3 fwd_variants.py MODULE [--dry]

"lazy rescale": the online softmax keeps its running max until some row's max grows by more
than 8 (log2 units, a factor 256), so most key blocks skip rescaling the [BT, d] accumulator
and the denominators (FlashAttention-4's conditional rescale). The probabilities stay below 2^8,
and lse = m + log2(l) is exact for any m, so the backward is unchanged.
"""
import argparse

import torch

from _common import kernel_ms, load, rel

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--dry", action="store_true")
a = ap.parse_args()
SIZES = [(80, 1)] if a.dry else [(16384, 16), (131072, 2)]
DEV, DT = ("cpu", torch.float32) if a.dry else ("cuda", torch.bfloat16)

LAZY_OLD = '''        b_mn = tl.maximum(b_m, tl.max(b_sc, axis=1) * qk_scale)
        b_p = tl.exp2(b_sc * qk_scale - b_mn[:, None])  # one FMA per score
        b_alpha = tl.exp2(b_m - b_mn)
        b_l = b_l * b_alpha + tl.sum(b_p, axis=1)
        b_vc = desc_v.load([row0 + k0, 0])
        b_acc = tl.dot(b_p.to(b_vc.dtype), b_vc, b_acc * b_alpha[:, None],
                       input_precision=PRECISION)
        b_m = b_mn
'''
LAZY_NEW = '''        b_mn = tl.maximum(b_m, tl.max(b_sc, axis=1) * qk_scale)
        if tl.max(b_mn - b_m, axis=0) > 8.0:
            b_alpha = tl.exp2(b_m - b_mn)
            b_l = b_l * b_alpha
            b_acc = b_acc * b_alpha[:, None]
            b_m = b_mn
        b_p = tl.exp2(b_sc * qk_scale - b_m[:, None])
        b_l = b_l + tl.sum(b_p, axis=1)
        b_vc = desc_v.load([row0 + k0, 0])
        b_acc = tl.dot(b_p.to(b_vc.dtype), b_vc, b_acc, input_precision=PRECISION)
'''
VARIANTS = {"as built": [], "lazy rescale": [(LAZY_OLD, LAZY_NEW)]}


print("dry run (CPU)" if a.dry else torch.cuda.get_device_name(), flush=True)
mods = {name: load(a.module, edits) for name, edits in VARIANTS.items()}
base = mods["as built"]
for T, B in SIZES:
    g = torch.Generator(device=DEV).manual_seed(T)
    p = torch.randn(B, T, base.IN_FEATURES, device=DEV, dtype=DT, generator=g)
    bias = torch.randn(base.D, device=DEV, generator=g)
    for mode in ("train", "prefill"):
        rec = base._launch_config(p.clone().requires_grad_(mode == "train"), mode=mode)
        lse_ref = torch.empty(B, base.H, T, device=DEV)
        ref = base.rat_fwd(p, bias, lse=lse_ref, config=rec, mode=mode)
        for bc in (32, 64, 128) if not a.dry else (rec["BC"],):
            cfg = rec | dict(BC=bc)
            for name, m in mods.items():
                lse = torch.empty_like(lse_ref)
                err = rel(m.rat_fwd(p, bias, lse=lse, config=cfg, mode=mode), ref)
                e_lse = (lse - lse_ref).abs().max().item()
                ms = kernel_ms(lambda: m.rat_fwd(p, bias, lse=lse, config=cfg, mode=mode),
                               a.dry).get("rat_attn_fwd_kernel", 0.0)
                print(f"T={T} B={B} {mode:7s} BT {cfg['BT']} BC {bc:3d}{'*' if bc == rec['BC'] else ' '}"
                      f" {name:12s} {ms:7.3f} ms  y err {err:.1e}  lse max diff {e_lse:.1e}",
                      flush=True)
    del p
    if not a.dry:
        torch.cuda.empty_cache()
