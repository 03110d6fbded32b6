"""Fused RMSNorm (templates/rms_norm.py.jinja): forward, rstd and both gradients against a float64
reference; rounding like the PyTorch path it replaces; dispatch.

On a CPU machine the kernels run under TRITON_INTERPRET=1 (small awkward widths, row counts that
are no multiple of the block, a backward with several row blocks per program). The interpreter
truncates fp32 -> bf16 instead of rounding to nearest even, so the bit-level comparison with the
PyTorch path runs in fp16 there (bf16 too on a GPU); bf16 still checks against float64 within its
tolerance. Every buffer the launchers allocate is NaN-poisoned, so an unwritten element fails.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # must precede the first import of a rendered module
    os.environ["TRITON_INTERPRET"] = "1"

from ratc.codegen.render import load_rms_norm  # noqa: E402
from kernel_checks import rel_err, poisoned  # noqa: E402, F401  (poisoned: fixture)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5

# relative error ||y - ref|| / ||ref|| allowed per dtype (bf16 under the interpreter truncates)
TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}
SMALL = {"BLOCK_M": 4, "programs": 3}  # several row blocks per backward program, a partial last


@pytest.fixture(scope="module")
def mod():
    return load_rms_norm()


def make_inputs(shape, dtype, seed=0, layout="contiguous", weight_dtype=None):
    """x [*shape] (a view with row stride N + 24 for layout "padded"), weight [N] around 1 (so
    rounding n~ before the multiply matters), dy [*shape]."""
    g = torch.Generator().manual_seed(seed)
    N = shape[-1]

    def randn(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    if layout == "contiguous":
        x = randn(*shape).to(DEVICE, dtype)
    elif layout == "padded":
        x = randn(*shape[:-1], N + 24).to(DEVICE, dtype)[..., 8:8 + N]
    else:
        raise ValueError(layout)
    w = (1 + 0.5 * randn(N)).to(DEVICE, weight_dtype or dtype)
    return x, w, randn(*shape).to(DEVICE, dtype)


def reference(x, w, dy):
    """float64 y, rstd, dx, dw of the same (rounded) inputs: y = x / sqrt(mean(x^2) + eps) * w."""
    x64 = x.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    rstd = torch.rsqrt(x64.pow(2).mean(-1) + EPS)
    y = x64 * rstd[..., None] * w64
    y.backward(dy.double())
    return y.detach(), rstd.detach(), x64.grad, w64.grad


def triton_run(mod, x, w, dy, config=None):
    """y, rstd (from the forward op), dx, dw through rms_norm_triton and autograd."""
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    y = mod.rms_norm_triton(x, w, EPS, config)
    y.backward(dy)
    _, rstd, _ = mod.rms_norm_fwd(x.detach(), w.detach(), EPS, config)
    return y.detach(), rstd, x.grad, w.grad


def check(name, got, want, tol):
    err, msg = rel_err(got, want)
    assert err <= tol, f"{name}: {msg} (tolerance {tol:g})"


CASES = [
    pytest.param((37, 200), "contiguous", id="M37-N200"),
    pytest.param((3, 7, 384), "contiguous", id="B3-T7-N384"),
    pytest.param((5, 11, 200), "padded", id="B5-T11-N200-padded"),
    pytest.param((1, 48), "contiguous", id="M1-N48"),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("cfg", [None, SMALL], ids=["default", "BM4-P3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape, layout", CASES)
def test_triton_matches_float64_reference(mod, shape, layout, dtype, cfg, poisoned):
    x, w, dy = make_inputs(shape, dtype, layout=layout)
    y, rstd, dx, dw = triton_run(mod, x, w, dy, cfg)
    assert y.shape == x.shape and y.dtype == dtype and rstd.shape == x.shape[:-1]
    assert dx.shape == x.shape and dx.dtype == dtype and dw.shape == w.shape and dw.dtype == dtype
    y_ref, rstd_ref, dx_ref, dw_ref = reference(x, w, dy)
    check("y", y, y_ref, TOL[dtype])
    check("rstd", rstd, rstd_ref, 1e-6)
    check("dx", dx, dx_ref, TOL[dtype])
    check("dw", dw, dw_ref, TOL[dtype])


@pytest.mark.interpreter
@pytest.mark.parametrize("cfg", [None, SMALL], ids=["default", "BM4-P3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape, layout", CASES)
def test_residual_form(mod, shape, layout, dtype, cfg, poisoned):
    """rms_norm_triton(..., residual=True): y as without it, r an exact copy of x's rows in a
    new buffer, and dx = the norm's dx + r's gradient from the one backward launch."""
    x, w, dy = make_inputs(shape, dtype, layout=layout)
    dr = make_inputs(shape, dtype, seed=5)[2]
    N = shape[-1]
    xg, wg = x.detach().requires_grad_(), w.detach().requires_grad_()
    y, r = mod.rms_norm_triton(xg, wg, EPS, cfg, residual=True)
    assert r.shape == (x.numel() // N, N) and r.dtype == dtype and r.is_contiguous()
    assert torch.equal(r, x.reshape(-1, N)) and r.data_ptr() != x.data_ptr()
    torch.autograd.backward([y, r], [dy, dr.reshape(-1, N)])
    y_plain, _, dx_plain, dw_plain = triton_run(mod, x, w, dy, cfg)
    assert torch.equal(y, y_plain.detach()) and torch.equal(wg.grad, dw_plain)
    y_ref, _, dx_ref, _ = reference(x, w, dy)
    check("dx", xg.grad, dx_ref + dr.double(), TOL[dtype])
    with torch.no_grad():  # the launch without autograd writes the copy too
        y2, r2 = mod.rms_norm_triton(x, w, EPS, cfg, residual=True)
    assert torch.equal(y2, y.detach()) and torch.equal(r2, r.detach())


def test_residual_form_dispatch(mod):
    """rms_norm_residual: the Triton path where rms_norm takes it, else PyTorch's (float64 here),
    always a new [M, N] copy (a residual block adds into it in place)."""
    x = torch.randn(2, 3, 64, device=DEVICE, dtype=torch.float64, requires_grad=True)
    w = torch.ones(64, device=DEVICE, dtype=torch.float64)
    y, r = mod.rms_norm_residual(x, w, EPS)
    assert r.shape == (6, 64) and r.data_ptr() != x.data_ptr()
    assert torch.equal(y, mod.rms_norm_torch(x, w, EPS))
    out = r.addmm_(y.reshape(-1, 64), torch.eye(64, dtype=torch.float64)).view(x.shape)  # x + y
    g = torch.randn_like(out)
    out.backward(g)
    xr = x.detach().requires_grad_()
    (xr + mod.rms_norm_torch(xr, w, EPS)).backward(g)
    assert torch.allclose(x.grad, xr.grad)


def assert_rounds_like(got, want, dtype, max_mismatch=0.01):
    """got equals want except in a few elements, and there by at most two ulps: where rstd is
    an ulp apart (another summation order; rsqrt.approx on the GPU) n~ can round the other way,
    an ulp of n~ that the weight scales (|w| up to ~2), and y is rounded once more (seen on an
    H100: 1.828 against 1.8125 in bf16)."""
    diff = (got.float() - want.float()).abs()
    ulp = torch.finfo(dtype).eps * want.float().abs()
    frac = (got != want).float().mean().item()
    worst = int((diff - 2 * ulp).argmax())
    assert bool((diff <= 2 * ulp).all()), (
        f"more than two ulps off at flat index {worst}: got {got.flatten()[worst].item():.6g}, "
        f"PyTorch path {want.flatten()[worst].item():.6g}")
    assert frac <= max_mismatch, f"{frac:.1%} of the elements differ from the PyTorch path"


ROUNDING_DTYPES = [torch.float16] + ([torch.bfloat16] if torch.cuda.is_available() else [])


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", ROUNDING_DTYPES, ids=str)
def test_forward_rounds_like_the_pytorch_path(mod, dtype, poisoned):
    """n~ = round(x * rstd) first, then n~ * w rounded once: a kernel that rounded only
    x * rstd * w differs from the PyTorch path in about a quarter of the elements."""
    x, w, _ = make_inputs((37, 200), dtype, seed=1)
    with torch.no_grad():
        assert_rounds_like(mod.rms_norm(x, w, EPS), mod.rms_norm_torch(x, w, EPS), dtype)


@pytest.mark.interpreter
def test_mixed_dtypes_promote_like_the_pytorch_path(mod):
    """fp16 x with an fp32 weight: y in fp32 as the PyTorch path gives, dx fp16, dw fp32."""
    x, w, dy = make_inputs((9, 200), torch.float16, seed=2, weight_dtype=torch.float32)
    y, _, dx, dw = triton_run(mod, x, w, dy.float())
    assert y.dtype == torch.float32 and dx.dtype == torch.float16 and dw.dtype == torch.float32
    with torch.no_grad():
        check("y vs PyTorch path", y, mod.rms_norm_torch(x, w, EPS), 1e-6)
    y_ref, _, dx_ref, dw_ref = reference(x, w, dy.float())
    check("dx", dx, dx_ref, TOL[torch.float16])
    check("dw", dw, dw_ref, TOL[torch.float16])  # dw sums dy * n~, n~ rounded to fp16
    n_rounded = torch.nn.functional.rms_norm(x.float(), (200,), None, EPS).half()  # n~
    check("dw vs sum(dy * n~)", dw, (dy.double() * n_rounded.double()).sum(0), 1e-6)


@pytest.mark.interpreter
def test_no_rows(mod):
    x = torch.empty(2, 0, 200, device=DEVICE, requires_grad=True)
    w = torch.ones(200, device=DEVICE, requires_grad=True)
    y = mod.rms_norm_triton(x, w, EPS)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_dispatch(mod, monkeypatch):
    """Triton for fp16/bf16/fp32 with unit channel stride (CUDA or the interpreter); the PyTorch
    path for float64, strided channels and a CPU without the interpreter."""
    calls = []
    monkeypatch.setattr(mod, "rms_norm_triton", lambda x, w, eps: calls.append("triton") or x)
    monkeypatch.setattr(mod, "rms_norm_torch", lambda x, w, eps: calls.append("torch") or x)
    x = torch.randn(3, 64, device=DEVICE)
    w = torch.ones(64, device=DEVICE)
    mod.rms_norm(x, w, EPS)
    mod.rms_norm(x.half(), w.half(), EPS)
    mod.rms_norm(x.double(), w.double(), EPS)
    mod.rms_norm(torch.randn(3, 128, device=DEVICE)[:, ::2], w, EPS)  # channel stride 2
    mod.rms_norm(x, w.double(), EPS)  # float64 weight
    assert calls == ["triton", "triton", "torch", "torch", "torch"]
    if not torch.cuda.is_available():
        monkeypatch.delenv("TRITON_INTERPRET")
        calls.clear()
        mod.rms_norm(x, w, EPS)
        assert calls == ["torch"]


def test_triton_path_rejects_what_it_cannot_run(mod):
    x = torch.randn(3, 64, device=DEVICE)
    with pytest.raises(TypeError, match="fp16, bf16 or fp32"):
        mod.rms_norm_triton(x.double(), torch.ones(64, device=DEVICE), EPS)
    with pytest.raises(ValueError, match="weight"):
        mod.rms_norm_triton(x, torch.ones(32, device=DEVICE), EPS)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gpu_medium_against_the_pytorch_path(mod, dtype, poisoned):
    """4096 rows x 2048: the forward rounds like the PyTorch path; every output within tolerance
    of float64, and the gradients no less accurate than the PyTorch path's."""
    x, w, dy = make_inputs((2, 2048, 2048), dtype, seed=3)
    y, rstd, dx, dw = triton_run(mod, x, w, dy)
    xt, wt = x.detach().requires_grad_(), w.detach().requires_grad_()
    yt = mod.rms_norm_torch(xt, wt, EPS)
    yt.backward(dy)
    assert_rounds_like(y, yt.detach(), dtype)
    y_ref, rstd_ref, dx_ref, dw_ref = reference(x, w, dy)
    check("y", y, y_ref, TOL[dtype])
    check("rstd", rstd, rstd_ref, 1e-6)
    for name, got, torch_path, want in (("dx", dx, xt.grad, dx_ref), ("dw", dw, wt.grad, dw_ref)):
        check(name, got, want, TOL[dtype])
        err, msg = rel_err(got, want)
        err_torch, _ = rel_err(torch_path, want)
        assert err <= 1.25 * err_torch, (
            f"{name}: rel err {err:.3g} against float64, the PyTorch path's {err_torch:.3g}; {msg}")


def test_backward_stages_fit_shared_memory(mod):
    """The backward pipelines STAGES row blocks of x, dy (and dr) through shared memory, fewer
    where that many would pass STAGE_SMEM: 3 at the 1.3B spec's bf16 rows of 2048, 2 in fp32,
    none at the widest fp32 rows (MAX_N: one block alone is 192 KiB)."""
    def stages(n, dtype, with_dr, **config):
        x = torch.empty(8, n, dtype=dtype)
        cfg = mod._launch_config(x, config)
        return mod._bwd_stages(cfg, x, x, x if with_dr else None)

    assert mod.CONFIG["STAGES"] == 3
    assert stages(2048, torch.bfloat16, True) == 3
    assert stages(2048, torch.float32, True) == 2
    assert stages(2048, torch.float32, False) == 3
    assert stages(mod.MAX_N, torch.float32, True) == 1
    assert stages(2048, torch.bfloat16, True, STAGES=1) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, n", [(torch.bfloat16, 2048), (torch.float32, 2048),
                                      (torch.float32, 16384)], ids=["bf16-2048", "fp32-2048",
                                                                     "fp32-16384"])
def test_gpu_pipelined_backward_matches_one_stage(mod, dtype, n, poisoned):
    """The default backward (its loop pipelined: 3 stages, 2, 1 as _bwd_stages allows) gives
    exactly the one-stage launch's dx and dw, with dr and without."""
    x, w, dy = make_inputs((3, 1000, n), dtype, seed=7)
    dr = make_inputs((3, 1000, n), dtype, seed=8)[2]
    _, rstd, _ = mod.rms_norm_fwd(x, w, EPS)
    for r in (None, dr):
        dx, dw = mod.rms_norm_bwd(x, w, rstd, dy, dr=r)
        dx1, dw1 = mod.rms_norm_bwd(x, w, rstd, dy, config={"STAGES": 1}, dr=r)
        assert torch.equal(dx, dx1) and torch.equal(dw, dw1)
