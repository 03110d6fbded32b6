"""Gradients of the sliding-window and full-attention Triton kernels (AttentionFunction: forward
with lse, then templates/attention_bwd.py.jinja) against autograd of the float64 reference
`ratc.reference.mixer_core`, part by part (dx, dq, dk of proj).

On a CPU machine the kernels run under TRITON_INTERPRET=1 (tiny shapes, 16/32-wide blocks); the
`gpu` tests add medium sizes in bf16, fp16 and fp32 with the default CONFIG.
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

from test_kernels_attention import SPECS, dense_reference, make_mixer, make_proj  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# relative error ||grad - ref|| / ||ref|| allowed per part and dtype
TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}
SMALL = {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1,
         "BWD_BLOCK_M1": 16, "BWD_BLOCK_N1": 16, "BWD_BLOCK_M2": 16, "BWD_BLOCK_N2": 16,
         "bwd_num_warps": 4, "bwd_num_stages": 1}
PARTS = ("x", "q", "k")


def part_errors(m, grad: torch.Tensor, ref: torch.Tensor) -> dict[str, tuple[float, str]]:
    """Per part of proj: relative error and a message naming the worst element.

    A part whose reference gradient is exactly zero (dq, dk when every query sees one key: T = 1,
    W = 0) is measured against the norm of the whole reference gradient instead.
    """
    grad, ref = grad.double(), ref.double()
    offsets, off = {}, 0
    for part, size in m.in_split:
        offsets[part], off = off, off + size
    out = {}
    for name in PARTS:
        off = offsets[name]
        g, r = grad[..., off:off + m.d_model], ref[..., off:off + m.d_model]
        if not torch.isfinite(g).all():
            bad = (~torch.isfinite(g)).nonzero()[0].tolist()
            out[name] = math.inf, f"d{name}: non-finite at [b, t, c] = {bad}"
            continue
        diff = (g - r).abs()
        scale = r.norm() if r.norm() > 0 else ref.norm()
        err = (diff.norm() / scale.clamp_min(1e-30)).item()
        idx = [int(v) for v in torch.unravel_index(diff.flatten().argmax(), diff.shape)]
        out[name] = err, (f"d{name}: rel err {err:.3g}; worst at [b, t, c] = {idx}: "
                          f"got {g[tuple(idx)].item():.6g}, ref {r[tuple(idx)].item():.6g}")
    return out


def reference_grad(m, proj: torch.Tensor, dy: torch.Tensor, dense: bool = False) -> torch.Tensor:
    """d(sum(y * dy))/d proj by autograd of the float64 reference (dense: on proj's device)."""
    p = proj.detach().double()
    if not dense:
        p = p.cpu()
    p.requires_grad_()
    y = dense_reference(m, p) if dense else mixer_core(m, p, None)
    y.backward(dy.double().to(p.device))
    return p.grad.to(proj.device)


def triton_grad(mod, proj: torch.Tensor, dy: torch.Tensor, config=None):
    """y and d(sum(y * dy))/d proj through AttentionFunction."""
    p = proj.detach().clone().requires_grad_()
    fn = getattr(mod, "swa", None) or getattr(mod, "attention")
    y = fn(p, config=config)
    y.backward(dy)
    return y, p.grad


def make_dy(B, T, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g, dtype=torch.float64).to(DEVICE, dtype)


# (B, T, H, d, W, rope, BLOCK_M, BLOCK_N, layout): backward blocks (the same for the dK/dV and dQ
# kernels), W None = full attention
CASES = [
    pytest.param(2, 1, 2, 16, 5, True, 16, 16, "contiguous", id="B2-T1-H2-d16-W5"),
    pytest.param(2, 37, 2, 24, 5, True, 16, 16, "padded", id="B2-T37-H2-d24-W5"),
    pytest.param(1, 50, 2, 16, 16, True, 16, 16, "time_major", id="B1-T50-H2-d16-W16"),
    pytest.param(1, 61, 1, 24, 23, True, 32, 16, "contiguous", id="B1-T61-H1-d24-W23-M32N16"),
    pytest.param(1, 61, 1, 24, 23, True, 16, 32, "contiguous", id="B1-T61-H1-d24-W23-M16N32"),
    pytest.param(1, 45, 2, 16, 19, False, 16, 16, "channel_stride", id="B1-T45-H2-d16-W19-nope"),
    pytest.param(1, 33, 2, 24, 64, True, 16, 16, "contiguous", id="B1-T33-H2-d24-W64-WgeT"),
    pytest.param(1, 29, 1, 16, 0, True, 16, 16, "contiguous", id="B1-T29-H1-d16-W0"),
    pytest.param(1, 23, 3, 9, 4, False, 16, 16, "contiguous", id="B1-T23-H3-d9-W4-nope"),
    pytest.param(2, 1, 1, 24, None, True, 16, 16, "contiguous", id="B2-T1-H1-d24-full"),
    pytest.param(2, 50, 2, 16, None, True, 16, 16, "padded", id="B2-T50-H2-d16-full"),
    pytest.param(1, 45, 2, 24, None, False, 32, 16, "contiguous", id="B1-T45-H2-d24-full-nope-M32N16"),
    pytest.param(1, 35, 2, 24, None, True, 16, 32, "contiguous", id="B1-T35-H2-d24-full-M16N32"),
    pytest.param(1, 31, 2, 16, None, True, 16, 16, "time_major", id="B1-T31-H2-d16-full"),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("B, T, H, d, W, rope, BM, BN, layout", CASES)
def test_grad_matches_reference(B, T, H, d, W, rope, BM, BN, layout):
    m = make_mixer(H, d, W, rope)
    mod = load_kernel(m, SMALL)
    proj = make_proj(B, T, m.in_features, torch.float32, seed=T * 131 + d, layout=layout)
    dy = make_dy(B, T, m.d_model, torch.float32, seed=T + 7)
    blocks = dict(BWD_BLOCK_M1=BM, BWD_BLOCK_N1=BN, BWD_BLOCK_M2=BM, BWD_BLOCK_N2=BN)
    y, grad = triton_grad(mod, proj, dy, dict(SMALL, **blocks))
    assert grad.shape == proj.shape and grad.dtype == torch.float32
    ref = reference_grad(m, proj, dy)
    for name, (err, msg) in part_errors(m, grad, ref).items():
        assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
@pytest.mark.parametrize("W, rope, T", [
    pytest.param(5, True, 21, id="W5-rope-T21"),
    pytest.param(None, False, 19, id="full-nope-T19"),
    pytest.param(3, True, 1, id="W3-rope-T1"),
])
def test_bwd_writes_every_element(W, rope, T):
    """The backward launcher fills a NaN-poisoned dproj completely and agrees with autograd."""
    m = make_mixer(2, 16, W, rope)
    mod = load_kernel(m, SMALL)
    fwd = getattr(mod, "swa_fwd", None) or getattr(mod, "attention_fwd")
    bwd = getattr(mod, "swa_bwd", None) or getattr(mod, "attention_bwd")
    proj = make_proj(2, T, m.in_features, torch.float32, seed=T)
    dy = make_dy(2, T, m.d_model, torch.float32, seed=T + 1)
    lse = torch.empty(2, m.heads, T, dtype=torch.float32, device=DEVICE)
    y = fwd(proj, config=SMALL, lse=lse)
    out = torch.full_like(proj, float("nan"))
    grad = bwd(proj, y, lse, dy, config=SMALL, out=out)
    assert grad.data_ptr() == out.data_ptr()
    for name, (err, msg) in part_errors(m, grad, reference_grad(m, proj, dy)).items():
        assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
@pytest.mark.parametrize("spec, layer", [
    pytest.param("tiny_attention_swa.yaml", "swa", id="tiny_attention_swa-swa"),
    pytest.param("tiny_hybrid.yaml", "global", id="tiny_hybrid-global"),
])
def test_spec_layers_core_grad(spec, layer):
    """`core` of the tiny specs' layers, default CONFIG, is differentiable through the kernels."""
    m = lower(load_spec(os.path.join(SPECS, spec))).mixer(layer)
    mod = load_kernel(m)
    proj = make_proj(1, 27, m.in_features, torch.float32, seed=5).requires_grad_()
    dy = make_dy(1, 27, m.d_model, torch.float32, seed=6)
    mod.core(proj).backward(dy)
    for name, (err, msg) in part_errors(m, proj.grad, reference_grad(m, proj, dy)).items():
        assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
def test_broadcast_output_grad():
    """y.sum().backward() hands the backward an expanded dy (zero strides)."""
    m = make_mixer(2, 16, 3)
    mod = load_kernel(m, SMALL)
    proj = make_proj(1, 9, m.in_features, torch.float32, seed=2).requires_grad_()
    mod.core_triton(proj).sum().backward()
    ref = reference_grad(m, proj, torch.ones(1, 9, m.d_model, device=DEVICE))
    for name, (err, msg) in part_errors(m, proj.grad, ref).items():
        assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
def test_no_grad_path_builds_no_graph():
    """Without grad mode the Triton path is the plain forward: no lse, no autograd node."""
    m = make_mixer(1, 16, 4)
    mod = load_kernel(m, SMALL)
    proj = make_proj(1, 5, m.in_features, torch.float32, seed=1).requires_grad_()
    with torch.no_grad():
        assert mod.core_triton(proj).grad_fn is None
    assert "AttentionFunction" in type(mod.core_triton(proj).grad_fn).__name__


# -------------------------------------------------------------------------------------------------
# GPU: compiled kernels at medium sizes with the default CONFIG

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32],
                         ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("B, T, H, d, W, rope", [
    pytest.param(1, 2048 + 13, 8, 128, 512, True, id="B1-T2061-H8-d128-W512"),
    pytest.param(1, 2048 + 13, 8, 128, None, True, id="B1-T2061-H8-d128-full"),
    pytest.param(2, 1500, 4, 64, 333, True, id="B2-T1500-H4-d64-W333"),
    pytest.param(1, 1000, 4, 96, 200, False, id="B1-T1000-H4-d96-W200-nope"),
])
def test_gpu_grad_medium(B, T, H, d, W, rope, dtype):
    m = make_mixer(H, d, W, rope)
    mod = load_kernel(m)
    proj = make_proj(B, T, m.in_features, dtype, seed=T + d)
    dy = make_dy(B, T, m.d_model, dtype, seed=T)
    _, grad = triton_grad(mod, proj, dy)
    ref = reference_grad(m, proj, dy, dense=True)
    for name, (err, msg) in part_errors(m, grad, ref).items():
        assert err <= TOL[dtype], msg
