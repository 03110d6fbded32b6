"""Fused decode linears (templates/decode_linear.py.jinja): norm_linear = F.linear(rms_norm(h), W)
and linear_add = h + F.linear(y, W) against the unfused PyTorch path they replace and a float64
reference; rounding like that path; dispatch and the fallback past MAX_ROWS rows.

On a CPU machine the kernel runs under TRITON_INTERPRET=1 at small awkward sizes (K = 48, N = 40:
no multiple of any block; M from 1 to 16; a BLOCK_N of 8 inside the dot's 16-wide tile; several K
steps with a partial last one). The interpreter truncates fp32 -> bf16 instead of rounding to
nearest even, so the comparison at the ulp level runs in fp32 and fp16 there (bf16 too on a GPU);
bf16 checks within a tolerance. torch.empty hands out NaN (the poisoned fixture), so an unwritten
output element fails.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # must precede the first import of a rendered module
    os.environ["TRITON_INTERPRET"] = "1"

from ratc.codegen.render import load_decode_linear, render_decode_linear  # noqa: E402
from kernel_checks import rel_err, poisoned  # noqa: E402, F401  (poisoned: fixture)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5

# relative error ||y - ref|| / ||ref|| allowed per dtype (bf16 under the interpreter truncates)
TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
ULP_DTYPES = [torch.float16] + ([torch.bfloat16] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def mod():
    return load_decode_linear()


def make_inputs(lead, K, N, dtype, seed=0, layout="contiguous"):
    """x [*lead, K] (a view with row stride K + 24 for layout "padded", whose W is a view with row
    stride K + 8 too), g [K] around 1 (so rounding n~ before the multiply matters), W [N, K] with
    unit-variance products, r [*lead, N]."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64)

    if layout == "contiguous":
        x = randn(*lead, K).to(DEVICE, dtype)
        w = (randn(N, K) / K ** 0.5).to(DEVICE, dtype)
    elif layout == "padded":
        x = randn(*lead, K + 24).to(DEVICE, dtype)[..., 8:8 + K]
        w = (randn(N, K + 8) / K ** 0.5).to(DEVICE, dtype)[:, 8:]
    else:
        raise ValueError(layout)
    g = (1 + 0.5 * randn(K)).to(DEVICE, dtype)
    return x, g, w, randn(*lead, N).to(DEVICE, dtype)


def reference_norm_linear(x, g, w):
    """float64 F.linear(x / sqrt(mean(x^2) + eps) * g, W) of the same (rounded) inputs."""
    x64 = x.double()
    n = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + EPS)
    return torch.nn.functional.linear(n * g.double(), w.double())


def check(name, got, want, tol):
    err, msg = rel_err(got, want)
    assert err <= tol, f"{name}: {msg} (tolerance {tol:g})"


def assert_rounds_like(got, want, scale, dtype, ulps=2, max_mismatch=0.02):
    """got equals want except in a few elements, and there by at most `ulps` ulps of `scale`
    (|want|, or for linear_add the larger of |want| and the product it rounded first: an ulp of
    the product, another summation order's, survives the add). Another summation order in the
    fp32 accumulation (rstd too) moves a result across a rounding boundary now and then; a kernel
    that rounded in another order (n~ not rounded, or r added before the product's rounding)
    differs in 30-55% of the elements."""
    diff = (got.double() - want.double()).abs()
    bound = ulps * torch.finfo(dtype).eps * scale.double().abs()
    worst = int((diff - bound).argmax())
    assert bool((diff <= bound).all()), (
        f"more than {ulps} ulps off at flat index {worst}: got {got.flatten()[worst].item():.6g}, "
        f"unfused path {want.flatten()[worst].item():.6g}")
    frac = (got != want).float().mean().item()
    assert frac <= max_mismatch, f"{frac:.1%} of the elements differ from the unfused path"


def compare(name, got, want, ref, scale, dtype):
    """got against the unfused PyTorch path (want) and the float64 reference."""
    assert got.shape == want.shape and got.dtype == want.dtype
    check(f"{name} vs float64", got, ref, TOL[dtype])
    if dtype == torch.float32:
        check(f"{name} vs unfused", got, want, TOL[dtype])
    elif dtype in ULP_DTYPES:
        assert_rounds_like(got, want, scale, dtype)
    else:  # bf16 under the interpreter: truncated where the unfused path rounds, or vice versa
        check(f"{name} vs unfused", got, want, TOL[dtype])


P = pytest.param
CASES = [  # (leading dims of x, K, N, layout)
    P((1,), 48, 40, "contiguous", id="M1-K48-N40"),
    P((2,), 48, 40, "contiguous", id="M2-K48-N40"),
    P((5,), 48, 40, "padded", id="M5-K48-N40-padded"),
    P((16,), 48, 40, "contiguous", id="M16-K48-N40"),
    P((2, 1), 48, 40, "contiguous", id="B2x1-K48-N40"),
    P((5,), 300, 200, "contiguous", id="M5-K300-N200"),
]
CONFIGS = [  # None: CONFIG (BLOCK_K clamped to 64 at K = 48)
    P(None, id="default"),
    P({"BLOCK_N": 8, "BLOCK_K": 32, "num_warps": 2}, id="BN8-BK32"),  # 16-wide tile, half masked
    P({"BLOCK_N": 32, "BLOCK_K": 16, "num_stages": 2}, id="BN32-BK16"),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("lead, K, N, layout", CASES)
def test_norm_linear_matches_unfused_path(mod, lead, K, N, layout, dtype, cfg, poisoned):
    x, g, w, _ = make_inputs(lead, K, N, dtype, layout=layout)
    got = mod.norm_linear_triton(x, g, EPS, w, cfg)
    want = mod.norm_linear_torch(x, g, EPS, w)
    assert got.shape == (*lead, N) and got.is_contiguous()
    compare("norm_linear", got, want, reference_norm_linear(x, g, w), want, dtype)


@pytest.mark.interpreter
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("lead, K, N, layout", CASES)
def test_linear_add_matches_unfused_path(mod, lead, K, N, layout, dtype, cfg, poisoned):
    y, _, w, r = make_inputs(lead, K, N, dtype, seed=1, layout=layout)
    if layout == "padded":  # a strided residual too
        r = torch.randn(*lead, N + 4, device=DEVICE).to(dtype)[..., 4:]
    got = mod.linear_add_triton(y, w, r, cfg)
    want = mod.linear_add_torch(y, w, r)
    assert got.shape == (*lead, N) and got.is_contiguous()
    product = torch.nn.functional.linear(y, w)
    ref = r.double() + torch.nn.functional.linear(y.double(), w.double())
    compare("linear_add", got, want, ref, torch.maximum(want.abs(), product.abs()), dtype)


@pytest.mark.interpreter
def test_more_rows_than_max_take_the_unfused_path(mod, monkeypatch):
    """M = MAX_ROWS + 1 ([17, K] and [3, 6, K]): the PyTorch path, bit for bit; the Triton
    functions refuse."""
    def no_triton(*args, **kwargs):
        raise AssertionError("the Triton path ran")

    for lead in ((mod.MAX_ROWS + 1,), (3, 6)):
        x, g, w, r = make_inputs(lead, 48, 40, torch.float16, seed=2)
        want_nl = mod.norm_linear_torch(x, g, EPS, w)
        want_la = mod.linear_add_torch(x, w, r)
        with monkeypatch.context() as m:
            m.setattr(mod, "decode_linear_fwd", no_triton)
            assert torch.equal(mod.norm_linear(x, g, EPS, w), want_nl)
            assert torch.equal(mod.linear_add(x, w, r), want_la)
        with pytest.raises(ValueError, match="at most 16 rows"):
            mod.norm_linear_triton(x, g, EPS, w)
        with pytest.raises(ValueError, match="at most 16 rows"):
            mod.linear_add_triton(x, w, r)


def test_dispatch(mod, monkeypatch):
    """Triton for one dtype of fp16/bf16/fp32, at most MAX_ROWS rows and W's K axis contiguous,
    nothing requiring grad (CUDA or the interpreter); the unfused path for the rest."""
    calls = []
    monkeypatch.setattr(mod, "decode_linear_fwd", lambda *a, **k: calls.append("triton"))
    monkeypatch.setattr(mod, "norm_linear_torch", lambda *a: calls.append("torch"))
    monkeypatch.setattr(mod, "linear_add_torch", lambda *a: calls.append("torch"))
    x, g, w, r = make_inputs((2,), 64, 32, torch.float32)
    mod.norm_linear(x, g, EPS, w)
    mod.linear_add(x, w, r)
    mod.norm_linear(x.half()[:, None], g.half(), EPS, w.half())  # [B, 1, D]
    mod.linear_add(x.bfloat16(), w.bfloat16(), r.bfloat16())
    assert calls == ["triton"] * 4
    calls.clear()
    mod.norm_linear(x.double(), g.double(), EPS, w.double())  # float64
    mod.norm_linear(x, g.half(), EPS, w)  # mixed dtypes
    mod.linear_add(x, w.half(), r)
    mod.linear_add(x, torch.randn(64, 32, device=DEVICE).t(), r)  # W's K axis strided
    mod.norm_linear(torch.randn(17, 64, device=DEVICE), g, EPS, w)  # 17 rows
    mod.linear_add(x, w.requires_grad_(), r)  # a gradient to keep
    assert calls == ["torch"] * 6
    with torch.no_grad():
        mod.linear_add(x, w, r)
    assert calls[-1] == "triton"
    if not torch.cuda.is_available():
        monkeypatch.delenv("TRITON_INTERPRET")
        calls.clear()
        mod.norm_linear(x, g, EPS, w.detach())
        assert calls == ["torch"]


@pytest.mark.interpreter
def test_no_rows_and_no_features(mod):
    x, g, w, r = make_inputs((0,), 48, 40, torch.float32)
    assert mod.norm_linear_triton(x, g, EPS, w).shape == (0, 40)
    assert mod.linear_add_triton(x, w, r).shape == (0, 40)
    x, g, w, _ = make_inputs((3,), 48, 0, torch.float32)
    assert mod.norm_linear_triton(x, g, EPS, w).shape == (3, 0)


def test_triton_path_rejects_what_it_cannot_run(mod):
    x, g, w, r = make_inputs((2,), 64, 32, torch.float32)
    with pytest.raises(ValueError, match="one dtype"):
        mod.norm_linear_triton(x.double(), g.double(), EPS, w.double())
    with pytest.raises(ValueError, match="unit stride along K"):
        mod.linear_add_triton(x, torch.randn(64, 32, device=DEVICE).t(), r)
    with pytest.raises(ValueError, match="norm_weight"):
        mod.norm_linear_triton(x, g[:32], EPS, w)
    with pytest.raises(ValueError, match="residual"):
        mod.linear_add_triton(x, w, r[:, :16])


def test_module_reads_in_style_order():
    """Reference path, kernel, launcher, public functions; no import of ratc or numpy."""
    text = render_decode_linear()
    order = [text.index(n) for n in ("def norm_linear_torch(", "def decode_linear_fwd_kernel(",
                                     "def decode_linear_fwd(", "def norm_linear(")]
    assert order == sorted(order)
    for bad in ("import numpy", "from ratc", "import ratc"):
        assert bad not in text


# -------------------------------------------------------------------------------------------------
# GPU: compiled kernel at the decode step's sizes (D = 2048: in_proj N = 6656, out_proj N = 2048)


@pytest.mark.gpu
@pytest.mark.parametrize("M", [2, 16])
@pytest.mark.parametrize("N", [6656, 2048])
def test_gpu_decode_sizes_against_the_unfused_path(mod, N, M, poisoned):
    """bf16, K = 2048: both functions within two ulps of the unfused path (cuBLAS, the RMSNorm
    kernel), and no further from float64 than it is."""
    x, g, w, r = make_inputs((M,), 2048, N, torch.bfloat16, seed=N + M)
    got, want = mod.norm_linear(x, g, EPS, w), mod.norm_linear_torch(x, g, EPS, w)
    assert_rounds_like(got, want, want, torch.bfloat16)
    ref = reference_norm_linear(x, g, w)
    check("norm_linear vs float64", got, ref, 1.25 * rel_err(want, ref)[0] + 1e-6)
    got, want = mod.linear_add(x, w, r), mod.linear_add_torch(x, w, r)
    product = torch.nn.functional.linear(x, w)
    assert_rounds_like(got, want, torch.maximum(want.abs(), product.abs()), torch.bfloat16)
    ref = r.double() + torch.nn.functional.linear(x.double(), w.double())
    check("linear_add vs float64", got, ref, 1.25 * rel_err(want, ref)[0] + 1e-6)


@pytest.mark.gpu
def test_gpu_cuda_graph_replays_both(mod):
    """Both launches captured in a CUDA graph (no host sync, no data-dependent allocation): a
    replay on new inputs equals eager calls."""
    x, g, w_in, _ = make_inputs((2,), 2048, 6656, torch.bfloat16, seed=5)
    _, _, w_out, _ = make_inputs((2,), 2048, 2048, torch.bfloat16, seed=6)

    def step(h):
        u = mod.norm_linear(h, g, EPS, w_in)
        return mod.linear_add(u[:, :2048], w_out, h)

    h = x.clone()
    step(h)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step(h)
    h.copy_(torch.randn_like(h))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, step(h))
