"""The decode step's small-row projections (templates/small_linear.py.jinja): RMSNorm fused into
in_proj and the residual into out_proj, against float64 references, and when the layers use them.

On a CPU machine the kernel runs under TRITON_INTERPRET=1, at awkward sizes with small blocks so
every mask is exercised (rows below the dot's 16, output and column counts no multiple of a
block); on a GPU also at the decode sizes of the paper's layer with the default configs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():  # must precede the first import of a rendered module
    os.environ["TRITON_INTERPRET"] = "1"

from ratc.build import import_built  # noqa: E402
from ratc.codegen.render import load_small_linear  # noqa: E402
from kernel_checks import rel_err  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5
TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2}  # the interpreter truncates to bf16
SMALL = {"BN": 16, "BK": 32, "num_warps": 4, "num_stages": 2}
SIZES = [(1, 64, 48), (3, 72, 100), (16, 40, 33)]  # (M, K, N)
if DEVICE == "cuda":
    SIZES += [(2, 2048, 2048), (16, 2048, 6656)]


@pytest.fixture(scope="module")
def mod():
    return load_small_linear()


def inputs(M, K, N, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=g) * 3
    nw = 1 + 0.3 * torch.randn(K, generator=g)
    w = torch.randn(N, K, generator=g) / K ** 0.5
    r = torch.randn(M, N, generator=g)
    return [t.to(DEVICE, dtype) for t in (x, nw, w, r)]


def check(y, want, tol):
    err, where = rel_err(y, want)
    assert err < tol, f"relative error {err:.2e} >= {tol:.0e}: {where}"


def rms_norm_ref(x, nw):
    x = x.double()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * nw.double()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("M,K,N", SIZES)
def test_norm_linear_matches_float64(mod, M, K, N, dtype):
    x, nw, w, _ = inputs(M, K, N, dtype)
    config = SMALL if K < 1024 else None
    y = mod.norm_linear(x, nw, EPS, w, config=config)
    assert y.shape == (M, N) and y.dtype == dtype
    want = rms_norm_ref(x, nw) @ w.double().T
    check(y, want, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("M,K,N", SIZES)
def test_linear_residual_matches_float64(mod, M, K, N, dtype):
    x, _, w, r = inputs(M, K, N, dtype, seed=1)
    config = SMALL if K < 1024 else None
    y = mod.linear_residual(x, w, r, config=config)
    assert y.shape == (M, N) and y.dtype == dtype
    want = r.double() + x.double() @ w.double().T
    check(y, want, TOL[dtype])


def test_linear_residual_reads_strided_rows(mod):
    """x and the residual as row slices of wider tensors (row stride > K, N)."""
    x, _, w, r = inputs(3, 72, 100, torch.float16, seed=2)
    xs = torch.zeros(3, 80, device=DEVICE, dtype=torch.float16)[:, :72].copy_(x)
    rs = torch.zeros(3, 128, device=DEVICE, dtype=torch.float16)[:, :100].copy_(r)
    y = mod.linear_residual(xs, w, rs, config=SMALL)
    check(y, r.double() + x.double() @ w.double().T, TOL[torch.float16])


def test_fits_only_few_half_precision_rows(mod):
    x = torch.zeros(2, 64, device=DEVICE, dtype=torch.bfloat16)
    w = torch.zeros(32, 64, device=DEVICE, dtype=torch.bfloat16)
    assert mod.fits(x, w)
    assert not mod.fits(x.float(), w.float())  # fp32: tl.dot would run TF32
    assert not mod.fits(x, w.half())
    assert not mod.fits(torch.zeros(mod.MAX_ROWS + 1, 64, dtype=torch.bfloat16, device=DEVICE), w)
    assert not mod.fits(x[:, :32], w)
    assert not mod.fits(x.t(), w.t())  # column stride 2 / not K-contiguous


def test_mixer_decode_uses_it_for_few_rows(monkeypatch):
    """A layer's decode takes the fused path for a few bf16 rows (and the unfused one otherwise),
    and both give the same step to bf16 rounding."""
    pkg = import_built(Path("generated") / "tiny_rat")
    torch.manual_seed(0)
    block = pkg.MIXERS["rat"](device=DEVICE, dtype=torch.bfloat16)
    for p in block.parameters():
        p.data.normal_(0, 0.3)
    h = torch.randn(2, block.in_proj.in_features, device=DEVICE, dtype=torch.bfloat16)
    small = pkg.layers.small_linear
    calls = []
    for name in ("norm_linear", "linear_residual"):
        real = getattr(small, name)
        monkeypatch.setattr(small, name, lambda *a, _f=real, _n=name, **k: (calls.append(_n),
                                                                            _f(*a, **k))[1])
    outs = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(small, "fits", lambda x, w: False)
        cache = block.init_cache(2, 8)
        outs.append(block.decode(h, cache))
    assert calls == ["norm_linear", "linear_residual"]
    check(outs[0], outs[1], TOL[torch.bfloat16])
