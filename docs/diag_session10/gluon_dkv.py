"""Session 10, a draft for the next GPU session: the RAT dK/dV kernel in Gluon, with its tensor-
core products left in flight while the exponentials and dS run (Hopper; Triton 3.6's
triton.experimental.gluon). Not used by ratc.

    python3 docs/diag_session10/gluon_dkv.py --compile       # CPU: compile for sm_90, print PTX order
    python3 docs/diag_session10/gluon_dkv.py MODULE          # GPU: against MODULE's Triton kernel

Per program: BC chunk-final keys of one head (K~, V~ tiles in shared memory, by TMA), then the
later query blocks of BT queries (q^ and do tiles through a STAGES-deep TMA ring). Each block:

    S^T = K q^T            wait (this also retires the previous block's dK product)
    dP^T = V do^T          issued, in flight
    P^T = exp2(S^T - lse)  masked (chunk c' < c(t)), while dP^T runs
    dV += P^T do           issued, in flight
    wait for dP^T (dV may still run); dS^T = P^T (dP^T - Delta)
    dK += dS^T q^          waited for (kept in flight across the loop's back edge, as first
                           written, ptxas serialized every product: its warning C7515)

Triton's tl.dot version (rat_attn_bwd_dkv_kernel) waits after every product instead. BC = 64
rows on one warpgroup (4 warps) or 128 on two (8 warps); d = 128 only (BLOCK_D).
"""
import argparse
import itertools
import sys
from pathlib import Path

import torch

ap = argparse.ArgumentParser()
ap.add_argument("module", nargs="?")
ap.add_argument("--compile", action="store_true")
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
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor  # noqa: E402


@gluon.jit
def _load_block(desc_q, desc_do, q_s, do_s, bars, stage, j, row_q, row_do, pred,
                BT: gl.constexpr):
    """TMA: query block j's q^ and do tiles into ring stage `stage` (if pred), on its barrier."""
    bar = bars.index(stage)
    mbarrier.expect(bar, desc_q.block_type.nbytes + desc_do.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(desc_q, [row_q + j * BT, 0], bar, q_s.index(stage), pred=pred)
    tma.async_copy_global_to_shared(desc_do, [row_do + j * BT, 0], bar, do_s.index(stage),
                                    pred=pred)


@gluon.jit
def rat_dkv_gluon_kernel(
    desc_q, desc_do, desc_k, desc_v, p_lse, p_delta, p_dkc, p_dvc,
    T, NC, NCP, qk_scale, H: gl.constexpr, G: gl.constexpr, L: gl.constexpr,
    BC: gl.constexpr, BT: gl.constexpr, BD: gl.constexpr, STAGES: gl.constexpr,
    num_warps: gl.constexpr,
):
    i_c = gl.program_id(0)
    i_bh = gl.program_id(1)
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BT, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BD, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)

    k_s = gl.allocate_shared_memory(desc_k.dtype, [BC, BD], desc_k.layout)
    v_s = gl.allocate_shared_memory(desc_v.dtype, [BC, BD], desc_v.layout)
    q_s = gl.allocate_shared_memory(desc_q.dtype, [STAGES, BT, BD], desc_q.layout)
    do_s = gl.allocate_shared_memory(desc_do.dtype, [STAGES, BT, BD], desc_do.layout)
    kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_bar, count=1)
    for s in gl.static_range(STAGES):
        mbarrier.init(bars.index(s), count=1)

    row_k = i_bh * NCP + i_c * BC
    mbarrier.expect(kv_bar, desc_k.block_type.nbytes + desc_v.block_type.nbytes)
    tma.async_copy_global_to_shared(desc_k, [row_k, 0], kv_bar, k_s)
    tma.async_copy_global_to_shared(desc_v, [row_k, 0], kv_bar, v_s)

    row_do = i_bh * T
    row_q = ((i_bh // H) * G + (i_bh % H) % G) * T  # head h reads group h % G's q^
    t_lo = (((i_c * BC + 1) * L) // BT) * BT  # the block holding the first reader
    n_blocks = gl.cdiv(T - t_lo, BT)
    for s in gl.static_range(STAGES - 1):  # the ring's first blocks
        _load_block(desc_q, desc_do, q_s, do_s, bars, s, s, row_q + t_lo, row_do + t_lo,
                    s < n_blocks, BT)
    mbarrier.wait(kv_bar, phase=0)

    o_k = i_c * BC + gl.arange(0, BC, layout=gl.SliceLayout(1, s_layout))
    zero_s = gl.zeros([BC, BT], gl.float32, layout=s_layout)
    # dV is carried as an asynchronous accumulator; dK's product is waited for in its block (left
    # in flight across the loop's back edge, ptxas serialized every wgmma: warning C7515)
    dk = gl.zeros([BC, BD], gl.float32, layout=o_layout)
    dv = warpgroup_mma_init(gl.zeros([BC, BD], gl.float32, layout=o_layout))
    for j in range(n_blocks):
        st = j % STAGES
        q_t = q_s.index(st)
        do_t = do_s.index(st)
        mbarrier.wait(bars.index(st), phase=(j // STAGES) & 1)
        s_t = warpgroup_mma(k_s, q_t.permute((1, 0)), zero_s, use_acc=False, is_async=True)
        # retires this product (the previous block's all are): the previous stage can be refilled
        s_t = warpgroup_mma_wait(num_outstanding=0, deps=(s_t, ))
        nj = j + STAGES - 1
        _load_block(desc_q, desc_do, q_s, do_s, bars, nj % STAGES, nj, row_q + t_lo,
                    row_do + t_lo, nj < n_blocks, BT)
        dp_t = warpgroup_mma(v_s, do_t.permute((1, 0)), zero_s, use_acc=False, is_async=True)
        o_t = t_lo + j * BT + gl.arange(0, BT, layout=gl.SliceLayout(0, s_layout))
        m_t = o_t < T
        lse = gl.load(p_lse + i_bh * T + o_t, mask=m_t, other=0.0)
        delta = gl.load(p_delta + i_bh * T + o_t, mask=m_t, other=0.0)
        p_t = gl.exp2(s_t * qk_scale - lse[None, :])
        p_t = gl.where((o_k[:, None] < (o_t // L)[None, :]) & m_t[None, :], p_t, 0.0)
        dv = warpgroup_mma(gl.convert_layout(p_t.to(desc_do.dtype), a_layout), do_t, dv,
                           is_async=True)
        dp_t = warpgroup_mma_wait(num_outstanding=1, deps=(dp_t, ))  # dV may still run
        ds_t = p_t * (dp_t - delta[None, :])
        dk = warpgroup_mma(gl.convert_layout(ds_t.to(desc_q.dtype), a_layout), q_t, dk)
    dv = warpgroup_mma_wait(num_outstanding=0, deps=(dv, ))
    mbarrier.invalidate(kv_bar)
    for s in gl.static_range(STAGES):
        mbarrier.invalidate(bars.index(s))

    o_r = i_c * BC + gl.arange(0, BC, layout=gl.SliceLayout(1, o_layout))
    o_d = gl.arange(0, BD, layout=gl.SliceLayout(0, o_layout))
    o_out = (i_bh * NCP + o_r)[:, None] * BD + o_d[None, :]
    m_out = (o_r < NC)[:, None] & (o_d < BD)[None, :]
    gl.store(p_dkc + o_out, dk * (qk_scale * 0.6931471805599453), mask=m_out)  # ln 2: 1/sqrt(d)
    gl.store(p_dvc + o_out, dv, mask=m_out)


def descriptor(t, rows):
    """A [rows, BD] TMA block descriptor over a 2-D bf16 tensor."""
    layout = gl.NVMMASharedLayout.get_default_for([rows, t.shape[1]], gl.bfloat16)
    return TensorDescriptor(t, list(t.shape), list(t.stride()), [rows, t.shape[1]], layout)


def rat_dkv_gluon(qh, do, lse, delta, kc, vc, T, NC, NCP, H, G, L, qk_scale, BC=64, BT=64,
                  STAGES=2, num_warps=4, warmup=False):
    """dK^, dV~ [B*H*NCP, BD] fp32 of the chunk-final states, as rat_attn_bwd_dkv_kernel
    computes them: qh [B*G*T, BD], do [B*H*T, BD], kc, vc [B*H*NCP, BD] bf16; lse, delta
    [B*H*T] fp32."""
    BD = qh.shape[1]
    dkc = torch.empty(kc.shape, dtype=torch.float32, device=kc.device)  # rows >= NC unwritten
    dvc = torch.empty_like(dkc)
    grid = (triton.cdiv(NC, BC), kc.shape[0] // NCP)
    args = (descriptor(qh, BT), descriptor(do, BT), descriptor(kc, BC), descriptor(vc, BC), lse,
            delta, dkc, dvc, T, NC, NCP, qk_scale)
    kw = dict(H=H, G=G, L=L, BC=BC, BT=BT, BD=BD, STAGES=STAGES, num_warps=num_warps)
    if warmup:
        return rat_dkv_gluon_kernel.warmup(*args, **kw, grid=grid)
    rat_dkv_gluon_kernel[grid](*args, **kw)
    return dkc, dvc


# (BC, BT, STAGES, warps): one warpgroup over 64 chunks, or two over 128 (the Triton record's)
CONFIGS = ((64, 64, 2, 4), (64, 64, 3, 4), (64, 128, 2, 4), (128, 64, 2, 8), (128, 64, 3, 8))

if a.compile:
    import subprocess
    import tempfile

    from triton.backends.nvidia.compiler import get_ptxas
    B, H, G, L, T, BD = 1, 4, 2, 16, 4096, 128
    NC = NCP = T // L
    bf = dict(dtype=torch.bfloat16)
    for BC, BT, STAGES, warps in CONFIGS:
        k = rat_dkv_gluon(torch.zeros(B * G * T, BD, **bf), torch.zeros(B * H * T, BD, **bf),
                          torch.zeros(B * H * T), torch.zeros(B * H * T),
                          torch.zeros(B * H * NCP, BD, **bf), torch.zeros(B * H * NCP, BD, **bf),
                          T, NC, NCP, H, G, L, 0.1, BC=BC, BT=BT, STAGES=STAGES,
                          num_warps=warps, warmup=True)
        ops = [line.split()[0] + (" " + line.split()[1] if "wait_group" in line else "")
               for line in map(str.strip, k.asm["ptx"].splitlines())
               if line.startswith(("wgmma.mma", "wgmma.wait", "wgmma.commit", "ex2"))]
        print(f"BC {BC}, BT {BT}, {STAGES} stages, {warps} warps: " + " ".join(
            f"{op.replace('.sync.aligned', '')} x{len(list(run))}"
            for op, run in itertools.groupby(ops)))
        # ptxas serializes wgmma (and says so, C7515) where it cannot keep them asynchronous
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(k.asm["ptx"])
        out = subprocess.run([get_ptxas(90).path, "-v", "--gpu-name=sm_90a", f.name, "-o",
                              f.name + ".cubin"], capture_output=True, text=True)
        print("  " + "\n  ".join(line for line in (out.stdout + out.stderr).splitlines()
                                 if "C7515" in line or "registers" in line or "spill" in line))
    raise SystemExit(0)

# GPU: the Triton kernel of MODULE (a generated RAT kernel module) against this one, on the
# forward's kept scan outputs (q^, the caches, lse) of random inputs, random do and Delta
import importlib.util  # noqa: E402

from triton.testing import do_bench  # noqa: E402

spec = importlib.util.spec_from_file_location("rat_module", a.module)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(torch.cuda.get_device_name(), flush=True)
for T, B in ((16384, 16), (131072, 2)):
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(mod.D, device="cuda", generator=g)
    cfg = mod._launch_config(proj.clone().requires_grad_(), mode="train")
    lse = torch.empty(B, mod.H, T, device="cuda")
    _, (v, kt, s, kc, vc, qh) = mod.rat_fwd(proj, bias, lse=lse, config=cfg, mode="train",
                                            keep=True)
    del v, kt, s
    NC, BD = T // mod.CHUNK, mod.BLOCK_D
    NCP = kc.shape[0] // (B * mod.H)
    do = torch.randn(B * mod.H * T, BD, device="cuda", dtype=torch.bfloat16, generator=g)
    delta = torch.randn(B * mod.H * T, device="cuda", generator=g) * 0.1
    qh2 = qh.view(B * mod.GROUPS * T, BD)
    scale = mod.SM_SCALE * mod.LOG2E

    def triton_dkv():
        dkc = torch.empty(kc.shape, device="cuda", dtype=torch.float32)
        dvc = torch.empty_like(dkc)
        desc_k, desc_v = mod._descriptors(kc, vc, cfg["BWD_BC"])
        desc_q, desc_do = mod._descriptors(qh2, do, cfg["BWD_BT"])
        mod.rat_attn_bwd_dkv_kernel[(triton.cdiv(NC, cfg["BWD_BC"]), B * mod.H)](
            desc_q=desc_q, desc_do=desc_do, p_lse=lse, p_delta=delta, desc_k=desc_k,
            desc_v=desc_v, p_dkc=dkc, p_dvc=dvc, T=T, NC=NC, NCP=NCP, qk_scale=scale, H=mod.H,
            G=mod.GROUPS, d=mod.HEAD_DIM, L=mod.CHUNK, BLOCK_D=BD, BT=cfg["BWD_BT"],
            BC=cfg["BWD_BC"], PRECISION="tf32", num_warps=cfg["bwd_num_warps"],
            num_stages=cfg["bwd_num_stages"])
        return dkc, dvc

    ref_k, ref_v = triton_dkv()
    t_ref = do_bench(triton_dkv, rep=200)
    print(f"T={T} B={B} Triton dK/dV (record {cfg['BWD_BT']}, {cfg['BWD_BC']}, "
          f"{cfg['bwd_num_warps']} warps, {cfg['bwd_num_stages']} stages): {t_ref:.3f} ms",
          flush=True)
    rows = (torch.arange(kc.shape[0], device="cuda") % NCP) < NC  # the written rows
    for BC, BT, STAGES, warps in CONFIGS:
        def gluon_dkv():
            return rat_dkv_gluon(qh2, do, lse, delta, kc, vc, T, NC, NCP, mod.H, mod.GROUPS,
                                 mod.CHUNK, scale, BC=BC, BT=BT, STAGES=STAGES, num_warps=warps)
        try:
            dk, dv = gluon_dkv()
            err = max(((x - r)[rows].norm() / r[rows].norm()).item()
                      for x, r in ((dk, ref_k), (dv, ref_v)))
            ms = do_bench(gluon_dkv, rep=200)
        except Exception as e:  # noqa: BLE001
            print(f"  Gluon BC {BC}, BT {BT}, {STAGES} stages, {warps} warps: FAIL "
                  f"{type(e).__name__}: {str(e)[:150]}", flush=True)
            continue
        print(f"  Gluon BC {BC}, BT {BT}, {STAGES} stages, {warps} warps: {ms:.3f} ms "
              f"({t_ref / ms:.2f}x), rel. err {err:.1e}", flush=True)
    del proj, kc, vc, qh, do, lse, delta
    torch.cuda.empty_cache()
