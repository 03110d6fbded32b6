"""Sliding-window and full attention kernels (templates/attention.py.jinja) against the float64
reference `ratc.reference.mixer_core`.

On a CPU machine the Triton kernels run under TRITON_INTERPRET=1 (slow: tiny shapes, 16-wide
blocks). On a CUDA machine the same small cases run compiled, and the `gpu` tests add medium sizes
in bf16 and fp32.
"""

from __future__ import annotations

import dataclasses
import math
import os

import pytest
import torch

if not torch.cuda.is_available():  # must precede the first import of a rendered module
    os.environ["TRITON_INTERPRET"] = "1"

from ratc.codegen.render import load_kernel, render_kernel  # noqa: E402
from ratc.ir import LayerKind, Position  # noqa: E402
from ratc.lower import lower  # noqa: E402
from ratc.reference import mixer_core  # noqa: E402
from ratc.spec import load_spec  # noqa: E402
from kernel_checks import rel_err  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SPECS = os.path.join(os.path.dirname(__file__), "..", "specs")

# relative error ||y - ref|| / ||ref|| allowed per dtype
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 1e-2}
SMALL = {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1, "TMA": True}  # small: fast
# to interpret


def _base(kind: str):
    ir = lower(load_spec(os.path.join(SPECS, "tiny_attention_swa.yaml")))
    return ir.mixer("swa" if kind == "swa" else "attention")


def make_mixer(H: int, d: int, W: int | None, rope: bool = True, base: float = 10000.0):
    """A sliding-window (W an int) or full-attention (W None) mixer of H heads of width d."""
    m = _base("swa" if W is not None else "attention")
    return dataclasses.replace(m, d_model=H * d, heads=H, head_dim=d, window=W,
                               position=Position.ROPE if rope else Position.NOPE, rope_base=base)


def make_proj(B, T, F, dtype, seed, layout="contiguous"):
    """Random in_proj output [B, T, F] on DEVICE; `layout` picks a non-contiguous view."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):  # scaled up a little so the softmax is not nearly uniform
        return (1.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).to(DEVICE, dtype)

    if layout == "contiguous":
        return randn(B, T, F)
    if layout == "padded":  # row stride > F, storage offset 8
        return randn(B, T, F + 24)[..., 8:8 + F]
    if layout == "time_major":  # [T, B, F] storage seen as [B, T, F]
        return randn(T, B, F).transpose(0, 1)
    if layout == "channel_stride":  # channel stride 2
        return randn(B, T, 2 * F)[..., ::2]
    raise ValueError(layout)


def oracle(proj: torch.Tensor, H: int, d: int, W: int | None, rope: bool, base: float):
    """Independent loop-based float64 oracle (tiny sizes only)."""
    B, T, _ = proj.shape
    D = H * d
    p = proj.detach().double().cpu()
    x, q, k = p[..., :D], p[..., D:2 * D], p[..., 2 * D:]
    y = torch.zeros(B, T, D, dtype=torch.float64)

    def rot(vec, t):
        if not rope:
            return vec
        out = vec.clone()
        for i in range(d // 2):
            a = t * base ** (-2 * i / d)
            c, s = math.cos(a), math.sin(a)
            out[i] = vec[i] * c - vec[i + d // 2] * s
            out[i + d // 2] = vec[i + d // 2] * c + vec[i] * s
        return out

    for b in range(B):
        for h in range(H):
            sl = slice(h * d, (h + 1) * d)
            kr = [rot(k[b, s, sl], s) for s in range(T)]
            for t in range(T):
                qr = rot(q[b, t, sl], t)
                keys = range(0 if W is None else max(0, t - W), t + 1)
                sc = torch.stack([qr @ kr[s] for s in keys]) / math.sqrt(d)
                w = torch.softmax(sc, 0)
                y[b, t, sl] = sum(w[j] * x[b, s, sl] for j, s in enumerate(keys))
    return y


def dense_reference(m, proj: torch.Tensor) -> torch.Tensor:
    """float64 attention on proj's own device, query rows in chunks (for the GPU sizes).

    Written from DESIGN.md independently of the template; checked against `mixer_core` below.
    """
    B, T, _ = proj.shape
    H, d, D = m.heads, m.head_dim, m.d_model
    p = proj.double()
    v, q, k = (p[..., i * D:(i + 1) * D].unflatten(-1, (H, d)) for i in range(3))  # [B, T, H, d]
    t = torch.arange(T, device=p.device, dtype=torch.float64)
    if m.position is Position.ROPE:
        inv = m.rope_base ** (-torch.arange(0, d, 2, device=p.device, dtype=torch.float64) / d)
        ang = t[:, None, None] * inv  # [T, 1, d/2]
        c, s = ang.cos(), ang.sin()
        q, k = (torch.cat([x[..., :d // 2] * c - x[..., d // 2:] * s,
                           x[..., d // 2:] * c + x[..., :d // 2] * s], -1) for x in (q, k))
    y = torch.empty(B, T, H, d, dtype=torch.float64, device=p.device)
    for t0 in range(0, T, 512):
        tq = t[t0:t0 + 512, None]
        lag = tq - t[None, :]
        visible = (lag >= 0) & ((lag <= m.window) if m.window is not None else True)
        sc = torch.einsum("bthd,bshd->bhts", q[:, t0:t0 + 512], k) * d ** -0.5
        w = torch.softmax(sc.masked_fill(~visible, float("-inf")), -1)
        y[:, t0:t0 + 512] = torch.einsum("bhts,bshd->bthd", w, v)
    return y.flatten(-2)


def run_triton(mod, proj, config=None):
    """core's Triton path, writing into a NaN-poisoned output so unwritten elements fail."""
    B, T, _ = proj.shape
    out = torch.full((B, T, mod.D), float("nan"), dtype=proj.dtype, device=proj.device)
    fwd = getattr(mod, "swa_fwd", None) or getattr(mod, "attention_fwd")
    y = fwd(proj, config=config, out=out)
    assert y.data_ptr() == out.data_ptr()
    return y


# (B, T, H, d, W, rope, BLOCK_M, BLOCK_N, layout)
CASES = [
    pytest.param(2, 1, 2, 64, 5, True, 16, 16, "contiguous", id="B2-T1-H2-d64-W5"),
    pytest.param(2, 37, 2, 64, 5, True, 16, 16, "padded", id="B2-T37-H2-d64-W5"),
    pytest.param(1, 50, 2, 64, 16, True, 16, 16, "contiguous", id="B1-T50-H2-d64-W16"),
    pytest.param(1, 70, 2, 64, 40, True, 16, 16, "time_major", id="B1-T70-H2-d64-W40"),
    pytest.param(1, 61, 1, 64, 23, True, 32, 16, "contiguous", id="B1-T61-H1-d64-W23-M32N16"),
    pytest.param(1, 61, 1, 64, 23, True, 16, 32, "contiguous", id="B1-T61-H1-d64-W23-M16N32"),
    pytest.param(2, 45, 2, 128, 19, False, 16, 16, "channel_stride", id="B2-T45-H2-d128-W19-nope"),
    pytest.param(1, 33, 2, 128, 19, True, 16, 16, "contiguous", id="B1-T33-H2-d128-W19"),
    pytest.param(1, 33, 2, 64, 64, True, 16, 16, "contiguous", id="B1-T33-H2-d64-W64-WgeT"),
    pytest.param(1, 29, 2, 64, 0, True, 16, 16, "contiguous", id="B1-T29-H2-d64-W0"),
    pytest.param(1, 40, 2, 48, 9, True, 16, 16, "contiguous", id="B1-T40-H2-d48-W9"),
    pytest.param(1, 23, 3, 9, 4, False, 16, 16, "contiguous", id="B1-T23-H3-d9-W4-nope"),
    pytest.param(2, 1, 2, 64, None, True, 16, 16, "contiguous", id="B2-T1-H2-d64-full"),
    pytest.param(2, 50, 2, 64, None, True, 16, 16, "padded", id="B2-T50-H2-d64-full"),
    pytest.param(1, 45, 2, 128, None, False, 32, 16, "contiguous", id="B1-T45-H2-d128-full-nope"),
    pytest.param(1, 35, 2, 128, None, True, 16, 32, "contiguous", id="B1-T35-H2-d128-full-M16N32"),
    pytest.param(1, 31, 2, 16, None, True, 16, 16, "contiguous", id="B1-T31-H2-d16-full"),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("tma", [pytest.param(True, id="tma"), pytest.param(False, id="ptr")])
@pytest.mark.parametrize("B, T, H, d, W, rope, BM, BN, layout", CASES)
def test_triton_matches_reference(B, T, H, d, W, rope, BM, BN, layout, tma):
    """Pointer loads and (where strides allow, else the same pointer path) TMA descriptors."""
    m = make_mixer(H, d, W, rope)
    mod = load_kernel(m, SMALL)
    proj = make_proj(B, T, m.in_features, torch.float32, seed=T * 131 + d)
    ref = mixer_core(m, proj.double().cpu(), None).to(DEVICE)
    y = run_triton(mod, proj, dict(SMALL, BLOCK_M=BM, BLOCK_N=BN, TMA=tma))
    assert y.shape == (B, T, m.d_model) and y.dtype == torch.float32
    err, msg = rel_err(y, ref)
    assert err <= TOL[torch.float32], msg


@pytest.mark.parametrize("B, T, H, d, W, rope, BM, BN, layout", CASES)
def test_torch_matches_reference(B, T, H, d, W, rope, BM, BN, layout):
    m = make_mixer(H, d, W, rope)
    mod = load_kernel(m, SMALL)
    proj = make_proj(B, T, m.in_features, torch.float32, seed=T * 131 + d)
    ref = mixer_core(m, proj.double().cpu(), None).to(DEVICE)
    y = mod.core_torch(proj)
    assert y.shape == (B, T, m.d_model) and y.dtype == torch.float32
    err, msg = rel_err(y, ref)
    assert err <= TOL[torch.float32], msg
    y64 = mod.core_torch(proj.double())  # float64 in, float64 out, computed in float64
    assert y64.dtype == torch.float64
    err, msg = rel_err(y64, ref)
    assert err <= 1e-12, msg


@pytest.mark.parametrize("W, rope", [
    pytest.param(3, True, id="W3-rope"),
    pytest.param(None, False, id="full-nope"),
])
def test_reference_matches_loop_oracle(W, rope):
    """The project reference and the GPU tests' dense reference agree with a loop oracle."""
    H, d, T = 2, 8, 11
    m = make_mixer(H, d, W, rope, base=500.0)
    proj = make_proj(2, T, m.in_features, torch.float64, seed=7).cpu()
    want = oracle(proj, H, d, W, rope, 500.0)
    for name, got in (("mixer_core", mixer_core(m, proj, None)), ("dense", dense_reference(m, proj))):
        err, msg = rel_err(got, want)
        assert err <= 1e-12, f"{name}: {msg}"


@pytest.mark.parametrize("W", [pytest.param(7, id="W7"), pytest.param(None, id="full")])
def test_torch_chunked_queries(W, monkeypatch):
    """core_torch's query chunking (forced tiny here) gives the unchunked result."""
    m = make_mixer(2, 16, W)
    mod = load_kernel(m, SMALL)
    proj = make_proj(2, 53, m.in_features, torch.float64, seed=3)
    whole = mod.core_torch(proj)
    monkeypatch.setattr(mod, "QUERY_CHUNK_ELEMENTS", 2 * 2 * 5 * 60)  # about 5 query rows a chunk
    err, msg = rel_err(mod.core_torch(proj), whole)
    assert err <= 1e-13, msg


@pytest.mark.interpreter
@pytest.mark.parametrize("spec, layer", [
    pytest.param("tiny_attention_swa.yaml", "swa", id="tiny_attention_swa-swa"),
    pytest.param("tiny_attention_swa.yaml", "attention", id="tiny_attention_swa-attention"),
    pytest.param("tiny_hybrid.yaml", "local", id="tiny_hybrid-local"),
    pytest.param("tiny_hybrid.yaml", "global", id="tiny_hybrid-global"),
])
def test_spec_layers(spec, layer):
    """The layers of the tiny specs as written (head dims 16, 32, 64; rope base 500; nope)."""
    m = lower(load_spec(os.path.join(SPECS, spec))).mixer(layer)
    assert m.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION)
    mod = load_kernel(m, SMALL)
    proj = make_proj(2, 27, m.in_features, torch.float32, seed=11)
    ref = mixer_core(m, proj.double().cpu(), None).to(DEVICE)
    for name, y in (("triton", run_triton(mod, proj)), ("core", mod.core(proj))):
        err, msg = rel_err(y, ref)
        assert err <= TOL[torch.float32], f"{name}: {msg}"


def test_kernels_use_no_module_globals():
    """@triton.jit functions read no module-level names except through parameters: the
    interpreter allows that, compiled Triton does not (a CPU-only run would miss it)."""
    import ast

    for W, rope in ((8, True), (None, False)):
        tree = ast.parse(render_kernel(make_mixer(2, 64, W, rope)))
        names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in ast.walk(n)
                 if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        for f in tree.body:
            if not (isinstance(f, ast.FunctionDef)
                    and any(getattr(d, "attr", None) == "jit" for d in f.decorator_list)):
                continue
            own = {a.arg for a in f.args.args} | {t.id for t in ast.walk(f) if isinstance(
                t, ast.Name) and isinstance(t.ctx, ast.Store)}
            used = {t.id for t in ast.walk(f) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Load)}
            assert not (used & names) - own, f"{f.name} reads module globals {(used & names) - own}"


def test_render_config_and_names():
    """CONFIG comes from the render context; names follow STYLE.md."""
    swa = make_mixer(2, 64, 8)
    text = render_kernel(swa, {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 3})
    assert '"BLOCK_M": 64' in text and '"BLOCK_N": 32' in text
    assert "def swa_fwd_kernel(" in text and "def swa_fwd(" in text
    full = render_kernel(make_mixer(2, 64, None, rope=False))
    assert "def attention_fwd_kernel(" in full and "ROPE_BASE" not in full
    for name in ("bwd_preprocess_kernel(", "bwd_dkdv_kernel(", "bwd_dq_kernel(", "bwd("):
        assert f"def swa_{name}" in text and f"def attention_{name}" in full
    assert "def swa_rope_bwd_kernel(" in text and "rope_bwd_kernel" not in full
    assert "class AttentionFunction(torch.autograd.Function)" in text
    for bad in ("import numpy", "from ratc", "import ratc"):
        assert bad not in text and bad not in full


# -------------------------------------------------------------------------------------------------
# GPU: compiled kernels at medium sizes with the default (tuned) CONFIG

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32],
                         ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("B, T, H, d, W, rope", [
    pytest.param(2, 4096 + 13, 16, 128, 1024, True, id="B2-T4109-H16-d128-W1024"),
    pytest.param(2, 4096 + 13, 16, 128, None, True, id="B2-T4109-H16-d128-full"),
    pytest.param(1, 3000, 8, 64, 333, True, id="B1-T3000-H8-d64-W333"),
    pytest.param(1, 2000, 4, 96, 700, False, id="B1-T2000-H4-d96-W700-nope"),
])
def test_gpu_medium(B, T, H, d, W, rope, dtype):
    m = make_mixer(H, d, W, rope)
    mod = load_kernel(m)
    proj = make_proj(B, T, m.in_features, dtype, seed=T + d)
    ref = dense_reference(m, proj)  # mixer_core would do, but on the CPU it is slow at this size
    y = run_triton(mod, proj)
    err, msg = rel_err(y, ref)
    assert err <= TOL[dtype], msg
    if dtype == torch.float32:
        err, msg = rel_err(mod.core_torch(proj), ref)
        assert err <= TOL[dtype], f"core_torch: {msg}"
