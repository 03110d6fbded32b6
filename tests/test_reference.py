"""The float64 reference implementations (ratc.reference): decode vs forward, the identities
DESIGN.md §1 promises, a loop-by-loop evaluation of the formulas, gradients, sizes and names.

Sizes are tiny on purpose (the suite runs on shared CPUs). Failures print the worst element.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import sympy
import torch

from ratc import cost
from ratc.gates import parse_gate, to_python_function
from ratc.ir import FFNIR, InputScale, LayerKind, MixerIR, Position
from ratc.lower import lower
from ratc.reference import (
    DECODE_ROOM, LM, RAT, Attention, GatedRNN, SlidingWindowAttention, mixer_core, mixer_module,
)
from ratc.reference.functional import gated_scan
from ratc.spec import load_spec

DTYPE = torch.float64
TOL = {"decode": 1e-10, "identity": 1e-12, "direct": 1e-10}
SPECS = Path(__file__).resolve().parents[1] / "specs"
TINY_SPECS = sorted(SPECS.glob("tiny_*.yaml"))
ALL_SPECS = sorted(SPECS.glob("*.yaml"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is faster, and kinder to a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -------------------------------------------------------------------------------------------------
# helpers


def make_mixer(kind: str, D: int = 8, H: int = 2, G: int | None = None, L: int | None = None,
               W: int | None = None, gate: str = "sigmoid", scale: str = "1 - g",
               ogate: bool = True, pos: str | None = None, max_seq_len: int = 64,
               rope_base: float = 10000.0) -> MixerIR:
    """A MixerIR built directly, so every option can be set."""
    k = LayerKind(kind)
    common = dict(name=f"test_{kind}", kind=k, d_model=D, max_seq_len=max_seq_len)
    if k is LayerKind.RNN:
        return MixerIR(**common, heads=1, head_dim=D, forget_gate=parse_gate(gate),
                       input_scale=InputScale(scale), output_gate=ogate)
    common |= dict(heads=H, head_dim=D // H, rope_base=rope_base)
    if k is LayerKind.RAT:
        return MixerIR(**common, groups=G or H, chunk=L, chunk_candidates=(L,),
                       forget_gate=parse_gate(gate), input_scale=InputScale(scale),
                       output_gate=ogate, position=Position(pos or "chunk_rope"))
    pos = Position(pos or "rope")
    if k is LayerKind.SLIDING_WINDOW:
        return MixerIR(**common, window=W, position=pos)
    return MixerIR(**common, position=pos)


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights of order 1/sqrt(fan_in), norms near 1 and gate biases near 0, so that every part of
    a layer moves its output (the paper's init leaves attention almost uniform)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if p.dim() == 2:
                p.copy_(r / math.sqrt(p.shape[1]))
            elif name.endswith("gate_bias"):
                p.copy_(r)
            else:
                p.copy_(1 + 0.2 * r)
    return module


def build(mixer: MixerIR, seed: int = 0, dtype=DTYPE):
    torch.manual_seed(seed)
    return randomise(mixer_module(mixer)(mixer, dtype=dtype), seed)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str) -> None:
    """Fail with the worst absolute error, where it is, and both values there."""
    __tracebackhide__ = True
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if actual.numel() == 0:
        return
    err = (actual - expected).abs()
    worst = err.max().item()
    if not worst <= tol:  # also catches NaN
        idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
        pytest.fail(f"{what}: worst |error| {worst:.3e} > {tol:.0e} at {idx}: "
                    f"got {actual[idx].item():.12g}, expected {expected[idx].item():.12g}")


def rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


# -------------------------------------------------------------------------------------------------
# decode (prefill + step) reproduces the forward, every kind and option

MIXER_CASES = [
    # RAT
    pytest.param(dict(kind="rat", L=4, G=1), 2, 13, id="rat-B2-T13-L4-G1-sigmoid-ogate-chunkrope"),
    pytest.param(dict(kind="rat", H=4, G=4, L=4), 2, 8, id="rat-B2-T8-L4-G4=H-T%L=0"),
    pytest.param(dict(kind="rat", L=4, gate="exp(-softplus(a))", scale="1", ogate=False,
                      pos="nope"), 1, 10, id="rat-B1-T10-L4-expsoftplus-scale1-noogate-nope"),
    pytest.param(dict(kind="rat", L=8, gate="sigmoid(a)**2", G=1), 2, 3,
                 id="rat-B2-T3-L8-T<L-sig2"),
    pytest.param(dict(kind="rat", L=4), 2, 1, id="rat-B2-T1-L4"),
    pytest.param(dict(kind="rat", L=1, G=1, ogate=False), 1, 6, id="rat-B1-T6-L1"),
    pytest.param(dict(kind="rat", L=2, scale="1", rope_base=50.0), 2, 7, id="rat-B2-T7-L2-base50"),
    # sliding window and attention
    pytest.param(dict(kind="sliding_window", W=3), 2, 11, id="swa-B2-T11-W3-rope"),
    pytest.param(dict(kind="sliding_window", W=1, pos="nope"), 1, 6, id="swa-B1-T6-W1-nope"),
    pytest.param(dict(kind="sliding_window", W=20), 1, 9, id="swa-B1-T9-W20-W>=T"),
    pytest.param(dict(kind="attention"), 2, 9, id="attn-B2-T9-rope"),
    pytest.param(dict(kind="attention", H=1, pos="nope"), 2, 1, id="attn-B2-T1-H1-nope"),
    # gated RNN
    pytest.param(dict(kind="rnn"), 2, 9, id="rnn-B2-T9-sigmoid-ogate"),
    pytest.param(dict(kind="rnn", gate="exp(-softplus(a))", scale="1", ogate=False), 1, 7,
                 id="rnn-B1-T7-expsoftplus-scale1-noogate"),
    pytest.param(dict(kind="rnn", gate="sigmoid(a)**2"), 2, 1, id="rnn-B2-T1-sig2"),
]


@pytest.mark.parametrize("cfg,B,T", MIXER_CASES)
def test_mixer_decode_matches_forward(cfg, B, T):
    mixer = make_mixer(**cfg)
    layer = build(mixer)
    h = rand(B, T, mixer.d_model)
    with torch.no_grad():
        ref = layer(h)
        for prompt in sorted({0, 1, T // 2, T}):
            out, cache = layer.prefill(h[:, :prompt], capacity=T)
            assert_close(out, ref[:, :prompt], TOL["decode"], f"prefill of {prompt}")
            for t in range(prompt, T):
                assert_close(layer.step(h[:, t], cache), ref[:, t], TOL["decode"],
                             f"step at t={t} after a prompt of {prompt}")
            with pytest.raises(ValueError, match="cache is full"):
                layer.step(h[:, 0], cache)


@pytest.mark.parametrize("cfg,B,T", MIXER_CASES[:1] + MIXER_CASES[7:8])
def test_prefill_checks_capacity(cfg, B, T):
    layer = build(make_mixer(**cfg))
    h = rand(B, T, layer.mixer.d_model)
    with torch.no_grad(), pytest.raises(ValueError, match="cache is full"):
        layer.prefill(h, capacity=T - 1)
    _, cache = layer.prefill(h)
    assert cache.capacity == T + DECODE_ROOM


# -------------------------------------------------------------------------------------------------
# identities


@pytest.mark.parametrize("L,T,opts", [
    pytest.param(16, 7, dict(), id="T7-L16-chunkrope"),
    pytest.param(8, 8, dict(G=1), id="T8-L8-G1"),
    pytest.param(4, 1, dict(), id="T1-L4"),
    pytest.param(32, 11, dict(gate="exp(-softplus(a))", scale="1", ogate=False, pos="nope"),
                 id="T11-L32-expsoftplus-scale1-noogate-nope"),
])
def test_rat_with_one_chunk_is_the_rnn(L, T, opts):
    """L >= T: every query sees only its own state, so y_t = v~_t exactly."""
    rat_opts = {k: v for k, v in opts.items() if k in ("G", "pos")}
    gating = {k: v for k, v in opts.items() if k in ("gate", "scale", "ogate")}
    rat = build(make_mixer("rat", L=L, **rat_opts, **gating))
    rnn = build(make_mixer("rnn", **gating), seed=5)
    state = {k: v for k, v in rat.state_dict().items()}
    state["in_proj.weight"] = state["in_proj.weight"][: rnn.mixer.in_features]  # z, x, a lead both
    rnn.load_state_dict(state)
    h = rand(2, T, 8)
    with torch.no_grad():
        assert_close(rat(h), rnn(h), TOL["identity"], "RAT(L >= T) vs RNN")


@pytest.mark.parametrize("W,T,pos", [
    pytest.param(8, 9, "rope", id="T9-W8=T-1-rope"),
    pytest.param(30, 9, "rope", id="T9-W30-rope"),
    pytest.param(5, 6, "nope", id="T6-W5-nope"),
])
def test_wide_window_is_full_attention(W, T, pos):
    swa = build(make_mixer("sliding_window", W=W, pos=pos))
    attn = build(make_mixer("attention", pos=pos), seed=5)
    attn.load_state_dict(swa.state_dict())
    h = rand(2, T, 8)
    with torch.no_grad():
        assert_close(swa(h), attn(h), TOL["identity"], "sliding window (W >= T-1) vs attention")


# -------------------------------------------------------------------------------------------------
# the formulas, evaluated one query at a time with Python floats


def _parts(mixer: MixerIR, proj: torch.Tensor, b: int, t: int) -> dict[str, list[float]]:
    row, out, o = proj[b, t].tolist(), {}, 0
    for name, n in mixer.in_split:
        out[name], o = row[o:o + n], o + n
    return out


def _rotate(v: list[float], pos: int, base: float) -> list[float]:
    """Turn pair (v[i], v[i + d/2]) by pos * base^(-2i/d)."""
    half, out = len(v) // 2, list(v)
    for i in range(half):
        th = pos * base ** (-2 * i / len(v))
        out[i] = v[i] * math.cos(th) - v[i + half] * math.sin(th)
        out[i + half] = v[i + half] * math.cos(th) + v[i] * math.sin(th)
    return out


def _attend(q: list[float], keys: list[list[float]], values: list[list[float]]) -> list[float]:
    s = [sum(a * b for a, b in zip(q, k)) / math.sqrt(len(q)) for k in keys]
    top = max(s)
    p = [math.exp(x - top) for x in s]
    return [sum(pi * v[i] for pi, v in zip(p, values)) / sum(p) for i in range(len(values[0]))]


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def direct_rat(mixer: MixerIR, proj: torch.Tensor, gate_bias: torch.Tensor) -> torch.Tensor:
    B, T, _ = proj.shape
    D, H, d, G, L = mixer.d_model, mixer.heads, mixer.head_dim, mixer.groups, mixer.chunk
    gate, bias = to_python_function(mixer.forget_gate.expr), gate_bias.tolist()
    one_minus_g = mixer.input_scale is InputScale.ONE_MINUS_G
    rope = mixer.position is Position.CHUNK_ROPE
    out = torch.zeros(B, T, D, dtype=proj.dtype)
    for b in range(B):
        kst, vst = [], []  # k~_t, v~_t per token, D channels each
        for t in range(T):
            p = _parts(mixer, proj, b, t)
            kp = [0.0] * D if t % L == 0 else kst[-1]
            vp = [0.0] * D if t % L == 0 else vst[-1]
            g = [gate(p["a"][j] + bias[j]) for j in range(D)]
            w = [1 - gj for gj in g] if one_minus_g else [1.0] * D
            kst.append([g[j] * kp[j] + w[j] * p["k"][j % (G * d)] for j in range(D)])
            vst.append([g[j] * vp[j] + w[j] * p["x"][j] for j in range(D)])
            c = t // L
            for h in range(H):
                sl = slice(h * d, (h + 1) * d)
                q = [p["q"][(h * d + i) % (G * d)] for i in range(d)]
                ends = [cc * L + L - 1 for cc in range(c)]
                keys = [kst[e][sl] for e in ends] + [kst[t][sl]]
                if rope:
                    q = _rotate(q, c, mixer.rope_base)
                    keys = [_rotate(k, cc, mixer.rope_base) for cc, k in enumerate(keys)]
                y = _attend(q, keys, [vst[e][sl] for e in ends] + [vst[t][sl]])
                if mixer.output_gate:
                    y = [_sig(p["z"][h * d + i]) * y[i] for i in range(d)]
                out[b, t, sl] = torch.tensor(y, dtype=proj.dtype)
    return out


def direct_attention(mixer: MixerIR, proj: torch.Tensor) -> torch.Tensor:
    B, T, _ = proj.shape
    H, d = mixer.heads, mixer.head_dim
    W = mixer.window if mixer.kind is LayerKind.SLIDING_WINDOW else T
    rope = mixer.position is Position.ROPE
    out = torch.zeros(B, T, mixer.d_model, dtype=proj.dtype)
    for b in range(B):
        p = [_parts(mixer, proj, b, t) for t in range(T)]
        for t in range(T):
            for h in range(H):
                sl = slice(h * d, (h + 1) * d)
                seen = range(max(0, t - W), t + 1)
                q = _rotate(p[t]["q"][sl], t, mixer.rope_base) if rope else p[t]["q"][sl]
                keys = [_rotate(p[s]["k"][sl], s, mixer.rope_base) if rope else p[s]["k"][sl]
                        for s in seen]
                out[b, t, sl] = torch.tensor(_attend(q, keys, [p[s]["x"][sl] for s in seen]),
                                              dtype=proj.dtype)
    return out


@pytest.mark.parametrize("cfg,T", [
    pytest.param(dict(L=1, G=1), 6, id="T6-L1-G1-chunkrope"),
    pytest.param(dict(L=1, H=4, G=4, ogate=False), 5, id="T5-L1-G4=H-noogate"),
    pytest.param(dict(L=1, gate="sigmoid(a)**2", scale="1", pos="nope"), 5,
                 id="T5-L1-sig2-scale1-nope"),
    pytest.param(dict(L=3, G=1, gate="exp(-softplus(a))"), 8, id="T8-L3-G1-expsoftplus"),
    pytest.param(dict(L=4, rope_base=7.0), 4, id="T4-L4-base7"),
])
def test_rat_matches_direct_evaluation(cfg, T):
    mixer = make_mixer("rat", **cfg)
    proj, bias = rand(2, T, mixer.in_features), rand(mixer.d_model, seed=2)
    assert_close(mixer_core(mixer, proj, bias), direct_rat(mixer, proj, bias), TOL["direct"],
                 "RAT vs its formula")


@pytest.mark.parametrize("kind,W,T,pos", [
    pytest.param("sliding_window", 2, 7, "rope", id="swa-T7-W2-rope"),
    pytest.param("sliding_window", 1, 4, "nope", id="swa-T4-W1-nope"),
    pytest.param("attention", None, 6, "rope", id="attn-T6-rope"),
])
def test_attention_matches_direct_evaluation(kind, W, T, pos):
    mixer = make_mixer(kind, W=W, pos=pos)
    proj = rand(2, T, mixer.in_features)
    assert_close(mixer_core(mixer, proj, None), direct_attention(mixer, proj), TOL["direct"],
                 f"{kind} vs its formula")


# -------------------------------------------------------------------------------------------------
# gradients


GRAD_CASES = [
    pytest.param(dict(kind="rat", L=2, G=1), id="rat-L2-G1-sigmoid"),
    pytest.param(dict(kind="rat", L=2, gate="exp(-softplus(a))", scale="1", ogate=False,
                      pos="nope"),
                 id="rat-L2-expsoftplus-scale1-nope"),
    pytest.param(dict(kind="rat", L=3, gate="sigmoid(a)**2"), id="rat-L3-sig2"),
    pytest.param(dict(kind="sliding_window", W=2), id="swa-W2"),
    pytest.param(dict(kind="attention", pos="nope"), id="attn-nope"),
    pytest.param(dict(kind="rnn", gate="sigmoid(a)**2"), id="rnn-sig2"),
    pytest.param(dict(kind="rnn", scale="1", ogate=False), id="rnn-scale1-noogate"),
]


@pytest.mark.parametrize("cfg", GRAD_CASES)
def test_mixer_core_gradcheck(cfg):
    mixer = make_mixer(**cfg, D=4)
    proj = rand(1, 5, mixer.in_features).requires_grad_()
    bias = rand(4, seed=2).requires_grad_()
    if mixer.has_gate_bias:
        assert torch.autograd.gradcheck(lambda p, g: mixer_core(mixer, p, g), (proj, bias))
    else:
        assert torch.autograd.gradcheck(lambda p: mixer_core(mixer, p, None), (proj,))


def test_lm_gradcheck_through_every_parameter():
    """A 2-block LM (RAT with a custom gate, then sliding window) checked against every weight."""
    ir = lower(load_spec(SPECS / "tiny_hybrid.yaml"))
    rat = make_mixer("rat", D=4, L=2, G=1, gate="exp(-softplus(a))")
    swa = make_mixer("sliding_window", D=4, W=1)
    ffn = FFNIR(d_model=4, hidden=6, activation=ir.ffn.activation)
    tiny = dataclasses.replace(ir, d_model=4, vocab_size=5, ffn=ffn, mixers=(rat, swa),
                               layers=(rat.name, swa.name))
    lm = randomise(LM(tiny, dtype=DTYPE))
    names = [n for n, _ in lm.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in lm.named_parameters())
    ids = torch.tensor([[1, 4, 0, 2, 3]])

    def f(*ps):
        return torch.func.functional_call(lm, dict(zip(names, ps)), (ids,))

    assert torch.autograd.gradcheck(f, params)


# -------------------------------------------------------------------------------------------------
# whole models: decode, sizes, names, init


@pytest.mark.parametrize("path", TINY_SPECS, ids=[p.stem for p in TINY_SPECS])
def test_lm_decode_matches_forward(path):
    """A prompt of 7, then 14 steps to T = 21 = capacity: T is no multiple of any chunk, and the
    sliding windows' rings wrap."""
    ir = lower(load_spec(path))
    torch.manual_seed(0)
    lm = randomise(LM(ir, dtype=DTYPE))
    B, T, prompt = 2, 21, 7
    ids = torch.randint(0, ir.vocab_size, (B, T), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = lm(ids)
        logits, cache = lm.prefill(ids[:, :prompt], capacity=T)
        assert_close(logits, ref[:, :prompt], TOL["decode"], "LM prefill logits")
        for t in range(prompt, T):
            assert_close(lm.step(ids[:, t], cache), ref[:, t], TOL["decode"], f"LM step at t={t}")
        with pytest.raises(ValueError, match="cache is full"):
            lm.step(ids[:, 0], cache)
    expected = model_cache_bytes(ir, B, T, dtype_bytes=8)
    assert cache.nbytes() == expected, f"cache {cache.nbytes()} bytes, cost model {expected}"


def model_cache_bytes(ir, batch: int, capacity: int, dtype_bytes: int) -> int:
    return batch * int(cost.model_cost(ir, dtype_bytes).total.cache_bytes.subs(cost.T, capacity))


@pytest.mark.parametrize("cfg", [
    pytest.param(dict(kind="rat", L=4), id="rat-L4"),
    pytest.param(dict(kind="rat", L=1), id="rat-L1"),
    pytest.param(dict(kind="sliding_window", W=5), id="swa-W5"),
    pytest.param(dict(kind="attention"), id="attn"),
    pytest.param(dict(kind="rnn"), id="rnn"),
])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_cache_bytes_match_cost_model(cfg, dtype):
    mixer = make_mixer(**cfg)
    layer = build(mixer, dtype=dtype)
    size = torch.finfo(dtype).bits // 8
    for capacity in (1, 3, 4, 6, 13, 16):
        expected = 3 * int(cost.mixer_cost(mixer, size).cache_bytes.subs(cost.T, capacity))
        empty = layer.init_cache(3, capacity)
        with torch.no_grad():
            out, filled = layer.prefill(torch.randn(3, min(capacity, 5), 8, dtype=dtype), capacity)
        assert out.dtype == dtype
        assert empty.nbytes() == filled.nbytes() == expected, (
            f"capacity {capacity}: cache {filled.nbytes()} bytes, cost model {expected}")


@pytest.mark.parametrize("path", ALL_SPECS, ids=[p.stem for p in ALL_SPECS])
def test_parameter_counts_match_cost_model(path):
    ir = lower(load_spec(path))
    lm = LM(ir, device="meta")  # no memory, even for the 1.3B specs
    mc = cost.model_cost(ir)
    assert sum(p.numel() for p in lm.parameters()) == int(mc.total.params)
    for i, (block, (mixer_c, ffn_c)) in enumerate(zip(lm.backbone.layers, mc.blocks)):
        assert sum(p.numel() for p in block.seq_layer.parameters()) == int(mixer_c.params), i
        assert sum(p.numel() for p in block.hidden_layer.parameters()) == int(ffn_c.params), i


def test_state_dict_names_and_shapes():
    ir = lower(load_spec(SPECS / "tiny_hybrid.yaml"))  # tied embeddings, every kind
    lm = LM(ir, dtype=DTYPE)
    D, V, F = ir.d_model, ir.vocab_size, ir.ffn.hidden
    expected = {"embedding.wte.weight": (V, D), "backbone.ln.weight": (D,),
                "head.lm_head.weight": (V, D)}
    for i, m in enumerate(ir.block_mixers):
        pre = f"backbone.layers.{i}."
        expected |= {pre + "seq_layer.in_proj.weight": (m.in_features, D),
                     pre + "seq_layer.input_norm.weight": (D,),
                     pre + "seq_layer.out_proj.weight": (D, D),
                     pre + "hidden_layer.ln.weight": (D,),
                     pre + "hidden_layer.fc1.weight": (F, D),
                     pre + "hidden_layer.fc2.weight": (D, F)}
        if m.has_gate_bias:
            expected[pre + "seq_layer.gate_bias"] = (D,)
    got = {k: tuple(v.shape) for k, v in lm.state_dict().items()}
    assert got == expected
    assert lm.head.lm_head.weight is lm.embedding.wte.weight
    other = LM(ir, dtype=DTYPE)
    other.load_state_dict(lm.state_dict())
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert torch.equal(other(ids), lm(ids))
    untied = LM(lower(load_spec(SPECS / "tiny_rat.yaml")))
    assert untied.head.lm_head.weight is not untied.embedding.wte.weight


def test_mixer_module_classes():
    assert mixer_module(make_mixer("rat", L=4)) is RAT
    assert mixer_module(make_mixer("sliding_window", W=3)) is SlidingWindowAttention
    assert mixer_module(make_mixer("attention")) is Attention
    assert mixer_module(make_mixer("rnn")) is GatedRNN
    with pytest.raises(ValueError, match="kind"):
        RAT(make_mixer("rnn"))


@pytest.mark.parametrize("L,hi", [(16, math.log(15)), (2, 0.0), (1, 0.0)], ids=["L16", "L2", "L1"])
def test_rat_init(L, hi):
    torch.manual_seed(0)
    layer = RAT(make_mixer("rat", D=64, H=4, L=L), dtype=DTYPE)
    b = layer.gate_bias.detach()
    assert b.min() >= 0 and b.max() <= hi + 1e-12
    if hi > 0:
        assert b.max() > 0.8 * hi and b.min() < 0.2 * hi  # spread over [0, log(L-1)]
    assert torch.equal(layer.input_norm.weight, torch.ones(64, dtype=DTYPE))
    for w in (layer.in_proj.weight, layer.out_proj.weight):
        assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3


def test_rnn_and_lm_init():
    torch.manual_seed(0)
    rnn = GatedRNN(make_mixer("rnn", D=256, max_seq_len=4096), dtype=DTYPE)
    b = rnn.gate_bias.detach()
    assert b.min() >= 0 and b.max() <= math.log(4095) and b.max() > math.log(3000)
    lm = LM(lower(load_spec(SPECS / "tiny_rat.yaml")), dtype=DTYPE)
    for name, p in lm.named_parameters():
        if name.endswith("norm.weight") or name.endswith("ln.weight"):
            assert torch.equal(p, torch.ones_like(p)), name
        elif p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 2e-3, name


def test_cost_symbols_are_what_the_tests_assume():
    """Guards the cost-model API these tests evaluate (T symbol, per-sequence cache bytes)."""
    m = make_mixer("rat", L=4)
    assert cost.mixer_cost(m, 1).cache_bytes.free_symbols <= {cost.T}
    assert isinstance(cost.model_cost(lower(load_spec(TINY_SPECS[0]))).total.params, sympy.Integer)


@pytest.mark.parametrize("T, chunk", [(1, 4), (13, 4), (16, 4), (7, 7), (5, 8)])
def test_chunked_scan_restarts_at_every_chunk(T, chunk):
    """gated_scan with chunks (all chunks advanced together) against a token-by-token loop."""
    gen = torch.Generator().manual_seed(T * 10 + chunk)
    x, g, w = (torch.rand(2, T, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    want, s = [], torch.zeros(2, 3, dtype=torch.float64)
    for t in range(T):
        s = (0 if t % chunk == 0 else g[:, t] * s) + w[:, t] * x[:, t]
        want.append(s)
    torch.testing.assert_close(gated_scan(x, g, w, chunk=chunk), torch.stack(want, dim=1),
                               rtol=0, atol=1e-15)
