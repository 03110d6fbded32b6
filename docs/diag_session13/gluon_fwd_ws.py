"""Session 13: the RAT forward attention (fixed softmax reference) in Gluon with warp
specialisation, as FlashAttention-3 arranges it: a 1-warp producer loads q^ and then the
chunk-final K~, V~ blocks through two TMA rings (a key tile is free once its scores are, a value
tile once its product is), and two consumer warpgroups (64 query
rows each, 128 a program) run the products and the softmax, each with the next block's scores in
flight during this block's softmax (gluon_fwd.py's order). Registers move from the producer to
the consumers (warp_specialize's worker_num_regs). Not used by ratc.

    python3 docs/diag_session13/gluon_fwd_ws.py --compile     # CPU: compile for sm_90
    python3 docs/diag_session13/gluon_fwd_ws.py MODULE        # GPU: against MODULE's kernel

A consumer whose 64 rows the fixed references do not suit (m_t - s_t > 100) flags its half
(flags per 64-row half here) and only passes the ring's stages on; the GPU check asserts none is
flagged on its random inputs.
"""
import argparse
import sys
from pathlib import Path

import torch

ap = argparse.ArgumentParser()
ap.add_argument("module", nargs="?")
ap.add_argument("--compile", action="store_true")
ap.add_argument("--configs", default=None, help="BC,KS,VS,consumer_regs,pingpong;... (default: CONFIGS)")
ap.add_argument("--sizes", default="16384x16,131072x2")
a = ap.parse_args()
if not a.compile and not a.module:
    ap.error("give --compile (CPU) or a generated RAT kernel module to compare with (GPU)")
if a.compile:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from compile_check import CompileOnlyDriver
    from triton.runtime import driver
    driver.set_active(CompileOnlyDriver(90))

import triton  # noqa: E402
from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402
from triton.experimental.gluon.language.nvidia.hopper import (  # noqa: E402
    mbarrier, tma, warpgroup_mma, warpgroup_mma_init, warpgroup_mma_wait)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gluon_common import compile_report, descriptor  # noqa: E402

HALF_ROWS = 64  # query rows of one consumer warpgroup


@gluon.jit
def _producer(args):
    (desc_q, desc_k, desc_v, q_s, k_s, v_s, qbar, kready, kempty, vready, vempty, p_qh, p_v,
     p_s, p_y, p_lse, p_kmax, p_flag, p_proj, i_t, i_bh, T, NCP, stride_pb, stride_pt,
     stride_pc, qk_scale, OFF_Z, H, G, d, L, turn) = args
    # constexprs do not cross into the partitions: the block shapes come from the types
    BC: gl.constexpr = desc_k.block_type.shape[0]
    KS: gl.constexpr = k_s.type.shape[0]
    VS: gl.constexpr = v_s.type.shape[0]
    BT: gl.constexpr = 2 * 64
    row_q = ((i_bh // H) * G + (i_bh % H) % G) * T + i_t * BT
    mbarrier.expect(qbar, 2 * desc_q.block_type.nbytes)
    tma.async_copy_global_to_shared(desc_q, [row_q, 0], qbar, q_s.index(0))
    tma.async_copy_global_to_shared(desc_q, [row_q + 64, 0], qbar, q_s.index(1))
    c_end = (gl.minimum(i_t * BT + BT, T) - 1) // L
    n_k = gl.cdiv(c_end, BC)
    row_k = i_bh * NCP
    for j in range(n_k):  # a stage is free once both consumers have let it go
        mbarrier.wait(kempty.index(j % KS), ((j // KS) & 1) ^ 1)
        mbarrier.expect(kready.index(j % KS), desc_k.block_type.nbytes)
        tma.async_copy_global_to_shared(desc_k, [row_k + j * BC, 0], kready.index(j % KS),
                                        k_s.index(j % KS))
        mbarrier.wait(vempty.index(j % VS), ((j // VS) & 1) ^ 1)
        mbarrier.expect(vready.index(j % VS), desc_v.block_type.nbytes)
        tma.async_copy_global_to_shared(desc_v, [row_k + j * BC, 0], vready.index(j % VS),
                                        v_s.index(j % VS))


@gluon.jit
def _probs(s, m_s, o_ct, j, c_first, qk_scale, MASK_ALWAYS: gl.constexpr):
    """P = 2^(S qk_scale - m) of key block j, zero where c' >= c(t) (blocks reaching c_first)."""
    BC: gl.constexpr = s.type.shape[1]
    col_s: gl.constexpr = gl.SliceLayout(0, s.type.layout)
    p = gl.exp2(s * qk_scale - m_s[:, None])
    if MASK_ALWAYS or j * BC + BC > c_first:
        o_k = j * BC + gl.arange(0, BC, layout=col_s)
        p = gl.where(o_k[None, :] < o_ct[:, None], p, 0.0)
    return p


@gluon.jit
def _zero_scores(acc, k_s):
    """A zero [rows, BC] score tile in the products' layout (one warpgroup)."""
    R: gl.constexpr = acc.type.shape[0]
    BC: gl.constexpr = k_s.type.shape[1]
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BC, 16])
    return gl.zeros([R, BC], gl.float32, layout=s_layout)


@gluon.jit
def _loop_ahead(q_h, k_s, v_s, kready, kempty, vready, vempty, acc, l, m_s, o_ct, c_first, n_k,
                qk_scale):
    """Key blocks 0 .. n_k-1, the next block's scores in flight during this block's softmax."""
    KS: gl.constexpr = k_s.type.shape[0]
    VS: gl.constexpr = v_s.type.shape[0]
    dt: gl.constexpr = k_s.dtype
    zero_s = _zero_scores(acc, k_s)
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc.type.layout,
                                                 k_width=2)
    mbarrier.wait(kready.index(0), 0)
    s = warpgroup_mma(q_h, k_s.index(0).permute((1, 0)), zero_s, use_acc=False, is_async=True)
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s, ))
    mbarrier.arrive(kempty.index(0))  # a key tile is free once its scores are
    o = warpgroup_mma_init(acc)
    for j in range(n_k - 1):
        nj = j + 1
        mbarrier.wait(kready.index(nj % KS), (nj // KS) & 1)
        s_next = warpgroup_mma(q_h, k_s.index(nj % KS).permute((1, 0)), zero_s, use_acc=False,
                               is_async=True)
        p = _probs(s, m_s, o_ct, j, c_first, qk_scale, False)
        l += gl.sum(p, axis=1)
        mbarrier.wait(vready.index(j % VS), (j // VS) & 1)
        o = warpgroup_mma(gl.convert_layout(p.to(dt), a_layout), v_s.index(j % VS), o,
                          is_async=True)
        s = warpgroup_mma_wait(num_outstanding=1, deps=(s_next, ))
        # retired: S_j+1 (key tile j+1) and O_j-1 (value tile j-1)
        mbarrier.arrive(kempty.index(nj % KS))
        mbarrier.arrive(vempty.index((j + VS - 1) % VS), pred=j >= 1)
    j = n_k - 1
    p = _probs(s, m_s, o_ct, j, c_first, qk_scale, True)
    l += gl.sum(p, axis=1)
    mbarrier.wait(vready.index(j % VS), (j // VS) & 1)
    o = warpgroup_mma(gl.convert_layout(p.to(dt), a_layout), v_s.index(j % VS), o, is_async=True)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(o, ))
    mbarrier.arrive(vempty.index((j + VS - 1) % VS), pred=j >= 1)
    mbarrier.arrive(vempty.index(j % VS))
    return acc, l


@gluon.jit
def _loop_pingpong(q_h, k_s, v_s, kready, kempty, vready, vempty, turn, acc, l, m_s, o_ct,
                   c_first, n_k, qk_scale, HALF: gl.constexpr, AHEAD: gl.constexpr):
    """Key blocks 0 .. n_k-1 in turns with the other consumer: in turn t this warpgroup issues
    O += P_t-1 V_t-1 and S_t, hands the turn over, waits for both, then runs the softmax of S_t
    while the other's products run (FlashAttention-3's ping-pong). n_k + 1 turns. AHEAD: S_t is
    issued before O_t-1 and its softmax starts once S_t retires, while O_t-1 still runs."""
    KS: gl.constexpr = k_s.type.shape[0]
    VS: gl.constexpr = v_s.type.shape[0]
    dt: gl.constexpr = k_s.dtype
    zero_s = _zero_scores(acc, k_s)
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc.type.layout,
                                                 k_width=2)
    mbarrier.wait(turn.index(HALF), 1 - HALF)  # turn 0, S_0 only; consumer 0 goes first
    mbarrier.wait(kready.index(0), 0)
    s = warpgroup_mma(q_h, k_s.index(0).permute((1, 0)), zero_s, use_acc=False, is_async=True)
    mbarrier.arrive(turn.index(1 - HALF))
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s, ))
    mbarrier.arrive(kempty.index(0))
    p = _probs(s, m_s, o_ct, 0, c_first, qk_scale, n_k == 1)
    l += gl.sum(p, axis=1)
    p_op = gl.convert_layout(p.to(dt), a_layout)
    for t in range(1, n_k):
        mbarrier.wait(turn.index(HALF), (t & 1) ^ (1 - HALF))
        j = t - 1
        if AHEAD:  # S_t first, its softmax while O_t-1 runs (FlashAttention-3's order)
            mbarrier.wait(kready.index(t % KS), (t // KS) & 1)
            s = warpgroup_mma(q_h, k_s.index(t % KS).permute((1, 0)), zero_s, use_acc=False,
                              is_async=True)
            mbarrier.wait(vready.index(j % VS), (j // VS) & 1)
            o = warpgroup_mma(p_op, v_s.index(j % VS), acc, is_async=True)
            mbarrier.arrive(turn.index(1 - HALF))
            s = warpgroup_mma_wait(num_outstanding=1, deps=(s, ))
            mbarrier.arrive(kempty.index(t % KS))
            p = _probs(s, m_s, o_ct, t, c_first, qk_scale, False)
            l += gl.sum(p, axis=1)
            p_b = p.to(dt)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(o, ))
            mbarrier.arrive(vempty.index(j % VS))
            p_op = gl.convert_layout(p_b, a_layout)
        else:
            mbarrier.wait(vready.index(j % VS), (j // VS) & 1)
            o = warpgroup_mma(p_op, v_s.index(j % VS), acc, is_async=True)
            mbarrier.wait(kready.index(t % KS), (t // KS) & 1)
            s = warpgroup_mma(q_h, k_s.index(t % KS).permute((1, 0)), zero_s, use_acc=False,
                              is_async=True)
            mbarrier.arrive(turn.index(1 - HALF))
            acc, s = warpgroup_mma_wait(num_outstanding=0, deps=(o, s))
            mbarrier.arrive(vempty.index(j % VS))
            mbarrier.arrive(kempty.index(t % KS))
            p = _probs(s, m_s, o_ct, t, c_first, qk_scale, False)
            l += gl.sum(p, axis=1)
            p_op = gl.convert_layout(p.to(dt), a_layout)
    mbarrier.wait(turn.index(HALF), (n_k & 1) ^ (1 - HALF))  # turn n_k: the last block's P V
    j = n_k - 1
    mbarrier.wait(vready.index(j % VS), (j // VS) & 1)
    o = warpgroup_mma(p_op, v_s.index(j % VS), acc, is_async=True)
    mbarrier.arrive(turn.index(1 - HALF))
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(o, ))
    mbarrier.arrive(vempty.index(j % VS))
    return acc, l


@gluon.jit
def _consumer(args, HALF: gl.constexpr):
    (desc_q, desc_k, desc_v, q_s, k_s, v_s, qbar, kready, kempty, vready, vempty, p_qh, p_v,
     p_s, p_y, p_lse, p_kmax, p_flag, p_proj, i_t, i_bh, T, NCP, stride_pb, stride_pt,
     stride_pc, qk_scale, OFF_Z, H, G, d, L, turn) = args
    # constexprs do not cross into the partitions: the block shapes come from the types
    BC: gl.constexpr = desc_k.block_type.shape[0]
    KS: gl.constexpr = k_s.type.shape[0]
    VS: gl.constexpr = v_s.type.shape[0]
    BT: gl.constexpr = 2 * 64
    R: gl.constexpr = 64
    BD: gl.constexpr = desc_k.block_type.shape[1]
    dt: gl.constexpr = desc_k.dtype
    D = H * d
    i_b = i_bh // H
    i_h = i_bh % H
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BC, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BD, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    col_o: gl.constexpr = gl.SliceLayout(0, o_layout)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    col_s: gl.constexpr = gl.SliceLayout(0, s_layout)

    o_t = i_t * BT + HALF * R + gl.arange(0, R, layout=row_o)
    o_d = gl.arange(0, BD, layout=col_o)
    m_t = o_t < T
    m_td = m_t[:, None] & (o_d < d)[None, :]
    q = gl.load(p_qh + (((i_b * G + i_h % G).to(gl.int64) * T + o_t[:, None]) * BD
                        + o_d[None, :]), mask=m_td, other=0.0).to(gl.float32)
    s_self = gl.load(p_s + i_bh * T + o_t, mask=m_t, other=0.0) * qk_scale
    m = gl.sqrt(gl.sum(q * q, axis=1)) * gl.load(p_kmax + i_bh) * qk_scale
    m = gl.maximum(m, s_self)
    ok = gl.max(m - s_self, axis=0) <= 100.0
    gl.store(p_flag + (i_bh * gl.cdiv(T, BT) + i_t) * 2 + HALF, 1 - ok.to(gl.int8))
    c_first = (i_t * BT + HALF * R) // L
    c_end = (gl.minimum(i_t * BT + BT, T) - 1) // L
    n_k = gl.cdiv(c_end, BC)

    l_self = gl.exp2(s_self - m)
    p_vt = p_v + i_b.to(gl.int64) * T * D + o_t[:, None] * D + i_h * d + o_d[None, :]
    acc = gl.load(p_vt, mask=m_td, other=0.0).to(gl.float32) * l_self[:, None]
    l = gl.convert_layout(l_self, row_s)
    m_s = gl.convert_layout(m, row_s)
    o_ct = gl.convert_layout(o_t // L, row_s)
    zero_s = gl.zeros([R, BC], gl.float32, layout=s_layout)
    mbarrier.wait(qbar, 0)
    q_h = q_s.index(HALF)
    # the consumers take turns issuing products (3 barriers: also S_t ahead of O_t-1)
    PP: gl.constexpr = turn.type.shape[0] >= 2
    AHEAD: gl.constexpr = turn.type.shape[0] == 3
    if ok:
        if n_k > 0:
            if PP:
                acc, l = _loop_pingpong(q_h, k_s, v_s, kready, kempty, vready, vempty, turn,
                                        acc, l, m_s, o_ct, c_first, n_k, qk_scale, HALF,
                                        AHEAD)
            else:
                acc, l = _loop_ahead(q_h, k_s, v_s, kready, kempty, vready, vempty, acc, l,
                                     m_s, o_ct, c_first, n_k, qk_scale)
        l_o = gl.convert_layout(l, row_o)
        y = acc / l_o[:, None]
        gl.store(p_lse + i_bh * T + o_t, m + gl.log2(l_o), mask=m_t)
        p_row = p_proj + i_b.to(gl.int64) * stride_pb + o_t[:, None] * stride_pt
        z = gl.load(p_row + (OFF_Z + i_h * d + o_d[None, :]) * stride_pc, mask=m_td,
                    other=0.0).to(gl.float32)
        y = y / (1.0 + gl.exp2(z * -1.4426950408889634))
        gl.store(p_y + i_b.to(gl.int64) * T * D + o_t[:, None] * D + i_h * d + o_d[None, :],
                 y.to(dt), mask=m_td)
    else:  # pass every stage (and turn) on: the other consumer and the producer wait for it
        for j in range(n_k):
            if PP:
                mbarrier.wait(turn.index(HALF), (j & 1) ^ (1 - HALF))
                mbarrier.arrive(turn.index(1 - HALF))
            mbarrier.wait(kready.index(j % KS), (j // KS) & 1)
            mbarrier.arrive(kempty.index(j % KS))
            mbarrier.wait(vready.index(j % VS), (j // VS) & 1)
            mbarrier.arrive(vempty.index(j % VS))
        if PP:
            if n_k > 0:
                mbarrier.wait(turn.index(HALF), (n_k & 1) ^ (1 - HALF))
                mbarrier.arrive(turn.index(1 - HALF))


@gluon.jit
def _consumer0(args):
    _consumer(args, 0)


@gluon.jit
def _consumer1(args):
    _consumer(args, 1)


@gluon.jit
def rat_fwd_ws_kernel(
    desc_q, desc_k, desc_v, p_qh, p_v, p_s, p_y, p_lse, p_kmax, p_flag, p_proj,
    T, NCP, stride_pb, stride_pt, stride_pc, qk_scale,
    OFF_Z: gl.constexpr, H: gl.constexpr, G: gl.constexpr, d: gl.constexpr, L: gl.constexpr,
    BC: gl.constexpr, KS: gl.constexpr, VS: gl.constexpr, CONSUMER_REGS: gl.constexpr,
    PINGPONG: gl.constexpr,
):
    gl.static_assert(KS >= 2)  # key tiles j+1 (scores in flight) and j+2 (loading)
    gl.static_assert(VS >= 3)  # value tiles j-1 .. j+1 (O_j-1 retires late)
    BD: gl.constexpr = desc_k.block_type.shape[1]
    dt: gl.constexpr = desc_k.dtype
    n_t = gl.cdiv(T, 128)
    i_t = n_t - 1 - gl.program_id(0)  # longest rows first
    i_bh = gl.program_id(1)
    q_s = gl.allocate_shared_memory(dt, [2, 64, BD], desc_q.layout)
    k_s = gl.allocate_shared_memory(dt, [KS, BC, BD], desc_k.layout)
    v_s = gl.allocate_shared_memory(dt, [VS, BC, BD], desc_v.layout)
    qbar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    kready = gl.allocate_shared_memory(gl.int64, [KS, 1], mbarrier.MBarrierLayout())
    kempty = gl.allocate_shared_memory(gl.int64, [KS, 1], mbarrier.MBarrierLayout())
    vready = gl.allocate_shared_memory(gl.int64, [VS, 1], mbarrier.MBarrierLayout())
    vempty = gl.allocate_shared_memory(gl.int64, [VS, 1], mbarrier.MBarrierLayout())
    mbarrier.init(qbar, count=1)
    for i in gl.static_range(KS):
        mbarrier.init(kready.index(i), count=1)
        mbarrier.init(kempty.index(i), count=2)  # one arrival per consumer
    for i in gl.static_range(VS):
        mbarrier.init(vready.index(i), count=1)
        mbarrier.init(vempty.index(i), count=2)
    # with PINGPONG one barrier per consumer, on which the other hands it the turn (its shape
    # carries the switch into the partitions, where constexpr arguments do not reach)
    N_TURN: gl.constexpr = 1 + PINGPONG  # 0: none, 1: ping-pong, 2: ping-pong, S_t ahead
    turn = gl.allocate_shared_memory(gl.int64, [N_TURN, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(N_TURN):
        mbarrier.init(turn.index(i), count=1)
    args = (desc_q, desc_k, desc_v, q_s, k_s, v_s, qbar, kready, kempty, vready, vempty, p_qh,
            p_v, p_s, p_y, p_lse, p_kmax, p_flag, p_proj, i_t, i_bh, T, NCP, stride_pb,
            stride_pt, stride_pc, qk_scale, OFF_Z, H, G, d, L, turn)
    gl.warp_specialize([(_consumer0, (args, )), (_consumer1, (args, )), (_producer, (args, ))],
                       [4, 1], [CONSUMER_REGS, 24])


def rat_fwd_ws(mod, proj, v, s, kc, vc, qh, kmax, y, lse, flag, BC, KS, VS, regs, pp,
               warmup=False):
    """y, lse as rat_attn_fwd_kernel's fixed-reference launch (flags per 64-row half)."""
    B, T, _ = proj.shape
    NCP = kc.shape[0] // (B * mod.H)
    grid = (triton.cdiv(T, 128), B * mod.H)
    qh2 = qh.view(-1, qh.shape[-1])
    args = (descriptor(qh2, 64), descriptor(kc, BC), descriptor(vc, BC), qh, v, s, y, lse, kmax,
            flag, proj, T, NCP, proj.stride(0), proj.stride(1), proj.stride(2),
            mod.SM_SCALE * mod.LOG2E)
    # 3 warpgroups (two consumers, the producer's warp): maxnreg 168 = 64512 registers a program,
    # the producer's group gives up all but 24 a thread, each consumer gets `regs`
    kw = dict(OFF_Z=mod.OFF_Z, H=mod.H, G=mod.GROUPS, d=mod.HEAD_DIM, L=mod.CHUNK, BC=BC,
              KS=KS, VS=VS, CONSUMER_REGS=regs, PINGPONG=int(pp), num_warps=4,
              maxnreg=168)
    if warmup:
        return rat_fwd_ws_kernel.warmup(*args, **kw, grid=grid)
    rat_fwd_ws_kernel[grid](*args, **kw)


# (BC, key stages, value stages, consumer registers, ping-pong)
CONFIGS = ((64, 2, 3, 240, 0), (128, 2, 3, 240, 0), (64, 2, 3, 240, 1), (128, 2, 3, 240, 1),
           (64, 3, 4, 240, 1))
if a.configs:
    CONFIGS = tuple(tuple(int(x) for x in c.split(",")) for c in a.configs.split(";"))

if a.compile:
    import types
    mod = types.SimpleNamespace(H=4, GROUPS=2, HEAD_DIM=128, CHUNK=16, BLOCK_D=128, OFF_Z=0,
                                SM_SCALE=128 ** -0.5, LOG2E=1.4426950408889634)
    B, T, BD = 1, 4096, 128
    NCP = T // 16
    bf = dict(dtype=torch.bfloat16)
    for BC, KS, VS, regs, pp in CONFIGS:
        k = rat_fwd_ws(mod, torch.zeros(B, T, 1024, **bf), torch.zeros(B, T, 512, **bf),
                       torch.zeros(B, 4, T), torch.zeros(B * 4 * NCP, BD, **bf),
                       torch.zeros(B * 4 * NCP, BD, **bf), torch.zeros(B, 2, T, BD, **bf),
                       torch.zeros(B * 4), torch.zeros(B, T, 512, **bf), torch.zeros(B, 4, T),
                       torch.zeros(B * 4 * T // 64, dtype=torch.int8), BC, KS, VS, regs, pp,
                       warmup=True)
        compile_report(k, f"WS BC {BC}, KS {KS}, VS {VS}, consumer regs {regs}, ping-pong {pp}")
    raise SystemExit(0)

# GPU: against MODULE's Triton forward attention (fixed-reference launch, train record)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diag_session10"))
from _common import load, rel  # noqa: E402
from triton.testing import do_bench  # noqa: E402

mod = load(a.module)
print(torch.cuda.get_device_name(), flush=True)
for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(mod.D, device="cuda", generator=g)
    cfg = mod._launch_config(proj.clone().requires_grad_(), mode="train")
    v = torch.empty(B, T, mod.D, device="cuda", dtype=torch.bfloat16)
    s, kc, vc, NCP, qh, kmax = mod._rat_scan(proj, bias, cfg, v, None, rows=mod.MAX_BC)
    scale = mod.SM_SCALE * mod.LOG2E

    def triton_fwd():
        y = torch.empty(B, T, mod.D, device="cuda", dtype=torch.bfloat16)
        lse = torch.empty(B, mod.H, T, device="cuda")
        flag = torch.empty(B * mod.H * triton.cdiv(T, cfg["BT"]), device="cuda",
                           dtype=torch.int8)
        desc_k, desc_v = mod._descriptors(kc, vc, cfg["BC"])
        mod.rat_attn_fwd_kernel[(triton.cdiv(T, cfg["BT"]), B * mod.H)](
            p_proj=proj, p_qh=qh, p_v=v, p_s=s, desc_k=desc_k, desc_v=desc_v, p_y=y, p_lse=lse,
            p_kmax=kmax, p_flag=flag, STORE_LSE=True, T=T, BH=B * mod.H, NCP=NCP,
            **mod._strides_shape(proj), qk_scale=scale, OFF_Z=mod.OFF_Z, OFF_Q=mod.OFF_Q,
            BLOCK_D=mod.BLOCK_D, BT=cfg["BT"], BC=cfg["BC"], PRECISION="tf32",
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], FIXED=True,
            FALLBACK_BLOCKS=mod.FALLBACK_BLOCKS)
        return y, lse, flag

    ref, l0, f0 = triton_fwd()
    assert int(f0.sum()) == 0, "random inputs flagged a block"
    t_ref = do_bench(triton_fwd, rep=300)
    print(f"T={T} B={B} Triton forward attention (record BT {cfg['BT']}, BC {cfg['BC']}, "
          f"{cfg['num_warps']} warps, {cfg['num_stages']} stages): {t_ref:.3f} ms", flush=True)
    for BC, KS, VS, regs, pp in CONFIGS:
        y = torch.empty_like(ref)
        lse = torch.empty_like(l0)
        flag = torch.zeros(B * mod.H * triton.cdiv(T, 128) * 2, device="cuda", dtype=torch.int8)

        def ws():
            rat_fwd_ws(mod, proj, v, s, kc, vc, qh, kmax, y, lse, flag, BC, KS, VS, regs, pp)
        name = f"WS BC {BC}, KS {KS}, VS {VS}, consumer regs {regs}, ping-pong {pp}"
        try:
            ws()
            torch.cuda.synchronize()
            err, lerr = rel(y, ref), (lse - l0).abs().max().item()
            ms = do_bench(ws, rep=300)
        except Exception as e:  # noqa: BLE001
            print(f"  {name}: FAIL {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        print(f"  {name}: {ms:.3f} ms ({t_ref / ms:.3f}x), y rel. err {err:.1e}, lse max diff "
              f"{lerr:.1e}, flags {int(flag.sum())}", flush=True)
    del proj, v, s, kc, vc, qh, ref, l0
    torch.cuda.empty_cache()
