"""Session 13: the RAT forward attention (fixed softmax reference) in Gluon, with the next key
block's scores in flight during this block's softmax (Hopper; Triton 3.6's
triton.experimental.gluon). Not used by ratc.

    python3 docs/diag_session13/gluon_fwd.py --compile      # CPU: compile for sm_90, PTX order
    python3 docs/diag_session13/gluon_fwd.py MODULE         # GPU: against MODULE's Triton kernel

Per program: BT queries of one head (64 a warpgroup: 4 warps for 64, 8 for 128), q^ in shared
memory, the chunk-final keys and values through TMA rings (KST and VST stages; a key stage is
free once its scores are, a value stage once its product is). Per key block j:

    issue S_j+1 = q^ K_j+1^T        (in flight)
    P_j = exp2(S_j - m), masked on diagonal blocks, l += rowsum P_j
    issue O += P_j V_j              (in flight, chained on the previous block's)
    wait until one group is left: S_j+1 done, O_j-1 done (O_j may still run)

Triton's tl.dot kernel (rat_attn_fwd_kernel) waits for S_j before its softmax and for O_j before
the next block. The self term, the reference m_t = max(|q^_t| max|K~| / sqrt(d), s_t), the flag
(blocks where m_t - s_t > 100 are left to the FALLBACK launch) and the output (y gated by
sigmoid(z), lse) are the Triton kernel's.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import compile_layer, configs, script_args  # noqa: E402

a = script_args("BT,BC,KST,VST,warps,qreg")

import triton  # noqa: E402
from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402
from triton.experimental.gluon.language.nvidia.hopper import (  # noqa: E402
    fence_async_shared, mbarrier, warpgroup_mma, warpgroup_mma_init, warpgroup_mma_wait)

from _gluon_common import _load_tile, _store_out, _wait_tile, compile_report  # noqa: E402
from _gluon_common import descriptor  # noqa: E402


@gluon.jit
def _probs(s, m, o_ct, j, c_first, qk_scale, BC: gl.constexpr, col_s: gl.constexpr):
    """P = 2^(S qk_scale - m) of key block j, zero where c' >= c(t) (blocks reaching c_first)."""
    p = gl.exp2(s * qk_scale - m[:, None])
    if j * BC + BC > c_first:
        o_k = j * BC + gl.arange(0, BC, layout=col_s)
        p = gl.where(o_k[None, :] < o_ct[:, None], p, 0.0)
    return p


@gluon.jit
def rat_fwd_gluon_kernel(
    p_proj, p_qh, p_v, p_s, desc_k, desc_v, p_y, p_lse, p_kmax, p_flag,
    T, NCP, stride_pb, stride_pt, stride_pc, qk_scale,
    OFF_Z: gl.constexpr, H: gl.constexpr, G: gl.constexpr, d: gl.constexpr, L: gl.constexpr,
    BT: gl.constexpr, BC: gl.constexpr, BD: gl.constexpr, KST: gl.constexpr,
    VST: gl.constexpr, QREG: gl.constexpr, num_warps: gl.constexpr,
):
    gl.static_assert(BT == 16 * num_warps)  # 64 rows a warpgroup
    gl.static_assert(KST >= 2)  # K_j+1 must be resident while block j's softmax runs
    gl.static_assert(VST >= 2)
    n_t = gl.cdiv(T, BT)
    i_t = n_t - 1 - gl.program_id(0)  # longest rows first
    i_bh = gl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    D: gl.constexpr = H * d
    dt: gl.constexpr = p_y.dtype.element_ty

    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BC, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BD, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    q_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    col_o: gl.constexpr = gl.SliceLayout(0, o_layout)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    col_s: gl.constexpr = gl.SliceLayout(0, s_layout)

    o_t = i_t * BT + gl.arange(0, BT, layout=row_o)
    o_d = gl.arange(0, BD, layout=col_o)
    m_t = o_t < T
    m_td = m_t[:, None] & (o_d < d)[None, :]
    q = gl.load(p_qh + (((i_b * G + i_h % G).to(gl.int64) * T + o_t[:, None]) * BD
                        + o_d[None, :]), mask=m_td, other=0.0)
    s_self = gl.load(p_s + i_bh * T + o_t, mask=m_t, other=0.0) * qk_scale
    qf = q.to(gl.float32)
    m = gl.sqrt(gl.sum(qf * qf, axis=1)) * gl.load(p_kmax + i_bh) * qk_scale
    m = gl.maximum(m, s_self)
    ok = gl.max(m - s_self, axis=0) <= 100.0
    gl.store(p_flag + i_bh * n_t + i_t, 1 - ok.to(gl.int8))
    if ok:
        k_s = gl.allocate_shared_memory(dt, [KST, BC, BD], desc_k.layout)
        v_s = gl.allocate_shared_memory(dt, [VST, BC, BD], desc_v.layout)
        kbar = gl.allocate_shared_memory(gl.int64, [KST, 1], mbarrier.MBarrierLayout())
        vbar = gl.allocate_shared_memory(gl.int64, [VST, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(KST):
            mbarrier.init(kbar.index(i), count=1)
        for i in gl.static_range(VST):
            mbarrier.init(vbar.index(i), count=1)

        c_first = (i_t * BT) // L  # every query of the block sees chunks 0 .. c_first - 1
        c_end = (gl.minimum(i_t * BT + BT, T) - 1) // L  # none sees c_end or later
        n_k = gl.cdiv(c_end, BC)
        row_k = i_bh * NCP
        for i in gl.static_range(KST):
            _load_tile(desc_k, k_s, kbar, i, row_k, i < n_k, BC)
        for i in gl.static_range(VST):
            _load_tile(desc_v, v_s, vbar, i, row_k, i < n_k, BC)
        if QREG:  # the scores' A operand from registers: wgmma reads only K from shared memory
            q_s = gl.convert_layout(q, q_layout)
        else:
            q_s = gl.allocate_shared_memory(dt, [BT, BD],
                                            gl.NVMMASharedLayout.get_default_for([BT, BD], dt))
            q_s.store(q)
            fence_async_shared()
            gl.thread_barrier()

        # the self term opens the sums: l = 2^(s_t - m), acc = l v~_t
        l_self = gl.exp2(s_self - m)
        p_vt = p_v + i_b.to(gl.int64) * T * D + o_t[:, None] * D + i_h * d + o_d[None, :]
        acc = gl.load(p_vt, mask=m_td, other=0.0).to(gl.float32) * l_self[:, None]
        l = gl.convert_layout(l_self, row_s)
        m_s = gl.convert_layout(m, row_s)
        o_ct = gl.convert_layout(o_t // L, row_s)
        zero_s = gl.zeros([BT, BC], gl.float32, layout=s_layout)
        if n_k > 0:
            s = warpgroup_mma(q_s, _wait_tile(k_s, kbar, 0).permute((1, 0)), zero_s,
                              use_acc=False, is_async=True)
            s = warpgroup_mma_wait(num_outstanding=0, deps=(s, ))
            _load_tile(desc_k, k_s, kbar, KST, row_k, KST < n_k, BC)
            o = warpgroup_mma_init(acc)
            p_op = gl.zeros([BT, BC], dt, layout=a_layout)
            for j in range(n_k - 1):
                s_next = warpgroup_mma(q_s, _wait_tile(k_s, kbar, j + 1).permute((1, 0)),
                                       zero_s, use_acc=False, is_async=True)
                p = _probs(s, m_s, o_ct, j, c_first, qk_scale, BC, col_s)
                l += gl.sum(p, axis=1)
                p_op = gl.convert_layout(p.to(dt), a_layout)
                o = warpgroup_mma(p_op, _wait_tile(v_s, vbar, j), o, is_async=True)
                # S_j+1 and every product before O_j done: K_j+1's and V_j-1's stages are free
                s = warpgroup_mma_wait(num_outstanding=1, deps=(s_next, ))
                _load_tile(desc_k, k_s, kbar, j + 1 + KST, row_k, j + 1 + KST < n_k, BC)
                _load_tile(desc_v, v_s, vbar, j - 1 + VST, row_k,
                           (j >= 1) & (j - 1 + VST < n_k), BC)
            j = n_k - 1
            p = _probs(s, m_s, o_ct, j, c_first, qk_scale, BC, col_s)
            l += gl.sum(p, axis=1)
            o = warpgroup_mma(gl.convert_layout(p.to(dt), a_layout), _wait_tile(v_s, vbar, j),
                              o, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(o, ))
        for i in gl.static_range(KST):
            mbarrier.invalidate(kbar.index(i))
        for i in gl.static_range(VST):
            mbarrier.invalidate(vbar.index(i))

        # y = acc / l gated by sigmoid(z); lse = m + log2 l
        l_o = gl.convert_layout(l, row_o)
        _store_out(acc, l_o, m, o_t, o_d, m_t, m_td, i_b, i_h, i_bh, T, D, d, p_lse, p_y, p_proj,
                   stride_pb, stride_pt, stride_pc, OFF_Z)


def rat_fwd_gluon(mod, proj, v, s, kc, vc, qh, kmax, y, lse, flag, BT, BC, KST, VST, warps,
                  qreg, warmup=False):
    """y, lse of the fixed-reference blocks (flag set for the others), as rat_attn_fwd_kernel."""
    B, T, _ = proj.shape
    NCP = kc.shape[0] // (B * mod.H)
    grid = (triton.cdiv(T, BT), B * mod.H)
    args = (proj, qh, v, s, descriptor(kc, BC), descriptor(vc, BC), y, lse, kmax, flag, T, NCP,
            proj.stride(0), proj.stride(1), proj.stride(2), mod.SM_SCALE * mod.LOG2E)
    kw = dict(OFF_Z=mod.OFF_Z, H=mod.H, G=mod.GROUPS, d=mod.HEAD_DIM, L=mod.CHUNK, BT=BT, BC=BC,
              BD=mod.BLOCK_D, KST=KST, VST=VST, QREG=bool(qreg), num_warps=warps)
    if warmup:
        return rat_fwd_gluon_kernel.warmup(*args, **kw, grid=grid)
    rat_fwd_gluon_kernel[grid](*args, **kw)


# (BT, BC, KST, VST, warps, q^ in registers)
CONFIGS = configs(a, ((64, 64, 2, 3, 4, 0), (64, 64, 2, 3, 4, 1), (64, 32, 2, 3, 4, 0),
                     (64, 32, 2, 3, 4, 1), (128, 64, 2, 3, 8, 0), (128, 64, 2, 3, 8, 1),
                     (128, 32, 3, 4, 8, 1), (64, 128, 2, 2, 4, 1), (128, 128, 2, 2, 8, 1)))

if a.compile:
    mod, t = compile_layer()
    for BT, BC, KST, VST, warps, qreg in CONFIGS:
        flag = torch.zeros(4 * 4096 // BT, dtype=torch.int8)
        k = rat_fwd_gluon(mod, t["proj"], t["v"], t["s"], t["kc"], t["vc"], t["qh"], t["kmax"],
                          t["y"], t["lse"], flag, BT, BC, KST, VST, warps, qreg, warmup=True)
        compile_report(k, f"BT {BT}, BC {BC}, KST {KST}, VST {VST}, {warps} warps, qreg {qreg}")
    raise SystemExit(0)

# GPU: MODULE's Triton forward attention (the fixed-reference launch, record shape) against this
# one on the same kept scan outputs
from _harness import forward_sweep  # noqa: E402

forward_sweep(
    a, CONFIGS, lambda mod, T, B, cf: B * mod.H * triton.cdiv(T, cf[0]),
    lambda mod, c, y, lse, flag, cf: rat_fwd_gluon(
        mod, c["proj"], c["v"], c["s"], c["kc"], c["vc"], c["qh"], c["kmax"], y, lse, flag, *cf),
    lambda cf: "Gluon BT {}, BC {}, KST {}, VST {}, {} warps, qreg {}".format(*cf))
