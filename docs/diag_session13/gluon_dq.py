"""Session 13: the RAT dq kernel in Gluon, with the next key block's two score products (S, dP)
in flight while this block's dS is computed (Hopper; Triton 3.6's triton.experimental.gluon).
Not used by ratc.

    python3 docs/diag_session13/gluon_dq.py --compile      # CPU: compile for sm_90, PTX order
    python3 docs/diag_session13/gluon_dq.py MODULE         # GPU: against MODULE's Triton kernel

Per program: BT queries of one head (64 a warpgroup), q^ and do in shared memory, the chunk-final
keys and values through TMA rings (KST and VST stages: a value stage is free once its dP is, a
key stage only once its dq product is). Per key block j:

    issue S_j+1 = q^ K_j+1^T, dP_j+1 = do V_j+1^T      (in flight)
    P_j = exp2(S_j - lse) masked, dS_j = P_j (dP_j - Delta)
    issue dq += dS_j K_j                              (in flight)
    wait until one group is left: S_j+1, dP_j+1 and dq's product of block j-1 done

Triton's tl.dot kernel (rat_attn_bwd_dq_kernel) waits after each product. The per-token part
(Delta, dz, do, the self term) is the Triton kernel's.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import configs, script_args  # noqa: E402

a = script_args("BT,BC,KST,VST,warps,qreg")

import triton  # noqa: E402
from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402
from triton.experimental.gluon.language.nvidia.hopper import (  # noqa: E402
    fence_async_shared, mbarrier, warpgroup_mma, warpgroup_mma_init, warpgroup_mma_wait)

from _gluon_common import _load_tile, _wait_tile, compile_report, descriptor  # noqa: E402


@gluon.jit
def _dscores(s, dp, lse, delta, o_ct, j, c_first, qk_scale, BC: gl.constexpr,
             col_s: gl.constexpr):
    """dS = P (dP - Delta) of key block j, P = 2^(S qk_scale - lse), zero where c' >= c(t)."""
    p = gl.exp2(s * qk_scale - lse[:, None])
    if j * BC + BC > c_first:
        o_k = j * BC + gl.arange(0, BC, layout=col_s)
        p = gl.where(o_k[None, :] < o_ct[:, None], p, 0.0)
    return p * (dp - delta[:, None])


@gluon.jit
def rat_dq_gluon_kernel(
    p_proj, p_qh, p_dy, p_y, p_lse, p_s, p_v, desc_k, desc_v, p_delta, p_dss, p_ps, p_dq,
    p_dproj, p_do, T, NCP, stride_pb, stride_pt, stride_pc, qk_scale,
    OFF_Z: gl.constexpr, F: gl.constexpr, H: gl.constexpr, G: gl.constexpr, d: gl.constexpr,
    L: gl.constexpr, BT: gl.constexpr, BC: gl.constexpr, BD: gl.constexpr, KST: gl.constexpr,
    VST: gl.constexpr, QREG: gl.constexpr, num_warps: gl.constexpr,
):
    gl.static_assert(BT == 16 * num_warps)  # 64 rows a warpgroup
    gl.static_assert(KST >= 3)  # K_j-1 .. K_j+1 are in use at block j
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
    smem: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BT, BD], dt)

    k_s = gl.allocate_shared_memory(dt, [KST, BC, BD], desc_k.layout)
    v_s = gl.allocate_shared_memory(dt, [VST, BC, BD], desc_v.layout)
    kbar = gl.allocate_shared_memory(gl.int64, [KST, 1], mbarrier.MBarrierLayout())
    vbar = gl.allocate_shared_memory(gl.int64, [VST, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(KST):
        mbarrier.init(kbar.index(i), count=1)
    for i in gl.static_range(VST):
        mbarrier.init(vbar.index(i), count=1)
    c_first = (i_t * BT) // L
    c_end = (gl.minimum(i_t * BT + BT, T) - 1) // L
    n_k = gl.cdiv(c_end, BC)
    row_k = i_bh * NCP
    for i in gl.static_range(KST):
        _load_tile(desc_k, k_s, kbar, i, row_k, i < n_k, BC)
    for i in gl.static_range(VST):
        _load_tile(desc_v, v_s, vbar, i, row_k, i < n_k, BC)

    # Delta_t = dy_t . out_t, dS_self = P_self (do_t . v~_t - Delta_t), do, dz
    o_t = i_t * BT + gl.arange(0, BT, layout=row_o)
    o_d = gl.arange(0, BD, layout=col_o)
    m_t = o_t < T
    m_td = m_t[:, None] & (o_d < d)[None, :]
    o_td = i_b.to(gl.int64) * T * D + o_t[:, None] * D + i_h * d + o_d[None, :]
    q = gl.load(p_qh + (((i_b * G + i_h % G).to(gl.int64) * T + o_t[:, None]) * BD
                        + o_d[None, :]), mask=m_td, other=0.0)
    dy = gl.load(p_dy + o_td, mask=m_td, other=0.0).to(gl.float32)
    y = gl.load(p_y + o_td, mask=m_td, other=0.0).to(gl.float32)
    delta = gl.sum(dy * y, axis=1)
    p_row = p_proj + i_b.to(gl.int64) * stride_pb + o_t[:, None] * stride_pt
    z = gl.load(p_row + (OFF_Z + i_h * d + o_d[None, :]) * stride_pc, mask=m_td,
                other=0.0).to(gl.float32)
    sz = 1.0 / (1.0 + gl.exp2(z * -1.4426950408889634))
    do = dy * sz
    dz = dy * y * (1.0 - sz)
    p_drow = p_dproj + i_b.to(gl.int64) * T * F + o_t[:, None] * F
    gl.store(p_drow + OFF_Z + i_h * d + o_d[None, :], dz.to(dt), mask=m_td)
    lse = gl.load(p_lse + i_bh * T + o_t, mask=m_t, other=0.0)
    vt = gl.load(p_v + o_td, mask=m_td, other=0.0).to(gl.float32)
    ps = gl.exp2(gl.load(p_s + i_bh * T + o_t, mask=m_t, other=0.0) * qk_scale - lse)
    dss = ps * (gl.sum(do * vt, axis=1) - delta)
    gl.store(p_delta + i_bh * T + o_t, delta, mask=m_t)
    gl.store(p_dss + i_bh * T + o_t, dss, mask=m_t)
    gl.store(p_ps + i_bh * T + o_t, ps, mask=m_t)
    do_b = do.to(dt)
    gl.store(p_do + (i_bh.to(gl.int64) * T + o_t[:, None]) * BD + o_d[None, :], do_b,
             mask=m_td)
    if QREG:  # the score products' A operands from registers
        q_s = gl.convert_layout(q, q_layout)
        do_s = gl.convert_layout(do_b, q_layout)
    else:
        q_s = gl.allocate_shared_memory(dt, [BT, BD], smem)
        do_s = gl.allocate_shared_memory(dt, [BT, BD], smem)
        q_s.store(q)
        do_s.store(do_b)
        fence_async_shared()
        gl.thread_barrier()

    lse_s = gl.convert_layout(lse, row_s)
    delta_s = gl.convert_layout(delta, row_s)
    o_ct = gl.convert_layout(o_t // L, row_s)
    zero_s = gl.zeros([BT, BC], gl.float32, layout=s_layout)
    dq = gl.zeros([BT, BD], gl.float32, layout=o_layout)
    if n_k > 0:
        s = warpgroup_mma(q_s, _wait_tile(k_s, kbar, 0).permute((1, 0)), zero_s,
                          use_acc=False, is_async=True)
        dp = warpgroup_mma(do_s, _wait_tile(v_s, vbar, 0).permute((1, 0)), zero_s,
                           use_acc=False, is_async=True)
        s, dp = warpgroup_mma_wait(num_outstanding=0, deps=(s, dp))
        _load_tile(desc_v, v_s, vbar, VST, row_k, VST < n_k, BC)
        acc = warpgroup_mma_init(dq)
        for j in range(n_k - 1):
            s_next = warpgroup_mma(q_s, _wait_tile(k_s, kbar, j + 1).permute((1, 0)), zero_s,
                                   use_acc=False, is_async=True)
            dp_next = warpgroup_mma(do_s, _wait_tile(v_s, vbar, j + 1).permute((1, 0)), zero_s,
                                    use_acc=False, is_async=True)
            ds = _dscores(s, dp, lse_s, delta_s, o_ct, j, c_first, qk_scale, BC, col_s)
            acc = warpgroup_mma(gl.convert_layout(ds.to(dt), a_layout),
                                k_s.index(j % KST), acc, is_async=True)
            # S_j+1, dP_j+1 and block j-1's dq product done: V_j+1's, K_j-1's stages are free
            s, dp = warpgroup_mma_wait(num_outstanding=1, deps=(s_next, dp_next))
            _load_tile(desc_v, v_s, vbar, j + 1 + VST, row_k, j + 1 + VST < n_k, BC)
            _load_tile(desc_k, k_s, kbar, j - 1 + KST, row_k, (j >= 1) & (j - 1 + KST < n_k),
                       BC)
        j = n_k - 1
        ds = _dscores(s, dp, lse_s, delta_s, o_ct, j, c_first, qk_scale, BC, col_s)
        acc = warpgroup_mma(gl.convert_layout(ds.to(dt), a_layout), k_s.index(j % KST), acc,
                            is_async=True)
        dq = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
    for i in gl.static_range(KST):
        mbarrier.invalidate(kbar.index(i))
    for i in gl.static_range(VST):
        mbarrier.invalidate(vbar.index(i))
    dq = dq * (qk_scale * 0.6931471805599453)  # ln 2: 1/sqrt(d)
    gl.store(p_dq + o_td, dq.to(dt), mask=m_td)


def rat_dq_gluon(mod, proj, qh, dy, y, lse, s, v, kc, vc, out, BT, BC, KST, VST, warps, qreg,
                 warmup=False):
    """out = (delta, dss, ps, dq, dproj, do) as rat_attn_bwd_dq_kernel writes them."""
    B, T, _ = proj.shape
    NCP = kc.shape[0] // (B * mod.H)
    grid = (triton.cdiv(T, BT), B * mod.H)
    args = (proj, qh, dy, y, lse, s, v, descriptor(kc, BC), descriptor(vc, BC), *out, T, NCP,
            proj.stride(0), proj.stride(1), proj.stride(2), mod.SM_SCALE * mod.LOG2E)
    kw = dict(OFF_Z=mod.OFF_Z, F=mod.IN_FEATURES, H=mod.H, G=mod.GROUPS, d=mod.HEAD_DIM,
              L=mod.CHUNK, BT=BT, BC=BC, BD=mod.BLOCK_D, KST=KST, VST=VST, QREG=bool(qreg),
              num_warps=warps)
    if warmup:
        return rat_dq_gluon_kernel.warmup(*args, **kw, grid=grid)
    rat_dq_gluon_kernel[grid](*args, **kw)


# (BT, BC, KST, VST, warps, q^ and do in registers)
CONFIGS = configs(a, ((64, 32, 4, 2, 4, 0), (64, 32, 4, 2, 4, 1), (64, 64, 4, 2, 4, 0),
                     (64, 64, 4, 2, 4, 1), (128, 64, 4, 2, 8, 0), (128, 64, 4, 2, 8, 1),
                     (128, 32, 4, 3, 8, 1)))

if a.compile:
    import types

    mod = types.SimpleNamespace(H=4, GROUPS=2, HEAD_DIM=128, CHUNK=16, BLOCK_D=128, OFF_Z=0,
                                IN_FEATURES=1024, SM_SCALE=128 ** -0.5, LOG2E=1.4426950408889634)
    B, T, BD = 1, 4096, 128
    NCP = T // 16
    bf = dict(dtype=torch.bfloat16)
    f32 = torch.zeros(B, 4, T)
    for BT, BC, KST, VST, warps, qreg in CONFIGS:
        k = rat_dq_gluon(mod, torch.zeros(B, T, 1024, **bf), torch.zeros(B, 2, T, BD, **bf),
                         torch.zeros(B, T, 512, **bf), torch.zeros(B, T, 512, **bf), f32, f32,
                         torch.zeros(B, T, 512, **bf), torch.zeros(B * 4 * NCP, BD, **bf),
                         torch.zeros(B * 4 * NCP, BD, **bf),
                         (f32, f32, f32, torch.zeros(B, T, 512, **bf),
                          torch.zeros(B, T, 1024, **bf), torch.zeros(B * 4, T, BD, **bf)),
                         BT, BC, KST, VST, warps, qreg, warmup=True)
        compile_report(k, f"BT {BT}, BC {BC}, KST {KST}, VST {VST}, {warps} warps, qreg {qreg}")
    raise SystemExit(0)

# GPU: MODULE's Triton dq kernel (train record) against this one, on the forward's kept outputs
from _harness import load, rel, run_variant, sizes, time_reference  # noqa: E402

mod = load(a.module)
print(torch.cuda.get_device_name(), flush=True)
for T, B in sizes(a):
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(mod.D, device="cuda", generator=g)
    cfg = mod._launch_config(proj.clone().requires_grad_(), mode="train")
    lse = torch.empty(B, mod.H, T, device="cuda")
    y, (v, kt, s, kc, vc, qh) = mod.rat_fwd(proj, bias, lse=lse, config=cfg, mode="train",
                                            keep=True)
    del kt
    dy = torch.randn(y.shape, device="cuda", dtype=y.dtype, generator=g)
    NCP = kc.shape[0] // (B * mod.H)

    def outputs():
        f32 = dict(device="cuda", dtype=torch.float32)
        return (torch.empty(B, mod.H, T, **f32), torch.empty(B, mod.H, T, **f32),
                torch.empty(B, mod.H, T, **f32), torch.empty_like(v),
                torch.zeros(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16),
                torch.empty(B * mod.H, T, mod.BLOCK_D, device="cuda", dtype=torch.bfloat16))

    ref = outputs()

    def triton_dq():
        desc_k, desc_v = mod._descriptors(kc, vc, cfg["DQ_BC"])
        mod.rat_attn_bwd_dq_kernel[(triton.cdiv(T, cfg["DQ_BT"]), B * mod.H)](
            p_proj=proj, p_qh=qh, p_dy=dy, p_y=y, p_lse=lse, p_s=s, p_v=v, desc_k=desc_k,
            desc_v=desc_v, p_delta=ref[0], p_dss=ref[1], p_ps=ref[2], p_dq=ref[3],
            p_dproj=ref[4], p_do=ref[5], T=T, NCP=NCP, F=mod.IN_FEATURES, BT=cfg["DQ_BT"],
            BC=cfg["DQ_BC"], num_warps=cfg["dq_num_warps"], num_stages=cfg["dq_num_stages"],
            **mod._strides_shape(proj), qk_scale=mod.SM_SCALE * mod.LOG2E, OFF_Z=mod.OFF_Z,
            OFF_Q=mod.OFF_Q, BLOCK_D=mod.BLOCK_D, PRECISION="tf32")

    _, t_ref = time_reference(
        f"T={T} B={B} Triton dq (record BT {cfg['DQ_BT']}, BC {cfg['DQ_BC']}, "
        f"{cfg['dq_num_warps']} warps, {cfg['dq_num_stages']} stages)", triton_dq)
    for BT, BC, KST, VST, warps, qreg in CONFIGS:
        out = outputs()

        def gluon_dq():
            rat_dq_gluon(mod, proj, qh, dy, y, lse, s, v, kc, vc, out, BT, BC, KST, VST, warps,
                         qreg)

        def check():
            return "rel. err delta/dss/ps/dq/dproj/do " + " ".join(
                f"{rel(x, r):.1e}" for x, r in zip(out, ref))
        run_variant(f"Gluon BT {BT}, BC {BC}, KST {KST}, VST {VST}, {warps} warps, qreg {qreg}",
                    gluon_dq, check, t_ref)
    del proj, v, s, kc, vc, qh, y, dy, ref
    torch.cuda.empty_cache()
