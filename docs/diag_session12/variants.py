"""Session 12: the RAT attention kernels' variants and block shapes the tuner's space lacks.

    python3 variants.py MODULE [--dry] [--only PARTS] [--sizes 16384x16,131072x2]

MODULE is generated/rat_swa/kernels/rat_rat.py as of 750c2b9 (`git show
750c2b9:generated/rat_swa/kernels/rat_rat.py`): the text edits below match that module, before
the fixed softmax reference went in. Per train size, each part against the module as built:
- dkv (--dkv-variants, from `DKV`): the dK/dV kernel at the train record: its query loop run from
  the last query block down ("rev"), so that programs launched together read the same q^ and do
  rows at the same time; "rev" with the chunk blocks on the fast grid axis; the causal mask
  (mask2, maskif, maskif2). ROUNDS interleaved rounds (the card heats within a call), with
  dproj's relative distance to main's.
- fwd, dq: the forward and dq kernels at block shapes with BT = 256 (outside the tuner's space).
- reduce: dq added in the dK/dV kernel by TMA reduce-add (`REDUCE`), at 7 dK/dV shapes.
- exp (--exp-variants, from `EXP`): the score exponentials exact, none, packed bf16x2 / f16x2;
  nosoftmax: the forward without its softmax (bounds: wrong results).
- ahead, fix, fixonly: the forward's next scores issued early; the fixed softmax reference with
  and without its in-kernel fallback (`AHEAD`, `FIX`, `FIXONLY`), at the `FWD_*` shapes.
--dry: CPU, TRITON_INTERPRET=1, fp32, T = 80, tiny blocks: checks this script and the edits
(not exp: inline PTX does not interpret).
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
# dq in the dK/dV kernel: dS^T K^ per query block, added into an fp32 [B, T, G*d] buffer (each q/k
# group's heads summed) by TMA reduce-add (descriptor.atomic_add); the dq kernel keeps only its
# per-token work; the scan backward reads the group sums, scaled, in place of summing per-head dq^
DQ_LOOPS = """    b_dq = _rat_bwd_dq_inner(b_q, b_do, b_lse, b_delta, b_dq, desc_k, desc_v, i_bh * NCP, o_ct,
                             0, c_mid, qk_scale, BC, False, PRECISION)
    b_dq = _rat_bwd_dq_inner(b_q, b_do, b_lse, b_delta, b_dq, desc_k, desc_v, i_bh * NCP, o_ct,
                             c_mid, c_end, qk_scale, BC, True, PRECISION)
    b_dq = b_dq * (qk_scale * 0.6931471805599453)  # ln 2: 1/sqrt(d)
    tl.store(p_dq + o_td, b_dq.to(p_dq.dtype.element_ty), mask=m_td)
"""
REDUCE = [
    (DQ_LOOPS, ""),
    ("desc_q, desc_do, p_lse, p_delta, desc_k, desc_v, p_dkc, p_dvc,",
     "desc_q, desc_do, p_lse, p_delta, desc_k, desc_v, p_dkc, p_dvc, desc_dq, p_dqg, "
     "TMA_RED: tl.constexpr,"),
    ("        b_dst = b_pt * (b_dpt - b_delta[None, :])\n",
     "        b_dst = b_pt * (b_dpt - b_delta[None, :])\n"
     "        b_dqt = tl.dot(tl.trans(b_dst.to(b_kc.dtype)), b_kc, input_precision=PRECISION)\n"
     "        if TMA_RED:\n"
     "            desc_dq.atomic_add([(i_bh // H) * T + t0, ((i_bh % H) % G) * d], b_dqt)\n"
     "        else:  # the interpreter has no descriptor reduce\n"
     "            tl.atomic_add(p_dqg + ((i_bh // H) * T + o_t[:, None]) * (G * d)\n"
     "                          + ((i_bh % H) % G) * d + o_d[None, :], b_dqt,\n"
     "                          mask=m_t[:, None] & (o_d < d)[None, :])\n"),
    ("p_dkc=dkc, p_dvc=dvc, T=T",
     "p_dkc=dkc, p_dvc=dvc, desc_dq=TensorDescriptor(dq.view(B * T, GROUPS * HEAD_DIM), "
     "shape=[B * T, GROUPS * HEAD_DIM], strides=[GROUPS * HEAD_DIM, 1], "
     "block_shape=[cfg['BWD_BT'], BLOCK_D]), p_dqg=dq, "
     "TMA_RED=os.environ.get('TRITON_INTERPRET') != '1', T=T"),
    ("    dq = torch.empty_like(v)  # dq^\n",
     "    dq = torch.zeros(B, T, GROUPS * HEAD_DIM, **f32)\n"),
    ("    b_cos, b_sin = b_cos[None], b_sin[None]  # [1, BK, BLOCK_DH]\n",
     "    b_cos2, b_sin2 = b_cos, b_sin\n"
     "    b_cos, b_sin = b_cos[None], b_sin[None]  # [1, BK, BLOCK_DH]\n"),
    ("""        b_dq = tl.load(p_dq + o_td, mask=m, other=0.0).to(tl.float32)
        b_1, b_2 = tl.split(b_dq)
        b_dq = tl.join(b_1 * b_cos + b_2 * b_sin, b_2 * b_cos - b_1 * b_sin)
        b_dq += b_dss * b_kt
""", """        b_dq = tl.load(p_dq + (i_b.to(tl.int64) * T + o_t[:, None, None]) * (G * d) + o_g[None],
                       mask=m_g, other=0.0) * sm_scale
        b_dq1, b_dq2 = tl.split(b_dq)
        b_dq = tl.join(b_dq1 * b_cos2 + b_dq2 * b_sin2, b_dq2 * b_cos2 - b_dq1 * b_sin2)
        b_dq += tl.sum(tl.where(m, b_dss * b_kt, 0.0), axis=0)
"""),
    ("""        tl.store(p_drow + OFF_Q + o_g[None], tl.sum(tl.where(m, b_dq, 0.0), axis=0)
                 .to(p_dproj.dtype.element_ty), mask=m_g)
""", """        tl.store(p_drow + OFF_Q + o_g[None], b_dq.to(p_dproj.dtype.element_ty), mask=m_g)
"""),
]
DKV["reduce"] = REDUCE
DKV["reduce+rev"] = REDUCE + [(LOOP, REV)]
# the score exponentials: exact (main), none (a bound: what the kernels cost without them; wrong
# results), or two at a time on the MUFU by packed half-precision ex2 (inline PTX, sm_90)
HELPERS = (
    "@triton.jit\ndef _softplus(x):\n",
    "@triton.jit\ndef _ex2_bf16(x):\n"
    "    return tl.inline_asm_elementwise('ex2.approx.ftz.bf16x2 $0, $1;', '=r,r',\n"
    "                                     [x.to(tl.bfloat16)], dtype=tl.bfloat16, is_pure=True,\n"
    "                                     pack=2)\n\n\n"
    "@triton.jit\ndef _ex2_f16(x):\n"
    "    return tl.inline_asm_elementwise('ex2.approx.f16x2 $0, $1;', '=r,r',\n"
    "                                     [x.to(tl.float16)], dtype=tl.float16, is_pure=True,\n"
    "                                     pack=2)\n\n\n"
    "@triton.jit\ndef _softplus(x):\n")
EXP_SITES = ("b_sc * qk_scale - b_mn[:, None]", "b_sc * qk_scale - b_lse[:, None]",
             "b_st * qk_scale - b_lse[None, :]")


def exp_edits(fn):
    return [HELPERS] + [(f"tl.exp2({x})", fn.format(x)) for x in EXP_SITES]


EXP = {
    "exact": [],
    "none": exp_edits("(1.0 + 0.001 * ({}))"),
    "bf16x2": exp_edits("_ex2_bf16({}).to(tl.float32)"),
    "f16x2": exp_edits("_ex2_f16({}).to(tl.float32)"),
}
# the forward's next key block's scores issued before this block's softmax (as FlashAttention-3
# overlaps them within a warpgroup): the score tile rotates through the loop; one spare product
# past the last block
AHEAD = [("""    for k0 in range(lo, hi, BC):
        b_kc = desc_k.load([row0 + k0, 0])  # [BC, BLOCK_D]
        b_sc = tl.dot(b_q, tl.trans(b_kc), input_precision=PRECISION)  # [BT, BC], unscaled
""", """    b_kn = desc_k.load([row0 + lo, 0])
    b_sn = tl.dot(b_q, tl.trans(b_kn), input_precision=PRECISION)
    for k0 in range(lo, hi, BC):
        b_sc = b_sn
        b_kn = desc_k.load([row0 + k0 + BC, 0])  # [BC, BLOCK_D]
        b_sn = tl.dot(b_q, tl.trans(b_kn), input_precision=PRECISION)  # [BT, BC], unscaled
""")]
# a bound: the forward's loop with no softmax at all (P = S; wrong results): loads and products
NOSM = [("""        # b_m starts at the (finite) self score, so no row is ever all -inf
        b_mn = tl.maximum(b_m, tl.max(b_sc, axis=1) * qk_scale)
        b_p = tl.exp2(b_sc * qk_scale - b_mn[:, None])  # one FMA per score
        b_alpha = tl.exp2(b_m - b_mn)
        b_l = b_l * b_alpha + tl.sum(b_p, axis=1)
        b_vc = desc_v.load([row0 + k0, 0])
        b_acc = tl.dot(b_p.to(b_vc.dtype), b_vc, b_acc * b_alpha[:, None],
                       input_precision=PRECISION)
        b_m = b_mn
""", """        b_vc = desc_v.load([row0 + k0, 0])
        b_acc = tl.dot(b_sc.to(b_vc.dtype), b_vc, b_acc, input_precision=PRECISION)
""")]
EXP["nosoftmax"] = NOSM
# the forward's softmax against a fixed per-row reference m_t >= every score of the row, in place
# of the running max: m_t = max(|q^_t| max_c' |K^_c'| / sqrt(d), s_t) (Cauchy-Schwarz; in log2
# units), so no running max, no rescaling of l and acc, and P = 2^(s - m_t) <= 1. Exact up to
# rounding while m_t - s_t <= 100 for every row of the block (the largest P >= 2^-100, a normal
# float); a block with a larger gap runs the online loop as built. max |K^| per head here from
# torch (a variant; the scan could write it)
FIX = [
    ("def rat_attn_fwd_kernel(\n    p_proj, p_qh, p_v, p_s, desc_k, desc_v, p_y, p_lse,\n",
     "def rat_attn_fwd_kernel(\n    p_proj, p_qh, p_v, p_s, desc_k, desc_v, p_y, p_lse, p_kmax,\n"),
    ("""    b_m, b_l, b_acc = _rat_attn_inner(b_q, b_m, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                      0, c_mid, qk_scale, BC, False, PRECISION)
    b_m, b_l, b_acc = _rat_attn_inner(b_q, b_m, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                      c_mid, c_end, qk_scale, BC, True, PRECISION)
""", """    b_qf = b_q.to(tl.float32)
    b_mf = tl.sqrt(tl.sum(b_qf * b_qf, axis=1)) * tl.load(p_kmax + i_bh) * qk_scale
    b_mf = tl.maximum(b_mf, b_m)
    if tl.max(b_mf - b_m) <= 100.0:
        b_l = tl.exp2(b_m - b_mf)
        b_acc = b_acc * b_l[:, None]
        b_l, b_acc = _rat_attn_inner_fix(b_q, b_mf, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                         0, c_mid, qk_scale, BC, False, PRECISION)
        b_l, b_acc = _rat_attn_inner_fix(b_q, b_mf, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                         c_mid, c_end, qk_scale, BC, True, PRECISION)
        b_m = b_mf
    else:
        b_m, b_l, b_acc = _rat_attn_inner(b_q, b_m, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                          0, c_mid, qk_scale, BC, False, PRECISION)
        b_m, b_l, b_acc = _rat_attn_inner(b_q, b_m, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                          c_mid, c_end, qk_scale, BC, True, PRECISION)
"""),
    ("@triton.jit\ndef rat_attn_fwd_kernel(", """@triton.jit
def _rat_attn_inner_fix(
    b_q, b_m, b_l, b_acc, desc_k, desc_v, row0, o_ct, lo, hi, qk_scale,
    BC: tl.constexpr, MASKED: tl.constexpr, PRECISION: tl.constexpr,
):
    for k0 in range(lo, hi, BC):
        b_kc = desc_k.load([row0 + k0, 0])
        b_sc = tl.dot(b_q, tl.trans(b_kc), input_precision=PRECISION)
        b_p = tl.exp2(b_sc * qk_scale - b_m[:, None])
        if MASKED:
            o_k = k0 + tl.arange(0, BC)
            b_p = tl.where(o_k[None, :] < o_ct[:, None], b_p, 0.0)
        b_l += tl.sum(b_p, axis=1)
        b_vc = desc_v.load([row0 + k0, 0])
        b_acc = tl.dot(b_p.to(b_vc.dtype), b_vc, b_acc, input_precision=PRECISION)
    return b_l, b_acc


@triton.jit
def rat_attn_fwd_kernel("""),
    ("    s, kc, vc, NCP, qh = _rat_scan(proj, gate_bias, cfg, v, kt, rows=MAX_BC if keep else None)\n",
     "    s, kc, vc, NCP, qh = _rat_scan(proj, gate_bias, cfg, v, kt, rows=MAX_BC if keep else None)\n"
     "    kmax = kc.view(B * H, NCP, BLOCK_D)[:, :, :HEAD_DIM].float().norm(dim=-1).amax(dim=1)\n"),
    ("p_proj=proj, p_qh=qh, p_v=v, p_s=s, desc_k=desc_k, desc_v=desc_v, p_y=y,",
     "p_proj=proj, p_qh=qh, p_v=v, p_s=s, desc_k=desc_k, desc_v=desc_v, p_y=y, p_kmax=kmax,"),
]
# the same without the fallback loops: one loop pair, the fixed reference for every block (a
# bound on what the fixed reference saves; wrong where a block's gap exceeds 100)
FIXONLY = [FIX[0], (FIX[1][0], """    b_qf = b_q.to(tl.float32)
    b_mf = tl.sqrt(tl.sum(b_qf * b_qf, axis=1)) * tl.load(p_kmax + i_bh) * qk_scale
    b_mf = tl.maximum(b_mf, b_m)
    b_l = tl.exp2(b_m - b_mf)
    b_acc = b_acc * b_l[:, None]
    b_l, b_acc = _rat_attn_inner_fix(b_q, b_mf, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                     0, c_mid, qk_scale, BC, False, PRECISION)
    b_l, b_acc = _rat_attn_inner_fix(b_q, b_mf, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,
                                     c_mid, c_end, qk_scale, BC, True, PRECISION)
    b_m = b_mf
""")] + FIX[2:]
FWD_FIX = [(128, 64, 4, 2), (128, 64, 8, 2), (64, 64, 4, 3), (128, 128, 8, 2), (64, 64, 4, 2),
           (64, 32, 4, 3), (64, 128, 4, 2), (128, 32, 4, 3)]
FWD_AHEAD = [(128, 64, 8, 2), (128, 64, 8, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3),
             (64, 32, 4, 3), (128, 32, 8, 3), (64, 128, 4, 2)]
RED_SHAPES = [(64, 128, 8, 3), (64, 128, 8, 2), (32, 128, 8, 3), (32, 128, 8, 2), (64, 64, 4, 2),
              (64, 64, 8, 2), (32, 64, 4, 3)]
# the dK/dV kernel's causal mask: m_t folded into the queries' chunk index (one compare and one
# select a score, not two compares, an and and a select), or applied only where a block can need
# it (a uniform branch: the block's diagonal query blocks and T's edge)
MASK = ("        b_pt = tl.where((o_k[:, None] < (o_t // L)[None, :]) & m_t[None, :], b_pt, 0.0)\n")
DKV["mask2"] = [(MASK, "        b_pt = tl.where(o_k[:, None] < tl.where(m_t, o_t // L, 0)[None, :], "
                       "b_pt, 0.0)\n")]
DKV["maskif"] = [(MASK, "        if (t0 < (i_c * BC + BC) * L) | (t0 + BT > T):\n    " + MASK)]
DKV["maskif2"] = [(MASK, "        if (t0 < (i_c * BC + BC) * L) | (t0 + BT > T):\n"
                         "            b_pt = tl.where(o_k[:, None] < tl.where(m_t, o_t // L, 0)"
                         "[None, :], b_pt, 0.0)\n")]
ROUNDS = 3
FWD = [(256, 64, 8, 2), (256, 64, 8, 3), (256, 32, 8, 2), (256, 128, 8, 2), (128, 128, 8, 2),
       (128, 64, 8, 2)]
DQ = [(256, 64, 8, 2), (256, 32, 8, 2), (256, 64, 8, 3), (128, 64, 8, 2)]

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--dry", action="store_true")
ap.add_argument("--only", default="dkv,fwd,dq,reduce,exp,ahead,fix,fixonly")
ap.add_argument("--sizes", default="16384x16,131072x2")
ap.add_argument("--dkv-variants", default="main,rev,rev+chunk-fast")
ap.add_argument("--exp-variants", default="exact,none,bf16x2,f16x2")
a = ap.parse_args()
only = a.only.split(",")
SIZES = [(80, 1)] if a.dry else [tuple(map(int, s.split("x"))) for s in a.sizes.split(",")]
DEV, DT = ("cpu", torch.float32) if a.dry else ("cuda", torch.bfloat16)
if a.dry:
    ROUNDS, FWD, DQ, RED_SHAPES = 1, [(32, 16, 4, 2)], [(32, 16, 4, 2)], [(32, 16, 4, 2)]
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

    def parts(ms):
        return (f"dkv {one(ms, 'rat_attn_bwd_dkv_kernel'):.3f} dq "
                f"{one(ms, 'rat_attn_bwd_dq_kernel'):.3f} scan {one(ms, 'rat_scan_bwd_kernel'):.3f}"
                f" all {sum(ms.values()) if ms else 0:.3f}")

    for part, edits, grid in (("ahead", AHEAD, FWD_AHEAD), ("fix", FIX, FWD_FIX),
                              ("fixonly", FIXONLY, FWD_FIX[:6])):
        if part not in only:
            continue
        am = load(a.module, edits)
        keys = ("BT", "BC", "num_warps", "num_stages")
        recs = tuple(rec[k] for k in keys)
        shapes = [(32, 16, 4, 2)] if a.dry else grid
        first = {}
        for r in range(ROUNDS):
            for n, m, shape in ([("main", main, recs)] + [(part, am, s) for s in shapes]
                                + [(part, am, recs)]):
                cfg = rec | dict(zip(keys, shape))
                tag = f"  {n:5s} BT {shape[0]:3d} BC {shape[1]:3d} {shape[2]} warps {shape[3]} stages"
                try:
                    lse2 = torch.empty_like(lse)
                    f = (lambda: m.rat_fwd(p, bias, lse=lse2, config=cfg, mode="train",
                                           keep=True))
                    err = rel(f()[0], y)
                    lerr = (lse2 - lse).abs().max().item()
                    ms = kernel_ms(f, a.dry)
                except Exception as e:  # noqa: BLE001
                    print(f"{tag}: FAIL {type(e).__name__}: {str(e)[:200]}", flush=True)
                    continue
                t = one(ms, 'rat_attn_fwd_kernel')
                if n == part and r == 0:
                    first[shape] = t
                print(f"{tag} round {r}: {t:.3f} ms (y err {err:.0e}, lse max diff {lerr:.0e})",
                      flush=True)
            # later rounds: main and the variant at the record and at round 0's best other shape
            shapes = sorted((s for s in first if s != recs), key=first.get)[:1]
    if "exp" in only and not a.dry:
        enames = a.exp_variants.split(",")
        emods = {n: load(a.module, EXP[n]) for n in enames}
        res = {}
        for r in range(ROUNDS):
            for n in (enames if r % 2 == 0 else enames[::-1]):
                m = emods[n]
                try:
                    lse2 = torch.empty_like(lse)
                    f = (lambda: m.rat_fwd(p, bias, lse=lse2, config=rec, mode="train",
                                           keep=True))
                    yerr = rel(f()[0], y)
                    fms = kernel_ms(f)
                    derr = rel(bwd(m, rec)()[0], ref)
                    bms = kernel_ms(bwd(m, rec))
                except Exception as e:  # noqa: BLE001
                    print(f"  exp {n}: FAIL {type(e).__name__}: {str(e)[:300]}", flush=True)
                    continue
                t = (one(fms, "rat_attn_fwd_kernel"), one(bms, "rat_attn_bwd_dq_kernel"),
                     one(bms, "rat_attn_bwd_dkv_kernel"))
                res.setdefault(n, []).append(t)
                print(f"  exp {n:7s} round {r}: fwd {t[0]:.3f} dq {t[1]:.3f} dkv {t[2]:.3f} "
                      f"(y err {yerr:.1e}, dproj err {derr:.1e})", flush=True)
        for n, ts in res.items():
            print(f"  exp median {n:7s}: " + " ".join(
                f"{k} {statistics.median(x[i] for x in ts):.3f}"
                for i, k in enumerate(("fwd", "dq", "dkv"))), flush=True)
    if "reduce" in only:
        keys = ("BWD_BT", "BWD_BC", "bwd_num_warps", "bwd_num_stages")
        totals = {}
        for r in range(ROUNDS if not a.dry else 1):
            for n in ("main", "reduce", "reduce+rev"):
                for shape in [tuple(rec[k] for k in keys)] if n == "main" else RED_SHAPES:
                    cfg = rec | dict(zip(keys, shape))
                    tag = f"  {n:10s} {shape}"
                    try:
                        err = rel(bwd(mods[n], cfg)()[0], ref)
                        ms = kernel_ms(bwd(mods[n], cfg), a.dry)
                    except Exception as e:  # noqa: BLE001
                        print(f"{tag}: FAIL {type(e).__name__}: {str(e)[:200]}", flush=True)
                        continue
                    totals.setdefault((n, shape), []).append(sum(ms.values()) if ms else 0)
                    print(f"{tag} round {r}: {parts(ms)} (dproj err {err:.0e})", flush=True)
            if r == 0 and not a.dry:
                RED_SHAPES = sorted(RED_SHAPES, key=lambda s: totals.get(("reduce", s), [1e9])[0])[:3]
        for (n, shape), ts in totals.items():
            print(f"  backward kernels median {n:10s} {shape}: {statistics.median(ts):.3f} ms",
                  flush=True)

    if "dkv" in only:
        names = a.dkv_variants.split(",")
        times = {n: [] for n in names}
        for r in range(ROUNDS):
            for n in (names if r % 2 == 0 else names[::-1]):
                mod = mods[n]
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
