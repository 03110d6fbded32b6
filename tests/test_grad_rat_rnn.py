"""Gradients of the RAT and gated-RNN Triton kernels (RatFunction / RnnFunction: the forward, then
the backward kernels of templates/rat_bwd.py.jinja and rnn.py.jinja) against autograd of the
float64 reference `ratc.reference.mixer_core`, part by part (dz, dx, da, dq, dk of proj) and for
gate_bias. The reference's own gradients are checked by finite differences (torch.autograd.gradcheck)
in tests/test_reference.py; fp32 Triton kernels cannot be gradchecked directly.

On a CPU machine the kernels run under TRITON_INTERPRET=1 (tiny shapes, 16-wide blocks, so short
sequences still span several blocks); the `gpu` tests add medium sizes in bf16 and fp32 with the
default CONFIG. Every buffer a launcher allocates is NaN-poisoned in the interpreter tests, so an
element a kernel should have written but did not fails the comparison.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if not torch.cuda.is_available():  # must precede the first import of a rendered module
    os.environ["TRITON_INTERPRET"] = "1"

from ratc.codegen.render import load_kernel  # noqa: E402
from ratc.lower import lower  # noqa: E402
from ratc.reference import mixer_core  # noqa: E402
from ratc.spec import load_spec  # noqa: E402

import test_kernels_rat as rat  # noqa: E402
import test_kernels_rnn as rnn  # noqa: E402
from kernel_checks import poisoned  # noqa: E402, F401  (fixture)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SPECS = rat.SPECS

# relative error ||grad - ref|| / ||ref|| allowed per gradient and dtype
TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def grad_errors(m, grads: dict, refs: dict) -> dict[str, tuple[float, str]]:
    """Per gradient (each part of proj, and gate_bias): relative error and a message naming the
    worst element. A gradient whose reference is exactly zero (dq, dk when every softmax has only
    the self term; da when L = 1 and the input scale is 1) is measured against the norm of the
    whole reference gradient of proj instead."""
    whole = refs["proj"].double().norm()
    offsets, off = {}, 0
    for part, size in m.in_split:
        offsets[part], off = (off, size), off + size
    pairs = {f"d{p}": (grads["proj"][..., o:o + n], refs["proj"][..., o:o + n])
             for p, (o, n) in offsets.items()}
    if "bias" in grads:
        pairs["dgate_bias"] = grads["bias"], refs["bias"]
    out = {}
    for name, (g, r) in pairs.items():
        g, r = g.double(), r.double().to(g.device)
        if not torch.isfinite(g).all():
            bad = (~torch.isfinite(g)).nonzero()[0].tolist()
            out[name] = math.inf, (f"{name}: non-finite at {bad} "
                                   f"({int((~torch.isfinite(g)).sum())} elements)")
            continue
        diff = (g - r).abs()
        scale = r.norm() if r.norm() > 0 else whole
        err = (diff.norm() / scale.clamp_min(1e-30)).item()
        idx = tuple(int(v) for v in torch.unravel_index(diff.flatten().argmax(), diff.shape))
        out[name] = err, (f"{name}: rel err {err:.3g}; worst at {list(idx)}: "
                          f"got {g[idx].item():.6g}, ref {r[idx].item():.6g}")
    return out


def make_dy(B, T, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g, dtype=torch.float64).to(DEVICE, dtype)


def reference_grads(m, proj, bias, dy) -> dict:
    """d(sum(y * dy)) / d(proj, gate_bias) by autograd of the float64 reference, on the CPU."""
    p = proj.detach().double().cpu().requires_grad_()
    b = None if bias is None else bias.detach().double().cpu().requires_grad_()
    mixer_core(m, p, b).backward(dy.double().cpu())
    return {"proj": p.grad} | ({} if b is None else {"bias": b.grad})


def triton_grads(mod, proj, bias, dy, config=None) -> tuple[torch.Tensor, dict]:
    """y and d(sum(y * dy)) / d(proj, gate_bias) through core_triton's autograd Function."""
    p = proj.detach().clone().requires_grad_()
    b = None if bias is None else bias.detach().clone().requires_grad_()
    y = mod.core_triton(p, b, config)
    y.backward(dy)
    return y, {"proj": p.grad} | ({} if b is None else {"bias": b.grad})


def check(m, mod, proj, bias, dy, config, dtype):
    y, grads = triton_grads(mod, proj, bias, dy, config)
    assert grads["proj"].shape == proj.shape and grads["proj"].dtype == proj.dtype
    if bias is not None:
        assert grads["bias"].shape == bias.shape and grads["bias"].dtype == bias.dtype
    refs = reference_grads(m, proj, bias, dy)
    errors = grad_errors(m, grads, refs)
    bad = [msg for err, msg in errors.values() if not err <= TOL[dtype]]
    assert not bad, "\n".join(bad)


# -------------------------------------------------------------------------------------------------
# RAT


RAT_CASES = [
    rat.P(2, 1, 2, 16, 2, 4),  # one token
    rat.P(2, 3, 2, 16, 1, 8),  # T < L: no complete chunk, dq = dk = 0; G = 1
    rat.P(2, 13, 4, 16, 2, 4, layout="padded"),  # T not a multiple of L nor of BT
    rat.P(1, 37, 2, 16, 2, 2, "custom"),  # NC = 18 > BC: two key blocks, unmasked dq loop
    rat.P(1, 20, 2, 16, 2, 1),  # L = 1: attention over gated keys
    rat.P(1, 25, 4, 16, 4, 3, layout="time_major"),  # G = H
    rat.P(1, 37, 6, 16, 2, 4),  # H / G = 3 heads a group: padded to 4 in the scan backward
    rat.P(2, 21, 3, 16, 1, 2, SCAN_BK=2, BWD_SCAN_BK=1),  # 3 heads a group, one chunk a program
    rat.P(1, 37, 6, 16, 2, 4, BWD_SCAN_BK=4, bwd_scan_num_warps=1),  # 10 chunks over 4 a program
    # the scan backward's stages key (pipelining happens when compiled; interpreted, a plain loop)
    rat.P(1, 37, 6, 16, 2, 4, bwd_scan_num_stages=3),
    rat.P(1, 30, 2, 24, 1, 4),  # head dim 24 with chunk RoPE
    rat.P(2, 13, 2, 24, 2, 4, "custom", layout="channel_stride"),  # head dim 24, nope
    rat.P(1, 26, 2, 16, 2, 4, "mixed"),  # RoPE, exp(-softplus(a)), input scale 1, no output gate
    rat.P(1, 45, 2, 16, 1, 8, "custom", BT=32, SCAN_BK=1),
    rat.P(1, 20, 2, 16, 2, 1, "mixed"),  # L = 1 with input scale 1: the gate drops out, da = 0
    # backward blocks unlike the forward's: the recomputed caches are padded to BWD_BC rows
    rat.P(2, 75, 2, 24, 2, 2, BWD_BC=32, BWD_BT=32, BC=16),
    # dq's blocks unlike dK/dV's, both ways: the caches are padded to the larger block
    rat.P(1, 70, 2, 16, 1, 2, DQ_BC=32, DQ_BT=32),
    rat.P(2, 47, 2, 16, 2, 1, "custom", BWD_BC=32, DQ_BT=32),
]


def check_rat(B, T, H, d, G, L, variant, layout, cfg, dtype, seeds, base=None):
    """One RAT case through check: a mixer rendered with launch config `base`, run with base
    updated by cfg; seeds: of the inputs and of dy."""
    m = rat.make_mixer(H, d, G, L, variant)
    mod = load_kernel(m, base)
    proj, bias = rat.make_inputs(B, T, m, dtype, seed=seeds[0], layout=layout)
    dy = make_dy(B, T, m.d_model, dtype, seed=seeds[1])
    check(m, mod, proj, bias, dy, dict(base or {}, **cfg), dtype)


@pytest.mark.interpreter
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", RAT_CASES)
def test_rat_grad_matches_reference(B, T, H, d, G, L, variant, layout, cfg, poisoned):
    check_rat(B, T, H, d, G, L, variant, layout, cfg, torch.float32,
              seeds=(T * 131 + d, T + 7), base=rat.SMALL)


@pytest.mark.interpreter
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", [
    rat.P(2, 37, 2, 16, 2, 4),  # two key blocks, a partial last chunk
    rat.P(1, 26, 2, 24, 1, 2, "mixed", layout="padded"),
])
def test_rat_grad_fp16(B, T, H, d, G, L, variant, layout, cfg, poisoned):
    """The backward keeps its [B, T, D] intermediates (recomputed v~ and k~, P_self do, dq^, the
    per-head dq and dk) in proj's dtype: fp16 against the float64 reference. bf16 runs compiled
    only (test_gpu_rat_grad_medium): under TRITON_INTERPRET=1 (triton 3.6, CPU) the bf16
    gradients come out wrong by orders of magnitude, with fp32 intermediates as with these."""
    check_rat(B, T, H, d, G, L, variant, layout, cfg, torch.float16,
              seeds=(T * 17 + d, T + 3), base=rat.SMALL)


@pytest.mark.interpreter
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", [
    rat.P(2, 3, 2, 16, 1, 8),  # no complete chunk
    rat.P(2, 13, 4, 16, 2, 4, layout="padded"),
    rat.P(2, 75, 2, 24, 2, 2, BWD_BC=32, BWD_BT=32, BC=16),  # backward blocks unlike the forward's
])
def test_rat_recompute_scan_gives_the_same_gradients(B, T, H, d, G, L, variant, layout, cfg,
                                                     poisoned, monkeypatch):
    """The backward from the forward's kept scan outputs (the default) and from its own scan
    (RECOMPUTE_SCAN = True): the same kernels on the same inputs, so the same bits; only the
    caches' padding rows differ (MAX_BC against the backward's blocks), and no kernel reads those
    unmasked."""
    m = rat.make_mixer(H, d, G, L, variant)
    mod = load_kernel(m, rat.SMALL)
    proj, bias = rat.make_inputs(B, T, m, torch.float32, seed=T, layout=layout)
    dy = make_dy(B, T, m.d_model, torch.float32, seed=T + 1)
    config = dict(rat.SMALL, **cfg)
    assert not mod.RECOMPUTE_SCAN
    y, kept = triton_grads(mod, proj, bias, dy, config)
    monkeypatch.setattr(mod, "RECOMPUTE_SCAN", True)
    y2, again = triton_grads(mod, proj, bias, dy, config)
    assert torch.equal(y, y2)
    for name in kept:
        assert torch.equal(kept[name], again[name]), name


# -------------------------------------------------------------------------------------------------
# gated RNN


RNN_CASES = [
    rnn.P(2, 1, 32),  # one token
    rnn.P(2, 7, 32, layout="padded"),  # one partial block: no carry passes
    rnn.P(1, 16, 32),  # exactly one block
    rnn.P(2, 37, 32, layout="time_major"),  # 3 blocks, the last partial
    rnn.P(1, 29, 40, "custom"),  # D not a multiple of BD; exp(-softplus(a)), scale 1, no gate
    rnn.P(1, 29, 32, "square", layout="channel_stride"),
    rnn.P(1, 24, 32, BT=8, BS=8),  # one scan tile per block, 3 blocks
    rnn.P(1, 40, 16, BT=32, BS=16, BD=16, CARRY_BD=16),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("B, T, D, variant, layout, cfg", RNN_CASES)
def test_rnn_grad_matches_reference(B, T, D, variant, layout, cfg, poisoned):
    m = rnn.make_mixer(D, variant)
    mod = load_kernel(m, rnn.SMALL)
    proj, bias = rnn.make_inputs(B, T, m, torch.float32, seed=T * 17 + D, layout=layout)
    dy = make_dy(B, T, D, torch.float32, seed=T + 3)
    check(m, mod, proj, bias, dy, dict(rnn.SMALL, **cfg), torch.float32)


# -------------------------------------------------------------------------------------------------
# both: the spec layers through `core`, no gate bias, and the emitted PyTorch path


@pytest.mark.interpreter
@pytest.mark.parametrize("spec, layer, family", [
    pytest.param("tiny_rat.yaml", "rat", rat, id="tiny_rat-rat"),
    pytest.param("tiny_hybrid.yaml", "rat_nope", rat, id="tiny_hybrid-rat_nope"),
    pytest.param("tiny_hybrid.yaml", "rnn", rnn, id="tiny_hybrid-rnn"),
])
def test_spec_layers_grad(spec, layer, family, poisoned):
    """The layers of the tiny specs as written: `core` dispatches to the differentiable Triton
    path; with gate_bias None only proj gets a gradient."""
    m = lower(load_spec(os.path.join(SPECS, spec))).mixer(layer)
    mod = load_kernel(m, family.SMALL)
    proj, bias = family.make_inputs(1, 19, m, torch.float32, seed=11)
    dy = make_dy(1, 19, m.d_model, torch.float32, seed=5)
    for b in (bias, None):
        p = proj.detach().clone().requires_grad_()
        mod.core(p, b).backward(dy)
        refs = reference_grads(m, proj, b, dy)
        errors = grad_errors(m, {"proj": p.grad}, {"proj": refs["proj"]})
        bad = [msg for err, msg in errors.values() if not err <= TOL[torch.float32]]
        assert not bad, "\n".join(bad)


@pytest.mark.interpreter
@pytest.mark.parametrize("family", ["rat", "rnn"])
def test_no_grad_path_skips_the_function(family):
    """Without gradients core_triton launches the forward only and returns a plain tensor."""
    if family == "rat":
        m = rat.make_mixer(2, 16, 2, 4)
        mod = load_kernel(m, rat.SMALL)
        proj, bias = rat.make_inputs(1, 9, m, torch.float32, seed=2)
    else:
        m = rnn.make_mixer(32)
        mod = load_kernel(m, rnn.SMALL)
        proj, bias = rnn.make_inputs(1, 9, m, torch.float32, seed=2)
    y = mod.core_triton(proj, bias)
    assert y.grad_fn is None
    y_grad = mod.core_triton(proj.clone().requires_grad_(), bias)
    assert type(y_grad.grad_fn).__name__.startswith("RatFunction" if family == "rat" else
                                                    "RnnFunction")
    assert torch.equal(y, y_grad.detach())


@pytest.mark.parametrize("family", ["rat", "rnn"])
def test_core_torch_gradcheck(family):
    """The emitted PyTorch path stays differentiable: finite differences in float64."""
    if family == "rat":
        m = rat.make_mixer(2, 4, 1, 2, "paper")
    else:
        m = rnn.make_mixer(4)
    mod = load_kernel(m)
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(1, 5, m.in_features, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(m.d_model, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(mod.core_torch, (proj, bias))


# -------------------------------------------------------------------------------------------------
# GPU: compiled kernels at medium sizes with the default CONFIG

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", [
    rat.P(2, 2048 + 13, 8, 128, 2, 16),  # the paper's layer, shorter
    rat.P(1, 3000, 8, 64, 8, 8, "custom"),
    rat.P(1, 2000, 4, 96, 1, 16, layout="padded"),
    rat.P(1, 1024 + 5, 2, 64, 2, 1, "mixed"),
    # the scan backward's token loop pipelined: its loads a step or two ahead
    rat.P(2, 2048 + 13, 8, 128, 2, 16, bwd_scan_num_stages=2, bwd_scan_num_warps=8),
    rat.P(1, 2000, 4, 96, 1, 16, layout="padded", bwd_scan_num_stages=3),
])
def test_gpu_rat_grad_medium(B, T, H, d, G, L, variant, layout, cfg, dtype):
    check_rat(B, T, H, d, G, L, variant, layout, cfg, dtype, seeds=(T + d, T))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("B, T, D, variant, layout, cfg", [
    rnn.P(2, 4096 + 13, 1024),
    rnn.P(1, 8000, 256, "custom", layout="padded"),
    rnn.P(3, 999, 200, "square"),
])
def test_gpu_rnn_grad_medium(B, T, D, variant, layout, cfg, dtype):
    m = rnn.make_mixer(D, variant)
    mod = load_kernel(m)
    proj, bias = rnn.make_inputs(B, T, m, dtype, seed=T + D, layout=layout)
    dy = make_dy(B, T, D, dtype, seed=T)
    check(m, mod, proj, bias, dy, cfg, dtype)
