"""RAT kernels (templates/rat.py.jinja) against the float64 reference `ratc.reference.mixer_core`.

On a CPU machine the Triton kernels run under TRITON_INTERPRET=1 (slow: tiny shapes, 16-wide
blocks). On a CUDA machine the same small cases run compiled, and the `gpu` tests add medium sizes
in bf16 and fp32. Every buffer the launcher allocates is NaN-poisoned, so an element a kernel
should have written but did not fails the comparison.
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
from ratc.ir import InputScale, LayerKind, Position  # noqa: E402
from ratc.lower import lower  # noqa: E402
from ratc.reference import mixer_core  # noqa: E402
from ratc.spec import load_spec  # noqa: E402
from kernel_checks import rel_err, poisoned  # noqa: E402, F401  (poisoned: fixture)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SPECS = os.path.join(os.path.dirname(__file__), "..", "specs")

# relative error ||y - ref|| / ||ref|| allowed per dtype
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 1e-2}
TF32_TOL = 5e-3  # fp32 with fp32_dot="tf32": 10-bit mantissas in the two tl.dot calls
SMALL = {"SCAN_BK": 4, "SCAN_WARPS": 4, "BT": 16, "BC": 16, "num_warps": 4, "num_stages": 1,
         "BWD_BT": 16, "BWD_BC": 16, "bwd_num_warps": 4, "bwd_num_stages": 1,
         "DQ_BT": 16, "DQ_BC": 16, "dq_num_warps": 4, "dq_num_stages": 1,
         "BWD_SCAN_BK": 2, "bwd_scan_num_warps": 2}

# layer options: the paper's RAT, and the rarer choices of specs/tiny_hybrid.yaml
VARIANTS = {
    "paper": dict(rope=True, gate="sigmoid", scale="1 - g", ogate=True),
    "custom": dict(rope=False, gate="exp(-softplus(a))", scale="1", ogate=False),
    "mixed": dict(rope=True, gate="exp(-softplus(a))", scale="1", ogate=False),
}


def make_mixer(H: int, d: int, G: int, L: int, variant: str = "paper", base: float = 10000.0):
    """A RAT mixer of H heads of width d, G groups, chunk L, with the options of `variant`."""
    m = lower(load_spec(os.path.join(SPECS, "tiny_rat.yaml"))).mixer("rat")
    v = VARIANTS[variant]
    return dataclasses.replace(
        m, name=f"rat_{variant}", d_model=H * d, heads=H, head_dim=d, groups=G, chunk=L,
        chunk_candidates=(L,), forget_gate=parse_gate(v["gate"]),
        input_scale=InputScale(v["scale"]), output_gate=v["ogate"],
        position=Position.CHUNK_ROPE if v["rope"] else Position.NOPE, rope_base=base)


def make_inputs(B, T, m, dtype, seed, layout="contiguous"):
    """Random in_proj output [B, T, F] (a non-contiguous view per `layout`) and gate_bias [D]."""
    g = torch.Generator().manual_seed(seed)
    F = m.in_features

    def randn(*shape):  # scaled up a little so the softmax is not nearly uniform
        return (1.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).to(DEVICE, dtype)

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
    # gate bias as initialised, log U(1, L-1), plus noise so gates spread over (0, 1)
    u = 1 + (max(m.chunk, 3) - 2) * torch.rand(m.d_model, generator=g, dtype=torch.float64)
    bias = (u.log() + torch.randn(m.d_model, generator=g, dtype=torch.float64)).to(DEVICE)
    return proj, bias.float()


def run_triton(mod, proj, bias, config=None):
    """core's Triton path, writing into a NaN-poisoned output."""
    B, T, _ = proj.shape
    out = torch.full((B, T, mod.D), float("nan"), dtype=proj.dtype, device=proj.device)
    y = mod.rat_fwd(proj, bias, config=config, out=out)
    assert y.data_ptr() == out.data_ptr()
    return y


def reference(m, proj, bias):
    return mixer_core(m, proj.double().cpu(), bias.double().cpu()).to(proj.device)


def P(B, T, H, d, G, L, variant="paper", layout="contiguous", **cfg):  # noqa: N802
    """One case, with its id: B2-T13-H4-d16-G2-L4[-variant][-layout][-config]."""
    name = f"B{B}-T{T}-H{H}-d{d}-G{G}-L{L}"
    name += "" if variant == "paper" else f"-{variant}"
    name += "" if layout == "contiguous" else f"-{layout}"
    name += "".join(f"-{k}{v}" for k, v in cfg.items())
    return pytest.param(B, T, H, d, G, L, variant, layout, cfg, id=name)


CASES = [
    P(2, 1, 2, 16, 2, 4),  # one token
    P(2, 3, 2, 16, 1, 8),  # T < L: no complete chunk
    P(2, 13, 4, 16, 2, 4, layout="padded"),  # T not a multiple of L nor of BT
    P(1, 37, 2, 16, 2, 2, SCAN_BK=4),  # NC = 18 > BC: unmasked chunk loop; 19 chunks over BK=4
    P(1, 40, 2, 16, 1, 1),  # L = 1: attention over gated keys
    P(1, 50, 2, 16, 2, 2, SCAN_BK=1, BC=32),
    P(1, 21, 2, 64, 2, 4),  # head dim 64
    P(1, 19, 2, 128, 1, 4),  # head dim 128
    P(1, 25, 4, 16, 4, 3, layout="time_major"),  # G = H
    P(1, 30, 2, 24, 1, 4),  # head dim not a power of two (rope)
    P(2, 13, 2, 32, 2, 4, "custom"),  # exp(-softplus(a)), input scale 1, no output gate, nope
    P(1, 1, 2, 32, 1, 4, "custom"),
    P(1, 33, 2, 32, 2, 1, "custom", layout="channel_stride"),
    P(1, 29, 3, 17, 3, 4, "custom"),  # odd head dim (nope)
    P(1, 45, 2, 64, 1, 8, "custom", BT=32),
    P(1, 26, 2, 32, 2, 4, "mixed"),  # rope with a custom gate and input scale 1
]


@pytest.mark.interpreter
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", CASES)
def test_triton_matches_reference(B, T, H, d, G, L, variant, layout, cfg, poisoned):
    m = make_mixer(H, d, G, L, variant)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(B, T, m, torch.float32, seed=T * 131 + d, layout=layout)
    ref = reference(m, proj, bias)
    y = run_triton(mod, proj, bias, dict(SMALL, **cfg))
    assert y.shape == (B, T, m.d_model) and y.dtype == torch.float32
    err, msg = rel_err(y, ref)
    assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
def test_ws_keys_fall_back_off_hopper(poisoned):
    """WS, DQ_WS, BWD_WS = 1 where the Gluon kernels cannot run (here: the interpreter, fp32)
    launch the Triton kernels: the same y and gradients as without them."""
    m = make_mixer(2, 16, 2, 4)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(1, 37, m, torch.float32, seed=3)
    ws = dict(SMALL, WS=1, DQ_WS=1, BWD_WS=1)
    assert not mod._ws_ready(proj, ws) and not mod._ws_ready(proj.bfloat16(), ws)
    grads = []
    for cfg in (SMALL, ws):
        x = proj.clone().requires_grad_()
        y = mod.core_triton(x, bias, cfg)
        y.backward(torch.ones_like(y))
        grads.append((y.detach(), x.grad))
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    err, msg = rel_err(grads[1][0], reference(m, proj, bias))
    assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
def test_fallback_blocks(monkeypatch):
    """Query blocks whose fixed softmax references sit far above their self scores (here: q of
    group 0 scaled 40x over tokens 16-31) are flagged by the attention kernel and redone by its
    FALLBACK launch with the online softmax; the others keep the fixed references. At this gap
    (hundreds of log2 units) the fixed references alone underflow every term of those rows.
    fp32 (compiled too, on a GPU): at such logits bf16's rounding of q alone moves them by units"""
    m = make_mixer(2, 16, 2, 2)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(1, 40, m, torch.float64, seed=5)
    proj[:, 16:32, mod.OFF_Q:mod.OFF_Q + 16] *= 40.0
    proj = proj.float()
    flags = []
    launch = mod.rat_attn_fwd_kernel

    class Recorder:  # each launch's p_flag as the launch left it
        def __getitem__(self, grid):
            def run(**kwargs):
                out = launch[grid](**kwargs)
                flags.append(kwargs["p_flag"].tolist())
                return out
            return run

    monkeypatch.setattr(mod, "rat_attn_fwd_kernel", Recorder())
    y = run_triton(mod, proj, bias, SMALL)
    # head 0's block 1 (tokens 16-31) alone, of [head 0: blocks 0, 1, 2; head 1: blocks 0, 1, 2]
    assert flags[0] == [0, 1, 0, 0, 0, 0]
    err, msg = rel_err(y, reference(m, proj, bias))
    assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
@pytest.mark.parametrize("T, L, d, variant", [(37, 2, 16, "paper"), (29, 4, 17, "custom"),
                                              (3, 8, 16, "paper")])
def test_scan_kmax(T, L, d, variant):
    """The scan's max |K~_c'| per head: the norm of the largest cached chunk-final state (the
    forward's fixed references are products with it); 0 with no complete chunk."""
    m = make_mixer(2, d, 2, L, variant)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(2, T, m, torch.float32, seed=T)
    v = torch.empty(2, T, m.d_model, device=DEVICE)
    s, kc, vc, NCP, qh, kmax = mod._rat_scan(proj, bias, dict(mod.CONFIG, **SMALL), v)
    NC = T // L
    want = kc.view(2 * 2, NCP, -1)[:, :NC, :d].norm(dim=-1).amax(dim=1) if NC else \
        torch.zeros(4, device=DEVICE)
    torch.testing.assert_close(kmax, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", CASES)
def test_torch_matches_reference(B, T, H, d, G, L, variant, layout, cfg):
    m = make_mixer(H, d, G, L, variant)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(B, T, m, torch.float32, seed=T * 131 + d, layout=layout)
    ref = reference(m, proj, bias)
    y = mod.core_torch(proj, bias)
    assert y.shape == (B, T, m.d_model) and y.dtype == torch.float32
    err, msg = rel_err(y, ref)
    assert err <= TOL[torch.float32], msg
    y64 = mod.core_torch(proj.double(), bias.double())  # float64 in, float64 out
    assert y64.dtype == torch.float64
    err, msg = rel_err(y64, ref)
    assert err <= 1e-12, msg


def test_torch_chunked_queries(monkeypatch):
    """core_torch's query blocking (forced tiny here) gives the unblocked result."""
    m = make_mixer(2, 16, 2, 3)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(2, 53, m, torch.float64, seed=3)
    whole = mod.core_torch(proj, bias)
    monkeypatch.setattr(mod, "QUERY_CHUNK_ELEMENTS", 2 * 2 * 5 * 18)  # about 5 query rows a block
    err, msg = rel_err(mod.core_torch(proj, bias), whole)
    assert err <= 1e-13, msg


@pytest.mark.interpreter
@pytest.mark.parametrize("variant", ["paper", "custom"])
def test_chunk_covering_sequence_is_the_rnn(variant, poisoned):
    """L >= T: one chunk, every softmax has the self term only, so y is the gated RNN's."""
    B, T, H, d = 2, 11, 2, 16
    m = make_mixer(H, d, 2, 16, variant)
    rnn = dataclasses.replace(m, name="rnn_of_rat", kind=LayerKind.RNN, heads=1, head_dim=H * d,
                              groups=None, chunk=None, chunk_candidates=(), position=Position.NOPE)
    proj, bias = make_inputs(B, T, m, torch.float32, seed=5)
    rnn_proj = proj[..., :rnn.in_features]  # [z,] x, a lead RAT's split as they lead the RNN's
    assert [p for p, _ in rnn.in_split] == [p for p, _ in m.in_split][:len(rnn.in_split)]
    ref = mixer_core(rnn, rnn_proj.double().cpu(), bias.double().cpu()).to(DEVICE)
    err, msg = rel_err(run_triton(load_kernel(m, SMALL), proj, bias), ref)
    assert err <= TOL[torch.float32], msg


@pytest.mark.interpreter
@pytest.mark.parametrize("spec, layer", [
    pytest.param("tiny_rat.yaml", "rat", id="tiny_rat-rat"),
    pytest.param("tiny_hybrid.yaml", "rat_nope", id="tiny_hybrid-rat_nope"),
])
def test_spec_layers(spec, layer, poisoned):
    """The RAT layers of the tiny specs as written, through `core` (dispatch) and no gate bias."""
    m = lower(load_spec(os.path.join(SPECS, spec))).mixer(layer)
    mod = load_kernel(m, SMALL)
    proj, bias = make_inputs(2, 19, m, torch.float32, seed=11)
    for name, b in (("bias", bias), ("no bias", None)):
        ref = mixer_core(m, proj.double().cpu(), None if b is None else b.double().cpu())
        err, msg = rel_err(mod.core(proj, b), ref.to(DEVICE))
        assert err <= TOL[torch.float32], f"{name}: {msg}"


def test_render_config_and_names():
    """CONFIG comes from the render context; names follow STYLE.md; nothing beyond torch/triton."""
    rope = make_mixer(2, 64, 2, 16)
    text = render_kernel(rope, {"BT": 64, "BC": 32, "SCAN_BK": 8, "num_warps": 4})
    assert '"BT": 64' in text and '"BC": 32' in text and '"SCAN_BK": 8' in text
    for name in ("def rat_scan_fwd_kernel(", "def rat_attn_fwd_kernel(", "def rat_fwd(",
                 "def rat_attn_bwd_dq_kernel(", "def rat_attn_bwd_dkv_kernel(",
                 "def rat_scan_bwd_kernel(", "def rat_bwd(", "class RatFunction(",
                 "def core(", "def core_triton(", "def core_torch(", "def _sigmoid(", "def _softplus(",
                 "def _tanh(", "_sigmoid(b_a)"):
        assert name in text, name
    nope = render_kernel(make_mixer(2, 32, 2, 4, "custom"))
    assert "ROPE_BASE" not in nope and "OFF_Z" not in nope
    assert "_softplus(b_a)" in nope
    # STYLE.md order: reference, kernels, launchers, Function, public function
    order = [text.index(n) for n in ("def core_torch(", "def rat_scan_fwd_kernel(", "def rat_fwd(",
                                     "def rat_bwd(", "class RatFunction(", "def core_triton(")]
    assert order == sorted(order)
    for bad in ("import numpy", "from ratc", "import ratc"):
        assert bad not in text and bad not in nope


# -------------------------------------------------------------------------------------------------
# GPU: compiled kernels at medium sizes with the default CONFIG

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32],
                         ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", [
    P(2, 4096 + 13, 16, 128, 2, 16),  # the paper's layer
    P(1, 3000, 8, 64, 8, 8, "custom"),
    P(1, 2000, 4, 96, 1, 16, layout="padded"),
    P(1, 2048 + 5, 2, 64, 2, 1, "mixed"),
])
def test_gpu_medium(B, T, H, d, G, L, variant, layout, cfg, dtype, poisoned):
    m = make_mixer(H, d, G, L, variant)
    mod = load_kernel(m)
    proj, bias = make_inputs(B, T, m, dtype, seed=T + d, layout=layout)
    ref = reference(m, proj, bias)  # float64, on the CPU
    err, msg = rel_err(run_triton(mod, proj, bias, cfg), ref)
    assert err <= TOL[dtype], msg
    if dtype == torch.float32:
        err, msg = rel_err(mod.core_torch(proj, bias), ref)
        assert err <= TOL[dtype], f"core_torch: {msg}"


@pytest.mark.gpu
def test_gpu_fp32_tf32():
    """fp32 inputs with fp32_dot="tf32": tensor cores round the dot operands to 10-bit
    mantissas, so only about 1e-3 relative accuracy; the default ("ieee") keeps 1e-4."""
    m = make_mixer(16, 128, 2, 16)
    mod = load_kernel(m)
    proj, bias = make_inputs(2, 4096 + 13, m, torch.float32, seed=1)
    ref = reference(m, proj, bias)
    err, msg = rel_err(run_triton(mod, proj, bias, {"fp32_dot": "tf32"}), ref)
    assert err <= TF32_TOL, msg


# -------------------------------------------------------------------------------------------------
# GPU (Hopper): the warp-specialised forward (rat_attn_fwd_ws_kernel, Gluon: compiled only)

def run_ws(mod, proj, bias, cfg, monkeypatch):
    """rat_fwd with cfg | WS = 1 into NaN-poisoned y and lse; asserts the Gluon kernel ran.
    Returns (y, lse, its flags)."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the warp-specialised forward runs on Hopper (sm_90) only")
    launched = []
    monkeypatch.setattr(mod, "_rat_attn_fwd_ws", spy(mod, "_rat_attn_fwd_ws", launched))
    B, T, _ = proj.shape
    lse = torch.full((B, mod.H, T), float("nan"), device=DEVICE)
    out = torch.full((B, T, mod.D), float("nan"), dtype=proj.dtype, device=DEVICE)
    y = mod.rat_fwd(proj, bias, config=dict(cfg, WS=1), out=out, lse=lse)
    assert len(launched) == 1
    return y, lse, launched[0][10].tolist()  # the flags, per 64 query rows of each head


WS_CASES = [
    P(2, 4096 + 13, 16, 128, 2, 16),  # the paper's layer
    P(1, 3000, 8, 64, 8, 8, "custom"),  # no output gate
    P(1, 2000, 4, 96, 1, 16, layout="padded"),  # head width 96: columns 96-127 zero-filled
    P(1, 2048 + 5, 2, 64, 2, 1, "mixed"),
    P(2, 77, 2, 32, 2, 4),  # one program a head, its second half past T
    P(1, 130, 2, 16, 1, 4, "custom"),  # T % 128 < 64: the last program's second half is empty
    P(1, 11, 2, 64, 2, 16),  # no complete chunk: no key block
]


def spy(mod, name, calls):
    """Wrap mod.<name> (a launcher) to append its arguments to calls."""
    launch = getattr(mod, name)

    def wrapped(*args):
        launch(*args)
        calls.append(args)

    return wrapped


@pytest.mark.gpu
@pytest.mark.parametrize("ws", [dict(BC=128, WS_KS=2, WS_VS=3), dict(BC=64, WS_KS=3, WS_VS=2)],
                         ids=["BC128-KS2-VS3", "BC64-KS3-VS2"])
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", WS_CASES)
def test_gpu_ws_matches_reference(B, T, H, d, G, L, variant, layout, cfg, ws, monkeypatch,
                                  poisoned):
    """bf16 y against float64, lse against the Triton kernel's (same scan outputs, so within
    the fp32 sums' rounding)."""
    m = make_mixer(H, d, G, L, variant)
    mod = load_kernel(m)
    proj, bias = make_inputs(B, T, m, torch.bfloat16, seed=T + d, layout=layout)
    y, lse, flags = run_ws(mod, proj, bias, dict(cfg, **ws), monkeypatch)
    assert not any(flags)
    err, msg = rel_err(y, reference(m, proj, bias))
    assert err <= TOL[torch.bfloat16], msg
    lse0 = torch.empty_like(lse)
    mod.rat_fwd(proj, bias, config=dict(cfg, WS=0), lse=lse0)
    assert (lse - lse0).abs().max().item() <= 1e-4


@pytest.mark.gpu
def test_gpu_ws_fallback_rows(monkeypatch):
    """As test_fallback_blocks, warp-specialised: q of group 0 scaled 40x over tokens 16-31
    flags head 0's first 64 rows (of [head 0: rows 0-63, 64-127, 128-191, 192-199; head 1:
    the same]),
    which the FALLBACK launch redoes at BT = 64 with the online softmax. bf16's rounding of
    such logits moves them by units, so y is checked against the Triton kernels' (which flag
    and redo rows 0-63 the same way at BT = 64)."""
    m = make_mixer(2, 64, 2, 2)
    mod = load_kernel(m)
    proj, bias = make_inputs(1, 200, m, torch.float64, seed=5)
    proj[:, 16:32, mod.OFF_Q:mod.OFF_Q + 64] *= 40.0
    proj = proj.to(torch.bfloat16)
    y, _, flags = run_ws(mod, proj, bias, dict(BC=64), monkeypatch)
    assert flags == [1, 0, 0, 0, 0, 0, 0, 0]
    y0 = run_triton(mod, proj, bias, dict(BT=64, BC=64, WS=0))
    err, msg = rel_err(y, y0)
    assert err <= 5e-3, msg


@pytest.mark.gpu
@pytest.mark.parametrize("launcher, ws", [
    ("_rat_attn_bwd_dq_ws", dict(DQ_WS=1, DQ_BC=64, DQ_WS_KS=3, DQ_WS_VS=2)),
    ("_rat_attn_bwd_dq_ws", dict(DQ_WS=1, DQ_BC=128, DQ_WS_KS=2, DQ_WS_VS=2)),
    ("_rat_attn_bwd_dkv_ws", dict(BWD_WS=1, BWD_WS_BT=64, BWD_WS_QS=3)),
    ("_rat_attn_bwd_dkv_ws", dict(BWD_WS=1, BWD_WS_BT=32, BWD_WS_QS=4)),
], ids=["dq-BC64-KS3-VS2", "dq-BC128-KS2-VS2", "dkv-BT64-QS3", "dkv-BT32-QS4"])
@pytest.mark.parametrize("B, T, H, d, G, L, variant, layout, cfg", WS_CASES)
def test_gpu_ws_backward_matches_triton(B, T, H, d, G, L, variant, layout, cfg, launcher, ws,
                                        monkeypatch, poisoned):
    """The backward with a warp-specialised kernel (dq: rat_attn_bwd_dq_ws_kernel, dK/dV:
    rat_attn_bwd_dkv_ws_kernel) against the same backward with the Triton kernels (the gradient
    tests check those against float64), bf16, on the same forward outputs: dproj and the gate
    bias's gradient (the launchers' buffers NaN-poisoned: the two backwards agree to the bit
    where they sum in the same order). A case without a complete chunk launches no dK/dV
    kernel."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the warp-specialised kernels run on Hopper (sm_90) only")
    m = make_mixer(H, d, G, L, variant)
    mod = load_kernel(m)
    proj, bias = make_inputs(B, T, m, torch.bfloat16, seed=T + d, layout=layout)
    lse = torch.empty(B, H, T, device=DEVICE)
    y, scan = mod.rat_fwd(proj, bias, config=cfg, lse=lse, keep=True)
    dy = torch.randn(y.shape, generator=torch.Generator(DEVICE).manual_seed(T), device=DEVICE,
                     dtype=y.dtype)
    off = {k: 0 for k in ws if k.endswith("_WS")}
    ref = mod.rat_bwd(proj, bias, y, lse, dy, config=dict(cfg, **(ws | off)), scan=scan)
    launched = []
    monkeypatch.setattr(mod, launcher, spy(mod, launcher, launched))
    got = mod.rat_bwd(proj, bias, y, lse, dy, config=dict(cfg, **ws), scan=scan)
    assert len(launched) == (1 if "dq" in launcher or T >= L else 0)
    for name, g, r in zip(("dproj", "dgate_bias"), got, ref):
        err, msg = rel_err(g, r)
        assert err <= 5e-3, f"{name}: {msg}"
