"""Session 8 diagnostic: Triton 3.6's Hopper warp specialisation (`tl.range(..., warp_specialize=
True)`) on the RAT attention forward kernel. Variants of the generated module, made by replacing
text: the key loops warp-specialised, with the caches' TMA descriptors made on the host (as built)
or in the kernel (`tl.make_tensor_descriptor`, which Hopper's data partitioning wants), at a few
launch shapes. Each variant's y is compared with the module as built; its kernel time comes from
torch.profiler (ms per call).

    python3 docs/diag_session8/diag_ws.py generated/rat_swa/kernels/rat_rat.py [TxB ...]
    python3 docs/diag_session8/diag_ws.py generated/rat_swa/kernels/rat_rat.py --compile-only
"""
import importlib.util
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

SRC = open(sys.argv[1]).read()
COMPILE_ONLY = "--compile-only" in sys.argv
sizes = [(int(t), int(b)) for t, b in (s.split("x") for s in sys.argv[2:] if "x" in s)] or \
    [(16384, 16), (131072, 2)]

LOOP = "    for k0 in range(lo, hi, BC):\n        b_kc = desc_k.load"
WS_BOTH = [(LOOP, "    for k0 in tl.range(lo, hi, BC, warp_specialize=True):\n        b_kc = desc_k.load")]
DEVICE_DESC = [
    ("    desc_k, desc_v = _descriptors(kc, vc, cfg[\"BC\"])\n    rat_attn_fwd_kernel",
     "    desc_k, desc_v = kc, vc\n    rat_attn_fwd_kernel"),
    ("    i_b, i_h = i_bh // H, i_bh % H\n    D: tl.constexpr = H * d\n    o_t = i_t * BT",
     "    i_b, i_h = i_bh // H, i_bh % H\n"
     "    desc_k = tl.make_tensor_descriptor(desc_k, shape=[tl.num_programs(1) * NCP, d],\n"
     "                                       strides=[BLOCK_D, 1], block_shape=[BC, BLOCK_D])\n"
     "    desc_v = tl.make_tensor_descriptor(desc_v, shape=[tl.num_programs(1) * NCP, d],\n"
     "                                       strides=[BLOCK_D, 1], block_shape=[BC, BLOCK_D])\n"
     "    D: tl.constexpr = H * d\n    o_t = i_t * BT"),
]
# Triton 3.6's Hopper pass (nvgpu-warp-specialization) specialises only a kernel with one such
# loop whose dot operands all come through TMA: q too, and not two loops (both compile-asserted
# on a CPU build, see README). So: q^ through a descriptor, and one loop over every key block,
# masked throughout (or only from the first block a query of the block cannot see, by a branch).
Q_DESC = [
    ("    b_q = tl.load(p_qh + (((i_b * G + i_h % G).to(tl.int64) * T + o_t[:, None]) * BLOCK_D\n"
     "                          + o_d[None, :]), mask=m_td, other=0.0)",
     "    desc_q = tl.make_tensor_descriptor(p_qh, shape=[(tl.num_programs(1) // H) * G * T, d],\n"
     "                                       strides=[BLOCK_D, 1], block_shape=[BT, BLOCK_D])\n"
     "    b_q = desc_q.load([(i_b * G + i_h % G) * T + i_t * BT, 0])"),
]
ONE_LOOP = [
    ("    b_m, b_l, b_acc = _rat_attn_inner(b_q, b_m, b_l, b_acc, desc_k, desc_v, i_bh * NCP, o_ct,\n"
     "                                      0, c_mid, qk_scale, BC, False, PRECISION)\n", ""),
    ("                                      c_mid, c_end, qk_scale, BC, True, PRECISION)",
     "                                      0, c_end, qk_scale, BC, True, PRECISION)"),
]
MASK_BRANCH = [
    ("        if MASKED:\n            o_k = k0 + tl.arange(0, BC)",
     "        if k0 + BC > o_ct_min:\n            o_k = k0 + tl.arange(0, BC)"),
    ("    for k0 in tl.range(lo, hi, BC, warp_specialize=True):",
     "    o_ct_min = tl.min(o_ct)\n    for k0 in tl.range(lo, hi, BC, warp_specialize=True):"),
]
VARIANTS = {
    "as built": [],
    "q desc, one masked loop": Q_DESC + ONE_LOOP,
    "WS q desc, one loop, host kv": WS_BOTH + Q_DESC + ONE_LOOP,
}
COMPILE_ONLY_VARIANTS = {  # compiled, not specialised or not faster to expect: not timed
    "WS q desc, one loop, dev kv": WS_BOTH + Q_DESC + ONE_LOOP + DEVICE_DESC,
    "WS q desc, one loop, branch": WS_BOTH + Q_DESC + ONE_LOOP + DEVICE_DESC + MASK_BRANCH,
}
# dK/dV: the same constraints; q^ and do come through TMA already, so one masked loop from the
# first query block that reads the block's first chunk
DKV_LOOP = [("    for t0 in range(lo, hi, BT):\n        o_t = t0 + tl.arange(0, BT)\n        b_q = desc_q",
             "    for t0 in tl.range(lo, hi, BT, warp_specialize=True):\n"
             "        o_t = t0 + tl.arange(0, BT)\n        b_q = desc_q")]
_first = "row_q, row0, o_k, t_first, t_open, T, qk_scale, L, BT, True,"
_rest = SRC[SRC.index(_first):SRC.index("    o_cache = (i_bh * NCP + o_k[:, None]) * BLOCK_D + o_d[None, :]\n    m = (o_k < NC)")]
DKV_ONE_LOOP = [(_rest, "row_q, row0, o_k, t_first, T, T, qk_scale, L, BT, True,\n"
                        "                                    PRECISION)\n")]
BWD_VARIANTS = {
    "as built": [],
    "dkv one masked loop": DKV_ONE_LOOP,
    "WS dkv one loop": DKV_LOOP + DKV_ONE_LOOP,
}
# (BWD_BT, BWD_BC, bwd_num_warps, bwd_num_stages); None: the record
BWD_SHAPES = [None, (64, 128, 4, 2), (64, 64, 4, 2), (128, 64, 4, 2), (64, 128, 4, 3)]
# (BT, BC, num_warps, num_stages); None: the record
SHAPES = [None, (64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 4, 2), (128, 128, 4, 2), (64, 128, 4, 2)]


def load(name, edits):
    src = SRC
    for a, b in edits:
        assert a in src, a
        src = src.replace(a, b)
    f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    f.write(src)
    f.close()
    spec = importlib.util.spec_from_file_location(f"variant_{abs(hash(name))}", f.name)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def kernel_ms(fn, reps=10):
    from torch.profiler import ProfilerActivity, profile
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / 1e3 / reps for e in prof.key_averages()
            if e.device_time_total > 0}


def shape_cfg(base, shape, bwd=False):
    if shape is None:
        return dict(base)
    BT, BC, nw, ns = shape
    if bwd:
        return base | dict(BWD_BT=BT, BWD_BC=BC, bwd_num_warps=nw, bwd_num_stages=ns)
    return base | dict(BT=BT, BC=BC, num_warps=nw, num_stages=ns)


if COMPILE_ONLY:  # sm_90 through ptxas on a CPU machine (scripts/compile_check.py's driver)
    import compile_check
    from triton.runtime import jit
    compile_check.install(90, [])
    kernels = []
    compile_only = jit.JITFunction.run

    def keep(self, *args, **kwargs):
        kernels.append((self.fn.__name__, compile_only(self, *args, **kwargs)))
        return kernels[-1][1]

    jit.JITFunction.run = keep
    mods = {name: load(name, edits) for name, edits in (VARIANTS | COMPILE_ONLY_VARIANTS).items()}
    proj = torch.zeros(1, 1024, mods["as built"].IN_FEATURES, dtype=torch.bfloat16)
    bias = torch.zeros(mods["as built"].D)
    for name, m in mods.items():
        for shape in SHAPES[1:]:
            kernels.clear()
            try:
                m.rat_fwd(proj, bias, config=shape_cfg(m.CONFIG, shape), mode="train")
                k = dict(kernels)["rat_attn_fwd_kernel"]
                print(f"ok   {name:32s} {shape}  warp_specialize ops "
                      f"{k.asm['ttgir'].count('ttg.warp_specialize')}, shared {k.metadata.shared}",
                      flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"FAIL {name:32s} {shape}: {type(e).__name__}: {str(e)[:300]}", flush=True)
    bmods = {name: load(name, edits) for name, edits in BWD_VARIANTS.items()}
    y = torch.zeros(1, 1024, bmods["as built"].D, dtype=torch.bfloat16)
    lse = torch.zeros(1, bmods["as built"].H, 1024)
    for name, m in bmods.items():
        for shape in BWD_SHAPES[1:]:
            kernels.clear()
            try:
                m.rat_bwd(proj, bias, y, lse, y, config=shape_cfg(m.CONFIG, shape, True))
                k = dict(kernels)["rat_attn_bwd_dkv_kernel"]
                print(f"ok   {name:32s} {shape}  warp_specialize ops "
                      f"{k.asm['ttgir'].count('ttg.warp_specialize')}, shared {k.metadata.shared}",
                      flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"FAIL {name:32s} {shape}: {type(e).__name__}: {str(e)[:300]}", flush=True)
    sys.exit(0)

import triton  # noqa: E402

triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
mods = {name: load(name, edits) for name, edits in VARIANTS.items()}
print(torch.cuda.get_device_name())
for T, B in sizes:
    base = mods["as built"]
    proj = torch.randn(B, T, base.IN_FEATURES, device="cuda", dtype=torch.bfloat16)
    proj.requires_grad_()
    rec = base._launch_config(proj, mode="train")
    p = proj.detach()
    bias = torch.randn(base.D, device="cuda", dtype=torch.float32)
    lse = torch.empty(B, base.H, T, device="cuda", dtype=torch.float32)
    y_ref = base.rat_fwd(p, bias, lse=lse, config=rec, mode="train").float()
    print(f"T={T} B={B} record: { {k: rec[k] for k in ('BT', 'BC', 'num_warps', 'num_stages')} }")
    for name, m in mods.items():
        for shape in SHAPES:
            cfg = shape_cfg(rec, shape)
            try:
                y = m.rat_fwd(p, bias, lse=lse, config=cfg, mode="train").float()
                err = ((y - y_ref).norm() / y_ref.norm()).item()
                ks = kernel_ms(lambda: m.rat_fwd(p, bias, lse=lse, config=cfg, mode="train"))
                ms = ks.get("rat_attn_fwd_kernel", float("nan"))
                print(f"  T={T} B={B} {name:32s} {str(shape or 'record'):22s} attention {ms:7.3f} ms"
                      f"  rel.err {err:.1e}", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"  T={T} B={B} {name:32s} {str(shape or 'record'):22s} FAIL "
                      f"{type(e).__name__}: {str(e)[:200]}", flush=True)
    del proj, p, lse
    torch.cuda.empty_cache()

bmods = {name: load(name, edits) for name, edits in BWD_VARIANTS.items()}
for T, B in sizes:
    base = bmods["as built"]
    proj = torch.randn(B, T, base.IN_FEATURES, device="cuda", dtype=torch.bfloat16)
    proj.requires_grad_()
    rec = base._launch_config(proj, mode="train")
    p = proj.detach()
    bias = torch.randn(base.D, device="cuda", dtype=torch.float32)
    lse = torch.empty(B, base.H, T, device="cuda", dtype=torch.float32)
    y = base.rat_fwd(p, bias, lse=lse, config=rec, mode="train")
    dy = torch.randn_like(y)
    ref = base.rat_bwd(p, bias, y, lse, dy, config=rec)[0].float()
    print(f"T={T} B={B} record: "
          f"{ {k: rec[k] for k in ('BWD_BT', 'BWD_BC', 'bwd_num_warps', 'bwd_num_stages')} }")
    for name, m in bmods.items():
        for shape in BWD_SHAPES:
            cfg = shape_cfg(rec, shape, bwd=True)
            try:
                g = m.rat_bwd(p, bias, y, lse, dy, config=cfg)[0].float()
                err = ((g - ref).norm() / ref.norm()).item()
                ks = kernel_ms(lambda: m.rat_bwd(p, bias, y, lse, dy, config=cfg))
                ms = ks.get("rat_attn_bwd_dkv_kernel", float("nan"))
                print(f"  T={T} B={B} {name:32s} {str(shape or 'record'):22s} dK/dV {ms:7.3f} ms"
                      f"  rel.err {err:.1e}", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"  T={T} B={B} {name:32s} {str(shape or 'record'):22s} FAIL "
                      f"{type(e).__name__}: {str(e)[:200]}", flush=True)
    del proj, p, lse, y, dy, ref
    torch.cuda.empty_cache()
