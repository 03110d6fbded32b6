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
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import compile_layer, configs, script_args  # noqa: E402

a = script_args("BC,KS,VS,consumer_regs,pingpong")

import triton  # noqa: E402
from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402
from triton.experimental.gluon.language.nvidia.hopper import (  # noqa: E402
    mbarrier, tma, warpgroup_mma, warpgroup_mma_init, warpgroup_mma_wait)

from _gluon_common import _store_out, compile_report, descriptor  # noqa: E402

HALF_ROWS = 64  # query rows of one consumer warpgroup


@gluon.jit
def _producer(args):
    ring, _, shape = args
    desc_q, desc_k, desc_v, q_s, k_s, v_s, qbar, kready, kempty, vready, vempty, turn = ring
    i_t, i_bh, T, NCP, _, _, _, _, _, H, G, _, L = shape
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
    ring, ptrs, shape = args
    desc_q, desc_k, desc_v, q_s, k_s, v_s, qbar, kready, kempty, vready, vempty, turn = ring
    p_qh, p_v, p_s, p_y, p_lse, p_kmax, p_flag, p_proj = ptrs
    i_t, i_bh, T, NCP, stride_pb, stride_pt, stride_pc, qk_scale, OFF_Z, H, G, d, L = shape
    # constexprs do not cross into the partitions: the block shapes come from the types
    BC: gl.constexpr = desc_k.block_type.shape[0]
    KS: gl.constexpr = k_s.type.shape[0]
    VS: gl.constexpr = v_s.type.shape[0]
    BT: gl.constexpr = 2 * 64
    R: gl.constexpr = 64
    BD: gl.constexpr = desc_k.block_type.shape[1]
    D = H * d
    i_b = i_bh // H
    i_h = i_bh % H
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BC, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BD, 16])
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    col_o: gl.constexpr = gl.SliceLayout(0, o_layout)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)

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
        _store_out(acc, l_o, m, o_t, o_d, m_t, m_td, i_b, i_h, i_bh, T, D, d, p_lse, p_y, p_proj,
                   stride_pb, stride_pt, stride_pc, OFF_Z)
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
    args = ((desc_q, desc_k, desc_v, q_s, k_s, v_s, qbar, kready, kempty, vready, vempty, turn),
            (p_qh, p_v, p_s, p_y, p_lse, p_kmax, p_flag, p_proj),
            (i_t, i_bh, T, NCP, stride_pb, stride_pt, stride_pc, qk_scale, OFF_Z, H, G, d, L))
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
CONFIGS = configs(a, ((128, 2, 3, 240, 2), (64, 2, 3, 240, 2), (128, 2, 3, 240, 1),
                     (128, 2, 3, 240, 0)))

if a.compile:
    mod, t = compile_layer()
    for BC, KS, VS, regs, pp in CONFIGS:
        flag = torch.zeros(4 * 4096 // 64, dtype=torch.int8)
        k = rat_fwd_ws(mod, t["proj"], t["v"], t["s"], t["kc"], t["vc"], t["qh"], t["kmax"],
                       t["y"], t["lse"], flag, BC, KS, VS, regs, pp, warmup=True)
        compile_report(k, f"WS BC {BC}, KS {KS}, VS {VS}, consumer regs {regs}, ping-pong {pp}")
    raise SystemExit(0)

# GPU: against MODULE's Triton forward attention (fixed-reference launch, train record); flags
# per 64-row half
from _harness import forward_sweep  # noqa: E402

forward_sweep(
    a, CONFIGS, lambda mod, T, B, cf: B * mod.H * triton.cdiv(T, 128) * 2,
    lambda mod, c, y, lse, flag, cf: rat_fwd_ws(
        mod, c["proj"], c["v"], c["s"], c["kc"], c["vc"], c["qh"], c["kmax"], y, lse, flag, *cf),
    lambda cf: "WS BC {}, KS {}, VS {}, consumer regs {}, ping-pong {}".format(*cf))
