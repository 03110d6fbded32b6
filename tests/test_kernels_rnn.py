"""Gated RNN kernels (templates/rnn.py.jinja) against the float64 reference
`ratc.reference.mixer_core`.

On a CPU machine the Triton kernels run under TRITON_INTERPRET=1 (slow: tiny shapes and blocks, so
that even short sequences span several blocks and the carry pass runs). On a CUDA machine the same
small cases run compiled, and the `gpu` tests add medium sizes in bf16 and fp32. Every buffer the
launcher allocates is NaN-poisoned, so an element a kernel should have written but did not fails.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

if not torch.cuda.is_available():  # must precede the first import of a rendered module
    os.environ["TRITON_INTERPRET"] = "1"

from ratc.codegen.render import load_kernel, render_kernel  # noqa: E402
from ratc.gates import parse_gate  # noqa: E402
from ratc.ir import InputScale  # noqa: E402
from ratc.lower import lower  # noqa: E402
from ratc.reference import mixer_core  # noqa: E402
from ratc.spec import load_spec  # noqa: E402
from kernel_checks import rel_err, poisoned  # noqa: E402, F401  (poisoned: fixture)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SPECS = os.path.join(os.path.dirname(__file__), "..", "specs")

# relative error ||y - ref|| / ||ref|| allowed per dtype
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 1e-2}
SMALL = {"BT": 16, "BS": 8, "BD": 32, "num_warps": 4, "CARRY_BD": 32}  # 16-token blocks

VARIANTS = {
    "paper": dict(gate="sigmoid", scale="1 - g", ogate=True),
    "custom": dict(gate="exp(-softplus(a))", scale="1", ogate=False),
    "square": dict(gate="sigmoid(a)**2", scale="1 - g", ogate=True),  # tiny_hybrid's rnn
}


def make_mixer(D: int, variant: str = "paper"):
    """A gated-RNN mixer of width D with the options of `variant`."""
    m = lower(load_spec(os.path.join(SPECS, "tiny_rnn.yaml"))).mixer("rnn")
    v = VARIANTS[variant]
    return dataclasses.replace(
        m, name=f"rnn_{variant}", d_model=D, head_dim=D, forget_gate=parse_gate(v["gate"]),
        input_scale=InputScale(v["scale"]), output_gate=v["ogate"])


def make_inputs(B, T, m, dtype, seed, layout="contiguous"):
    """Random in_proj output [B, T, F] (a non-contiguous view per `layout`) and gate_bias [D]."""
    g = torch.Generator().manual_seed(seed)
    F = m.in_features

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)

    if layout == "contiguous":
        proj = randn(B, T, F)
    elif layout == "padded":  # row stride > F, storage offset 8
        proj = randn(B, T, F + 24)[..., 8:8 + F]
    elif layout == "time_major":  # [T, B, F] storage seen as [B, T, F]
        proj = randn(T, B, F).transpose(0, 1)
    elif layout == "channel_stride":  # channel stride 2
        proj = randn(B, T, 2 * F)[..., ::2]
    else:
        raise ValueError(layout)
    # gate bias log U(1, T_max - 1) as initialised: gates near 1, long memory
    u = 1 + (m.max_seq_len - 2) * torch.rand(m.d_model, generator=g, dtype=torch.float64)
    return proj, u.log().to(DEVICE, torch.float32)


def run_triton(mod, proj, bias, config=None):
    """core's Triton path, writing into a NaN-poisoned output."""
    B, T, _ = proj.shape
    out = torch.full((B, T, mod.D), float("nan"), dtype=proj.dtype, device=proj.device)
    y = mod.rnn_fwd(proj, bias, config=config, out=out)
    assert y.data_ptr() == out.data_ptr()
    return y


def reference(m, proj, bias):
    return mixer_core(m, proj.double().cpu(), bias.double().cpu()).to(proj.device)


def P(B, T, D, variant="paper", layout="contiguous", **cfg):  # noqa: N802
    """One case, with its id: B2-T37-D64[-variant][-layout][-config]."""
    name = f"B{B}-T{T}-D{D}"
    name += "" if variant == "paper" else f"-{variant}"
    name += "" if layout == "contiguous" else f"-{layout}"
    name += "".join(f"-{k}{v}" for k, v in cfg.items())
    return pytest.param(B, T, D, variant, layout, cfg, id=name)


CASES = [
    P(2, 1, 32),  # one token
    P(2, 7, 32, layout="padded"),  # one partial block: no carry pass
    P(1, 16, 32),  # exactly one block
    P(2, 37, 32, layout="time_major"),  # 3 blocks, the last partial
    P(1, 53, 40, "custom"),  # D not a multiple of BD; exp(-softplus(a)), input scale 1, no gate
    P(1, 29, 32, "square", layout="channel_stride"),
    P(1, 64, 32, BT=8, BS=8),  # one scan tile per block, 8 blocks
    P(1, 50, 16, BT=32, BS=16, BD=16, CARRY_BD=16),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("B, T, D, variant, layout, cfg", CASES)
def test_triton_matches_reference(B, T, D, variant, layout, cfg, poisoned):
    m = make_mixer(D, variant)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(B, T, m, torch.float32, seed=T * 17 + D, layout=layout)
    ref = reference(m, proj, bias)
    y = run_triton(mod, proj, bias, dict(SMALL, **cfg))
    assert y.shape == (B, T, D) and y.dtype == torch.float32
    err, msg = rel_err(y, ref)
    assert err <= TOL[torch.float32], msg


@pytest.mark.parametrize("B, T, D, variant, layout, cfg", CASES + [P(2, 200, 24, "custom")])
def test_torch_matches_reference(B, T, D, variant, layout, cfg):
    m = make_mixer(D, variant)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(B, T, m, torch.float32, seed=T * 17 + D, layout=layout)
    ref = reference(m, proj, bias)
    y = mod.core_torch(proj, bias)
    assert y.shape == (B, T, D) and y.dtype == torch.float32
    err, msg = rel_err(y, ref)
    assert err <= TOL[torch.float32], msg
    y64 = mod.core_torch(proj.double(), bias.double())  # float64 in, float64 out
    assert y64.dtype == torch.float64
    err, msg = rel_err(y64, ref)
    assert err <= 1e-12, msg


@pytest.mark.interpreter
@pytest.mark.parametrize("spec, layer", [
    pytest.param("tiny_rnn.yaml", "rnn", id="tiny_rnn-rnn"),
    pytest.param("tiny_hybrid.yaml", "rnn", id="tiny_hybrid-rnn"),
])
def test_spec_layers(spec, layer, poisoned):
    """The RNN layers of the tiny specs as written, through `core` (dispatch) and no gate bias."""
    m = lower(load_spec(os.path.join(SPECS, spec))).mixer(layer)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(1, 21, m, torch.float32, seed=11)
    for name, b in (("bias", bias), ("no bias", None)):
        ref = mixer_core(m, proj.double().cpu(), None if b is None else b.double().cpu())
        err, msg = rel_err(mod.core(proj, b), ref.to(DEVICE))
        assert err <= TOL[torch.float32], f"{name}: {msg}"


def test_render_config_and_names():
    """CONFIG comes from the render context; names follow STYLE.md; nothing beyond torch/triton."""
    text = render_kernel(make_mixer(64), {"BT": 512, "BS": 32, "BD": 128})
    assert '"BT": 512' in text and '"BS": 32' in text and '"BD": 128' in text
    for name in ("def rnn_scan_fwd_kernel(", "def rnn_carry_fwd_kernel(", "def rnn_fwd(",
                 "def rnn_scan_bwd_kernel(", "def rnn_bwd(", "class RnnFunction(", "def core(", "def core_triton(", "def core_torch(", "def _sigmoid(", "def _softplus(",
                 "def _tanh(", "_sigmoid(b_a)"):
        assert name in text, name
    custom = render_kernel(make_mixer(64, "custom"))
    assert "OFF_Z" not in custom and "_softplus(b_a)" in custom
    for bad in ("import numpy", "from ratc", "import ratc"):
        assert bad not in text and bad not in custom


# -------------------------------------------------------------------------------------------------
# GPU: compiled kernels at medium sizes with the default CONFIG

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32],
                         ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("B, T, D, variant, layout, cfg", [
    P(2, 4096 + 13, 2048),  # the paper's width
    P(1, 20000, 256, "custom", layout="padded"),
    P(3, 999, 200, "square"),
])
def test_gpu_medium(B, T, D, variant, layout, cfg, dtype, poisoned):
    m = make_mixer(D, variant)
    mod = load_kernel(m)
    proj, bias = make_inputs(B, T, m, dtype, seed=T + D, layout=layout)
    ref = reference(m, proj, bias)  # float64, on the CPU
    err, msg = rel_err(run_triton(mod, proj, bias, cfg), ref)
    assert err <= TOL[dtype], msg
    if dtype == torch.float32:
        err, msg = rel_err(mod.core_torch(proj, bias), ref)
        assert err <= TOL[dtype], f"core_torch: {msg}"
