"""Inference in the generated packages: prefill with caches, the fused single-token step, generate.

- PyTorch path (float64, TRITON_INTERPRET unset after import): prefill then steps reproduce the
  forward's logits for every tiny spec; ragged batches equal per-row runs; capacity errors; cache
  bytes equal the cost model; greedy / top-k / temperature sampling; stop tokens.
- Triton decode kernels under TRITON_INTERPRET=1 (float32) against the reference's step; the
  split-K step (partial programs over row ranges, then a combine) forced to many splits, empty
  ranges and ragged positions included, against the float64 PyTorch step.
- The RAT step's fused input norm and in_proj (split-K partial sums the step kernel finishes) under
  TRITON_INTERPRET=1 against float64, and Mixer.decode through it against the unfused step.
- GPU (marked): bf16 decode against the reference; the fused projection and layer step (bf16,
  fp32, CUDA graph) against the cuBLAS step; CUDA-graph generate equals eager generate.
"""

import dataclasses
import glob
from pathlib import Path

import pytest
import torch

from ratc import cost
from ratc.build import import_built
from ratc.ir import LayerKind
from ratc.lower import lower
from ratc.reference import LM, mixer_module
from ratc.spec import load_spec

from kernel_checks import poisoned  # noqa: F401  (fixture)

TINY = sorted(Path(s).stem for s in glob.glob("specs/tiny_*.yaml"))
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 3e-2}


def load(name):
    """(IR, generated package), imported while conftest's TRITON_INTERPRET is in force."""
    ir = lower(load_spec(f"specs/{name}.yaml"))
    return ir, import_built(Path("generated") / name)


def models(name, dtype, device="cpu", seed=0):
    """The reference LM (float64, CPU) and the generated Model holding the same weights."""
    ir, pkg = load(name)
    torch.manual_seed(seed)
    ref = LM(ir, dtype=torch.float64)
    model = pkg.Model(device=device, dtype=dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    return ir, pkg, ref, model


def assert_close(got, want, tol, what):
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    err = ((got - want).norm() / want.norm().clamp_min(1e-300)).item()
    if not err < tol:
        diff = (got - want).abs().flatten()
        worst = diff.topk(min(5, diff.numel())).indices
        rows = ", ".join(f"[{i}] got {got.flatten()[i]:.6g} want {want.flatten()[i]:.6g}"
                         for i in worst.tolist())
        raise AssertionError(f"{what}: relative error {err:.2e} >= {tol:.0e}; worst: {rows}")


@pytest.fixture
def torch_path(monkeypatch):
    """Dispatch to the emitted PyTorch path (call after the package is imported)."""
    def use():
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return use


# -------------------------------------------------------------------------------------------------
# PyTorch path, float64


@pytest.mark.parametrize("prompt", [1, 9], ids=lambda p: f"prompt{p}")
@pytest.mark.parametrize("name", TINY)
def test_prefill_then_steps_match_forward(name, prompt, torch_path):
    """Prompt, then one step per token up to T = 23 = capacity (no multiple of any chunk; past
    every window): each step's logits equal the forward's at that position."""
    ir, pkg, _, model = models(name, torch.float64)
    torch_path()
    T = 23
    ids = torch.randint(0, ir.vocab_size, (2, T))
    want = model(ids)
    logits, cache = model.prefill(ids[:, :prompt], capacity=T)
    assert_close(logits, want[:, :prompt], TOL[torch.float64], "prefill logits")
    for t in range(prompt, T):
        assert_close(model.step(ids[:, t], cache), want[:, t], TOL[torch.float64], f"step t={t}")
    assert cache.seen == T and cache.pos.tolist() == [T, T]


@pytest.mark.parametrize("slabs", [False, True], ids=["one-pass", "slabs"])
@pytest.mark.parametrize("lengths", [(3, 11, 6), (1, 1, 11)],
                         ids=lambda ls: "L" + "-".join(map(str, ls)))
@pytest.mark.parametrize("name", TINY)
def test_ragged_batch_equals_per_row_runs(name, lengths, slabs, torch_path, monkeypatch):
    """Right-padded prompts of different lengths (garbage in the padding), then 12 steps where
    each row continues its own sequence from its own position: row b's logits equal the forward
    of row b's sequence alone. `slabs`: prefill fills the caches a chunk / a token at a time."""
    ir, pkg, _, model = models(name, torch.float64)
    torch_path()
    if slabs:
        for cls in pkg.MIXERS.values():
            monkeypatch.setattr(cls.decode_kernels, "FILL_ELEMENTS", 1)
    B, P, n = len(lengths), max(lengths), 12
    seqs = torch.randint(0, ir.vocab_size, (B, P + n))
    ids = torch.randint(0, ir.vocab_size, (B, P))  # padding: random tokens that must not leak
    for b, length in enumerate(lengths):
        ids[b, :length] = seqs[b, :length]
    want = [model(seqs[b:b + 1, :lengths[b] + n])[0] for b in range(B)]
    logits, cache = model.prefill(ids, lengths=lengths, capacity=P + n)
    for b, length in enumerate(lengths):
        assert_close(logits[b, :length], want[b][:length], TOL[torch.float64], f"prefill row {b}")
    assert cache.pos.tolist() == list(lengths) and cache.seen == P
    for i in range(n):
        tokens = torch.stack([seqs[b, lengths[b] + i] for b in range(B)])
        got = model.step(tokens, cache)
        for b, length in enumerate(lengths):
            assert_close(got[b], want[b][length + i], TOL[torch.float64], f"row {b} step {i}")


@pytest.mark.parametrize("name", ["tiny_hybrid"])
def test_mixer_blocks_prefill_and_step(name, torch_path):
    """The per-layer API a decode benchmark drives: MIXERS[name]().prefill / step equal forward."""
    ir, pkg = load(name)
    torch_path()
    torch.manual_seed(0)
    T, prompt = 17, 6
    for layer, cls in pkg.MIXERS.items():
        block = cls(dtype=torch.float64)
        h = torch.randn(2, T, ir.d_model, dtype=torch.float64)
        want = block(h)
        out, cache = block.prefill(h[:, :prompt], capacity=T)
        assert_close(out, want[:, :prompt], TOL[torch.float64], f"{layer} prefill")
        for t in range(prompt, T):
            assert_close(block.step(h[:, t], cache), want[:, t], TOL[torch.float64],
                         f"{layer} step t={t}")
        with pytest.raises(ValueError, match="cache is full"):
            block.step(h[:, 0], cache)


def test_capacity_overflow_is_a_clear_error(torch_path):
    ir, pkg, _, model = models("tiny_hybrid", torch.float64)
    torch_path()
    ids = torch.randint(0, ir.vocab_size, (2, 9))
    _, cache = model.prefill(ids[:, :5], capacity=7)
    model.step(ids[:, 5], cache)
    model.step(ids[:, 6], cache)
    before = [t.clone() for c in cache.layers for t in c.tensors.values()]
    with pytest.raises(ValueError, match=r"cache is full: it holds 7 tokens .* capacity >= 8"):
        model.step(ids[:, 7], cache)
    after = [t for c in cache.layers for t in c.tensors.values()]
    assert all(torch.equal(a, b) for a, b in zip(before, after)), "a refused step changed the cache"
    assert cache.pos.tolist() == [7, 7] and cache.seen == 7
    with pytest.raises(ValueError, match="cache is full"):
        model.prefill(ids, capacity=8)
    with pytest.raises(ValueError, match="capacity >= 13"):  # 9 + 5 - 1 tokens; before any work
        model.generate(ids, 5, capacity=12)
    assert model.generate(ids, 5, capacity=13).shape == (2, 5)
    # ragged: the longest row decides
    _, cache = model.prefill(ids, lengths=[2, 9], capacity=10)
    model.step(ids[:, 0], cache)
    with pytest.raises(ValueError, match="cache is full"):
        model.step(ids[:, 0], cache)
    with pytest.raises(ValueError, match="lengths must lie in 0 .. 9"):
        model.prefill(ids, lengths=[2, 10])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", TINY)
def test_cache_bytes_equal_cost_model(name, dtype, torch_path):
    """nbytes = B * cost-model cache_bytes at T = capacity, for the model and every layer, empty
    and after a prefill; capacities below and above chunk and window sizes."""
    ir, pkg = load(name)
    torch_path()
    model = pkg.Model(dtype=dtype)
    size = torch.tensor([], dtype=dtype).element_size()
    B = 3
    for capacity in (1, 5, 13, 37):
        want = B * int(cost.model_cost(ir, size).total.cache_bytes.subs(cost.T, capacity))
        empty = model.init_cache(B, capacity)
        _, filled = model.prefill(torch.randint(0, ir.vocab_size, (B, min(capacity, 6))),
                                  capacity=capacity)
        assert empty.nbytes() == filled.nbytes() == want, (
            f"capacity {capacity}: cache {filled.nbytes()} bytes, cost model {want}")
        for m, layer in zip(ir.block_mixers, filled.layers):
            expect = B * int(cost.mixer_cost(m, size).cache_bytes.subs(cost.T, capacity))
            assert layer.nbytes() == expect, f"{m.name} at capacity {capacity}"


@pytest.mark.parametrize("name", TINY)
def test_decode_runs_on_meta_tensors(name, torch_path):
    """Model.decode (what a CUDA graph captures) has no data-dependent host code: it runs on the
    meta device, where any .item(), .tolist() or branch on a tensor value would raise."""
    ir, pkg = load(name)
    torch_path()
    model = pkg.Model(device="meta", dtype=torch.float32)
    cache = model.init_cache(3, 20)
    logits = model.decode(torch.zeros(3, dtype=torch.long, device="meta"), cache)
    assert logits.shape == (3, ir.vocab_size) and cache.seen == 0


def test_fp32_state_option_keeps_chunk_rows_in_model_dtype(torch_path):
    ir, pkg = load("tiny_hybrid")
    torch_path()
    cache = pkg.Model(dtype=torch.bfloat16).init_cache(2, 16, state_dtype=torch.float32)
    rat, swa, rnn = cache.layers[0], cache.layers[1], cache.layers[2]
    assert rat.chunk_keys.dtype == torch.bfloat16 and rat.key_state.dtype == torch.float32
    assert swa.keys.dtype == torch.bfloat16 and rnn.state.dtype == torch.float32


# -------------------------------------------------------------------------------------------------
# generation (PyTorch path)


@pytest.mark.parametrize("lengths", [None, (4, 7)], ids=["full", "ragged"])
def test_greedy_generate_equals_stepwise_argmax(lengths, torch_path):
    ir, pkg, _, model = models("tiny_hybrid", torch.float64)
    torch_path()
    ids = torch.randint(0, ir.vocab_size, (2, 7))
    got = model.generate(ids, 10, lengths=lengths)
    logits, cache = model.prefill(ids, lengths=lengths, capacity=16)
    last = torch.tensor(lengths or (7, 7)) - 1
    logits = logits[torch.arange(2), last]
    want = []
    for i in range(10):
        tokens = logits.argmax(-1)
        want.append(tokens)
        if i < 9:  # the last new token is never fed back: capacity 7 + 10 - 1 suffices
            logits = model.step(tokens, cache)
    assert torch.equal(got, torch.stack(want, 1)), f"{got}\n{torch.stack(want, 1)}"


def test_sampling_is_reproducible_and_respects_top_k(torch_path):
    ir, pkg, _, model = models("tiny_rat_swa", torch.float64)
    torch_path()
    ids = torch.randint(0, ir.vocab_size, (3, 5))
    kw = dict(temperature=2.0, top_k=3)
    a = model.generate(ids, 12, generator=torch.Generator().manual_seed(7), **kw)
    b = model.generate(ids, 12, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a, b), "same generator seed, different samples"
    # every sampled token is among the 3 most likely at its step (teacher-forced replay)
    logits, cache = model.prefill(ids, capacity=17)
    logits = logits[:, -1]
    for i in range(12):
        top = logits.topk(3, dim=-1).indices
        assert (top == a[:, i:i + 1]).any(-1).all(), f"step {i}: {a[:, i]} not in top-3 {top}"
        if i < 11:
            logits = model.step(a[:, i], cache)
    # top_k=1 is greedy whatever the temperature
    assert torch.equal(model.generate(ids, 6, temperature=5.0, top_k=1), model.generate(ids, 6))


def test_sample_top_k_and_temperature():
    sample = load("tiny_hybrid")[1].sample
    logits = torch.tensor([[0.0, 2.0, 1.0, -1.0, 1.5]]).repeat(4000, 1)
    g = torch.Generator().manual_seed(0)
    drawn = sample(logits, temperature=1.0, top_k=2, generator=g)
    assert set(drawn.tolist()) == {1, 4}
    share = (drawn == 1).double().mean().item()  # softmax([2, 1.5]) = 0.62, 0.38
    assert abs(share - 0.6225) < 0.03, share
    cold = sample(logits, temperature=1e-3, generator=g)
    assert (cold == 1).all()
    assert torch.equal(sample(logits[:2], temperature=0.0), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="top_k"):
        sample(logits, temperature=1.0, top_k=0)


@pytest.mark.parametrize("batch,n", [(3, 12), (1, 40)], ids=["B3-n12", "B1-n40-early-exit"])
def test_stop_tokens_end_rows(batch, n, torch_path):
    """A row that emits a stop token keeps emitting it; rows before their stop are unchanged."""
    ir, pkg, _, model = models("tiny_rnn", torch.float64, seed=3)
    torch_path()
    ids = torch.randint(0, ir.vocab_size, (batch, 4))
    free = model.generate(ids, n, temperature=1.0, generator=torch.Generator().manual_seed(1))
    stops = {int(free[0, 2]), int(free[-1, 5])}
    got = model.generate(ids, n, temperature=1.0, generator=torch.Generator().manual_seed(1),
                         stop_tokens=tuple(stops))
    for b in range(batch):
        hits = [i for i in range(n) if int(free[b, i]) in stops]
        if not hits:
            assert torch.equal(got[b], free[b])
            continue
        i = hits[0]
        assert torch.equal(got[b, :i + 1], free[b, :i + 1]), f"row {b} before its stop"
        assert (got[b, i + 1:] == free[b, i]).all(), f"row {b} after its stop: {got[b]}"


# -------------------------------------------------------------------------------------------------
# Triton decode kernels (TRITON_INTERPRET=1 on CPU), float32, against the reference's step


def _layers():
    out = []
    for name in ("tiny_hybrid", "tiny_rat_swa"):
        for m in lower(load_spec(f"specs/{name}.yaml")).mixers:
            out.append(pytest.param(name, m.name, id=f"{name}-{m.name}"))
    return out


@pytest.mark.interpreter
@pytest.mark.parametrize("split", [False, True], ids=["config", "split2"])
@pytest.mark.parametrize("name,layer", _layers())
def test_decode_kernel_matches_reference_step(name, layer, split, monkeypatch):
    """One block, ragged rows (prompts of 3 and 10), 7 steps through the layer's fused Triton
    decode kernels; each row against the reference block's prefill and step on that row alone.
    Crosses chunk boundaries and wraps the sliding window's ring. `split`: CONFIG set to blocks
    of 2 rows and 2 rows per split-K program (several partial programs per row and head)."""
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ir, pkg = load(name)
    m = ir.mixer(layer)
    block_cls = pkg.MIXERS[layer]
    monkeypatch.setattr(block_cls.decode_kernels, "step_torch", None)  # Triton or nothing
    if split:
        if m.kind is LayerKind.RNN:
            pytest.skip("the RNN step has no rows to split")
        config = block_cls.decode_kernels.CONFIG
        monkeypatch.setitem(config, _row_block(m), 2)
        monkeypatch.setitem(config, "DECODE_SPLIT_ROWS", 2)
    torch.manual_seed(2)
    ref = mixer_module(m)(m, dtype=torch.float64)
    if m.has_gate_bias:
        with torch.no_grad():
            ref.gate_bias.normal_(0.0, 1.0)  # gates far from 0 and 1, so errors show
    block = block_cls(device=device, dtype=torch.float32)
    block.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    lengths, n, capacity = (3, 10), 7, 18
    h = torch.randn(2, max(lengths) + n, ir.d_model, dtype=torch.float64)
    out, cache = block.prefill(h[:, :max(lengths)].float().to(device), lengths=lengths,
                               capacity=capacity)
    refs = [ref.prefill(h[b:b + 1, :lengths[b]], capacity) for b in range(2)]
    for b in range(2):
        h_b = h[b, :lengths[b]]
        assert_close(out[b, :lengths[b]].cpu() - h_b.float(), refs[b][0][0] - h_b,
                     TOL[torch.float32], f"{layer} prefill row {b}")
    for i in range(n):
        x = torch.stack([h[b, lengths[b] + i] for b in range(2)])
        got = block.step(x.float().to(device), cache).double().cpu() - x
        for b in range(2):
            want = ref.step(x[b:b + 1], refs[b][1])[0] - x[b]
            assert_close(got[b], want, TOL[torch.float32], f"{layer} row {b} step {i}")


@pytest.mark.interpreter
def test_model_decode_through_kernels_matches_reference_lm(monkeypatch):
    """tiny_hybrid (every kind), float32 Triton forward for the prompt, Triton decode steps."""
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ir, pkg, ref, model = models("tiny_hybrid", torch.float32, device=device, seed=1)
    ids = torch.randint(0, ir.vocab_size, (2, 13))
    prompt = 6
    want_logits, want_cache = ref.prefill(ids[:, :prompt], capacity=13)
    logits, cache = model.prefill(ids[:, :prompt].to(device), capacity=13)
    assert_close(logits, want_logits, TOL[torch.float32], "prefill logits")
    for t in range(prompt, 13):
        assert_close(model.step(ids[:, t].to(device), cache), ref.step(ids[:, t], want_cache),
                     TOL[torch.float32], f"step t={t}")

    for layer in cache.layers:  # the RAT step's split counts: its own, reset by every step
        assert layer.nbytes() == sum(t.numel() * t.element_size() for t in layer.tensors.values())
        for k, v in layer.workspace.items():
            assert layer.kind == "rat" and k == "split_done" and v.shape == (2, ir.mixer(
                "rat_nope").heads) and not v.any(), f"{layer.kind} workspace {k}: {v}"
    assert [bool(c.workspace) for c in cache.layers] == [c.kind == "rat" for c in cache.layers]


# -------------------------------------------------------------------------------------------------
# split-K decode (TRITON_INTERPRET=1 on CPU): partial programs over row ranges, then the merge


def _row_block(m):
    return "DECODE_BC" if m.kind is LayerKind.RAT else "DECODE_BN"


def _launcher(kernels, m):
    name = {LayerKind.RAT: "rat", LayerKind.SLIDING_WINDOW: "swa"}.get(m.kind, "attention")
    return getattr(kernels, f"{name}_decode")


def _split_layers():
    out = []
    for name, layers in (("tiny_hybrid", ("rat_nope", "local", "global")),
                         ("tiny_rat", ("rat",)), ("tiny_rat_swa", ("rat", "swa"))):
        out += [pytest.param(name, layer, id=f"{name}-{layer}") for layer in layers]
    return out


SPLITS = [  # (rows per inner step, DECODE_SPLIT_ROWS)
    pytest.param(2, 0, id="auto-B2"),  # auto: about 4 programs per SM, 4 "SMs" off CUDA
    pytest.param(2, 2, id="rows2-B2"),
    pytest.param(2, 4, id="rows4-B2"),  # no capacity below is a multiple of 4 rows
    pytest.param(1, 1, id="rows1-B1"),  # a program per row: a ring's slot t % N alone in one
    pytest.param(2, 64, id="one-split"),  # every row in one program: RAT finishes from registers
]


@pytest.mark.interpreter
@pytest.mark.parametrize("block,span", SPLITS)
@pytest.mark.parametrize("name,layer", _split_layers())
def test_split_decode_matches_torch_step(name, layer, block, span, monkeypatch, poisoned):
    """The launcher with an explicit config, against the PyTorch step in float64 on a copy of
    the same cache: y and every cache tensor, over 2 steps. The cache starts random (rows no
    step may read hold garbage that must not leak), and torch.empty hands out NaN (scratch a
    partial program leaves unwritten shows). Rows sit far apart: RAT at 1 (below L: no complete
    chunk, every split empty), at the close of chunk 2, and at the last rows of the cache;
    attention at 0 (nothing cached), just past the window's wrap, and at the end."""
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ir, pkg = load(name)
    m = ir.mixer(layer)
    kernels = pkg.MIXERS[layer].decode_kernels
    launch = _launcher(kernels, m)
    B, capacity, steps = 3, 45 if m.kind is LayerKind.RAT else 27, 2
    gen = torch.Generator().manual_seed(4)
    cache = kernels.init_cache(B, capacity, device=device, dtype=torch.float32)
    for v in cache.values():
        v.copy_(torch.randn(v.shape, generator=gen))
    want_cache = {k: v.double().cpu() for k, v in cache.items()}
    rows = next(iter(cache.values())).shape[1] if m.kind is not LayerKind.RAT \
        else cache["chunk_keys"].shape[1]
    if m.kind is LayerKind.RAT:
        pos = [1, 3 * m.chunk - 1, rows * m.chunk - 1]
    else:
        pos = [0, min(rows + 1, capacity - steps), capacity - steps]
    pos = torch.tensor(pos, device=device)
    cfg = {_row_block(m): block, "DECODE_SPLIT_ROWS": span}
    spans, n_splits = kernels.decode_split(rows, B * m.heads, block, span, torch.device(device))
    if device == "cpu":  # the interpreter's 4 SMs: every config here but one-split splits
        assert (n_splits > 1) == (span != 64) and (span != 4 or rows % spans), \
            (rows, spans, n_splits)
    bias = torch.randn(ir.d_model, generator=gen).to(device) if m.has_gate_bias else None
    for i in range(steps):
        proj = torch.randn(B, kernels.IN_FEATURES, generator=gen)
        want = kernels.step_torch(proj.double(), None if bias is None else bias.double().cpu(),
                                  want_cache, pos.cpu())
        args = (proj.to(device),) + ((bias,) if m.kind is LayerKind.RAT else ())
        if m.kind is LayerKind.RAT:  # the kernel also copies the layer's input (a strided view)
            h = torch.randn(B, ir.d_model + 3, generator=gen).to(device)[:, 3:]
            got, h_copy = launch(*args, cache, pos, config=cfg, residual=h)
            assert h_copy.is_contiguous() and torch.equal(h_copy, h)
        else:
            got = launch(*args, cache, pos, config=cfg)
        for b in range(B):
            assert_close(got[b], want[b], TOL[torch.float32],
                         f"{layer} {cfg} row {b} at t={int(pos[b])}, step {i}")
        for k, v in cache.items():
            assert_close(v, want_cache[k], TOL[torch.float32], f"{layer} {cfg} cache {k}")
        pos = pos + 1


@pytest.mark.interpreter
@pytest.mark.parametrize("rows,K,N,cfg", [
    (2, 64, 256, {}),  # the defaults at the tiny width: 4 splits of one 16-wide block
    (1, 40, 200, {"PROJ_SPLIT_K": 4, "PROJ_BK": 16, "PROJ_BN": 64}),  # 3 splits, the last ragged
    (16, 48, 37, {"PROJ_SPLIT_K": 1, "PROJ_BK": 32, "PROJ_BN": 16}),  # one split, 2 blocks in it
], ids=["defaults", "ragged-split", "one-split-16rows"])
def test_fused_norm_projection_matches_norm_then_in_proj(rows, K, N, cfg, monkeypatch):
    """decode's project (RMSNorm and in_proj as split-K partial sums, one launch) against
    rms_norm(h) * g @ W^T in float64: partial sums finished as the step kernel finishes them,
    h a strided view, widths that no block divides."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    ir, pkg = load("tiny_rat")
    kernels = pkg.MIXERS["rat"].decode_kernels
    gen = torch.Generator().manual_seed(5)
    h = (3 * torch.randn(rows, K + 5, generator=gen))[:, 5:]
    g, w, eps = torch.rand(K, generator=gen) + 0.5, torch.randn(N, K, generator=gen), 1e-5
    assert kernels.fuses_projection(h, w)
    got = kernels.project(h, g, eps, w, config=cfg)
    assert got.part.shape[1:] == (rows, N) and got.dtype == torch.float32 and got.eps == eps
    rstd = (got.sumsq.double().sum(0) / K + eps).rsqrt()
    want = torch.nn.functional.rms_norm(h.double(), (K,), eps=eps) * g.double() @ w.double().T
    assert_close(rstd[:, None] * got.part.double().sum(0), want, 1e-6, f"proj {cfg}")
    assert_close(rstd, h.double().pow(2).mean(1).add(eps).rsqrt(), 1e-6, "rstd")


@pytest.mark.interpreter
def test_fused_decode_equals_the_unfused_step(monkeypatch):
    """Mixer.decode through project (the fused norm and in_proj, the step kernel, out_proj
    adding into the kernel's copy of h) against the same block through the norm, in_proj, the
    step kernel and out_proj as the forward runs them (PROJ_MAX_ROWS = 0), on copies of one
    cache."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    ir, pkg = load("tiny_rat")
    torch.manual_seed(3)
    block = pkg.MIXERS["rat"](dtype=torch.float32)
    kernels = block.decode_kernels
    with torch.no_grad():
        block.input_norm.weight.uniform_(0.5, 1.5)
    caches = [block.init_cache(2, 40) for _ in range(2)]
    for u, v in zip(caches[0].tensors.values(), caches[1].tensors.values()):
        u.normal_()
        v.copy_(u)
    for c in caches:
        c.pos.copy_(torch.tensor([7, 30]))  # row 0 closes its chunk
    calls, project = [], kernels.project
    monkeypatch.setattr(kernels, "project", lambda *a: calls.append(1) or project(*a))
    for i in range(3):
        h = torch.randn(2, ir.d_model)
        got = block.decode(h, caches[0])
        with monkeypatch.context() as m:
            m.setitem(kernels.PROJ_CONFIG, "PROJ_MAX_ROWS", 0)
            want = block.decode(h, caches[1])
        assert_close(got, want, 1e-5, f"step {i}")
        for k in kernels.CACHE_FIELDS:
            assert_close(caches[0].tensors[k], caches[1].tensors[k], 1e-5, f"cache {k} step {i}")
        for c in caches:
            c.advance()
    assert len(calls) == 3


@pytest.mark.interpreter
def test_rat_step_finishes_a_projection_as_it_reads_a_proj(monkeypatch):
    """rat_decode given a Projection (partial sums: their splits added and 1/rms applied in the
    kernel) equals rat_decode given the finished proj, output and cache, split-K and one split;
    Mixer.decode takes the fused path up to PROJ_MAX_ROWS rows and cuBLAS's beyond (and on the
    CPU path)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    ir, pkg = load("tiny_rat")
    block = pkg.MIXERS["rat"](dtype=torch.float32)
    kernels = block.decode_kernels
    B, gen = 3, torch.Generator().manual_seed(6)
    h = torch.randn(B, ir.d_model, generator=gen)
    fused = kernels.project(h, block.input_norm.weight.detach().uniform_(0.5, 1.5),
                            block.input_norm.eps, block.in_proj.weight.detach(),
                            config={"PROJ_SPLIT_K": 2})
    assert fused.part.shape[0] == 2
    proj = (fused.part.sum(0) * (fused.sumsq.sum(0) / ir.d_model + fused.eps).rsqrt()[:, None])
    bias = torch.randn(ir.d_model, generator=gen)
    pos = torch.tensor([1, 23, 40])
    for cfg in ({"DECODE_BC": 2, "DECODE_SPLIT_ROWS": 2}, {"DECODE_SPLIT_ROWS": 64}):
        caches = [kernels.init_cache(B, 48, dtype=torch.float32) for _ in range(2)]
        for v, u in zip(*(c.values() for c in caches)):
            v.copy_(torch.randn(v.shape, generator=gen))
            u.copy_(v)
        (got, copy), want = (kernels.rat_decode(p, bias, c, pos, cfg, residual=h)
                             for p, c in ((fused, caches[0]), (proj, caches[1])))
        assert torch.equal(copy, h)
        assert_close(got, want[0], 1e-6, f"y {cfg}")
        for k in kernels.CACHE_FIELDS:
            assert_close(caches[0][k], caches[1][k], 1e-6, f"cache {k} {cfg}")
    rows = kernels.PROJ_CONFIG["PROJ_MAX_ROWS"]
    w = block.in_proj.weight
    assert kernels.fuses_projection(torch.zeros(rows, ir.d_model), w)
    assert not kernels.fuses_projection(torch.zeros(rows + 1, ir.d_model), w)
    assert not kernels.fuses_projection(torch.zeros(2, ir.d_model, dtype=torch.float64), w)
    assert not kernels.fuses_projection(torch.zeros(2, ir.d_model, dtype=torch.float16), w)
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not kernels.fuses_projection(torch.zeros(2, ir.d_model), w)


def test_decode_split_is_static_and_whole_blocks(monkeypatch):
    """SPAN and SPLITS from shapes alone: auto fills about 4 programs per SM (H100: 132 SMs),
    SPAN whole row blocks and one block at least, an explicit SPAN rounded up to whole blocks."""
    ir, pkg = load("rat_swa")
    for layer in ("rat", "swa"):
        kernels = pkg.MIXERS[layer].decode_kernels
        cpu = torch.device("cpu")
        monkeypatch.setitem(kernels._SMS, cpu, 132)
        split = kernels.decode_split
        span, n = split(8192, 2 * 16, 128, 0, cpu)  # RAT at 131072 tokens, B = 2, H = 16
        assert span % 128 == 0 and n * span >= 8192 > (n - 1) * span
        assert 2 * 132 <= 32 * n <= 4 * 132 + 32, (span, n)
        assert split(8192, 32, 128, 256, cpu) == (256, 32)
        assert split(11, 6, 2, 3, cpu) == (4, 3)  # 3 rows rounded up to 2 blocks of 2
        assert split(5, 1000, 64, 0, cpu) == (64, 1)  # one block at least
        assert split(1, 1, 32, 0, cpu) == (32, 1)  # a capacity below one block
        assert split(131072, 4096, 32, 0, cpu) == (131072, 1)  # programs enough: no split
        assert kernels.CONFIG["DECODE_SPLIT_ROWS"] == 0


# -------------------------------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["tiny_hybrid", "tiny_rat_swa", "rat_swa"])
def test_bf16_decode_matches_reference_on_gpu(name):
    """bf16 weights and caches, compiled kernels: prefill and steps against the float64 reference
    (tiny specs whole; the 1.3B rat_swa as its first two blocks)."""
    ir, pkg = load(name)
    blocks = 2 if name == "rat_swa" else ir.n_layers
    torch.manual_seed(0)
    ref = LM(dataclasses.replace(ir, layers=ir.layers[:blocks]), dtype=torch.float64)
    model = pkg.Model(device="cuda", dtype=torch.bfloat16)
    model.backbone.layers = model.backbone.layers[:blocks]
    model.load_state_dict({k: v.to(torch.bfloat16) for k, v in ref.state_dict().items()})
    T, prompt = 80, 37
    ids = torch.randint(0, ir.vocab_size, (2, T))
    want_logits, want_cache = ref.prefill(ids[:, :prompt], capacity=T)
    logits, cache = model.prefill(ids[:, :prompt].cuda(), capacity=T)
    assert_close(logits, want_logits, TOL[torch.bfloat16], "prefill logits")
    for t in range(prompt, T):
        assert_close(model.step(ids[:, t].cuda(), cache), ref.step(ids[:, t], want_cache),
                     TOL[torch.bfloat16], f"step t={t}")


@pytest.mark.gpu
@pytest.mark.parametrize("name,layer", [("rat_swa", "rat"), ("rat_swa", "swa"),
                                        ("attention", "attention"), ("rnn", "rnn")],
                         ids=["rat_swa-rat", "rat_swa-swa", "attention", "rnn"])
def test_decode_kernel_matches_torch_path_at_scale_on_gpu(name, layer):
    """1.3B layer sizes, bf16, ragged rows at positions 1100 and 1500 (many chunk rows, a wrapped
    window, RoPE at large positions): the Triton step equals the PyTorch step, output and cache."""
    ir, pkg = load(name)
    torch.manual_seed(0)
    block = pkg.MIXERS[layer](device="cuda", dtype=torch.bfloat16)
    kernels, D = block.decode_kernels, ir.d_model
    lengths = [1500, 1100]
    h = torch.randn(2, max(lengths), D, device="cuda", dtype=torch.bfloat16)
    _, cache = block.prefill(h, lengths=lengths, capacity=1600)
    for i in range(20):
        x = torch.randn(2, D, device="cuda", dtype=torch.bfloat16)
        proj = block.in_proj(block.input_norm(x))
        want_cache = {k: v.clone() for k, v in cache.tensors.items()}
        want = kernels.step_torch(proj, block._gate_bias(), want_cache, cache.pos)
        got = kernels.step_triton(proj, block._gate_bias(), cache.tensors, cache.pos)
        assert_close(got, want, 1e-2, f"{layer} step {i}")
        for k, v in cache.tensors.items():
            assert_close(v, want_cache[k], 1e-2, f"{layer} cache {k} after step {i}")
        cache.advance()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("rows", [2, 16])
def test_fused_norm_projection_at_scale_on_gpu(dtype, rows):
    """decode's fused RMSNorm + in_proj, compiled, at the 1.3B RAT layer's width (2048 -> 6656)
    against the unfused layer (the norm kernel, then cuBLAS), and the step on it against the step
    on the unfused proj."""
    ir, pkg = load("rat_swa")
    torch.manual_seed(0)
    block = pkg.MIXERS["rat"](device="cuda", dtype=dtype)
    kernels = block.decode_kernels
    with torch.no_grad():
        block.input_norm.weight.uniform_(0.5, 1.5)
    h = torch.randn(rows, ir.d_model, device="cuda", dtype=dtype)
    fused = kernels.project(h, block.input_norm.weight, block.input_norm.eps, block.in_proj.weight)
    want = block.in_proj(block.input_norm(h))
    proj = fused.part.sum(0) * (fused.sumsq.sum(0) / ir.d_model + fused.eps).rsqrt()[:, None]
    assert_close(proj, want, 1e-2 if dtype == torch.bfloat16 else 1e-5, f"proj {dtype}")
    caches = [block.init_cache(rows, 4096) for _ in range(2)]
    for c in caches:
        c.pos.fill_(3007)  # l = 15: the token closes its chunk
    for u, v in zip(caches[0].tensors.values(), caches[1].tensors.values()):
        u.normal_()
        v.copy_(u)
    got = kernels.step(fused, block._gate_bias(), caches[0].step_tensors, caches[0].pos)
    ref = kernels.step(want, block._gate_bias(), caches[1].step_tensors, caches[1].pos)
    assert_close(got, ref, 2e-2 if dtype == torch.bfloat16 else 1e-5, f"step {dtype}")
    for k in kernels.CACHE_FIELDS:
        assert_close(caches[0].tensors[k], caches[1].tensors[k],
                     2e-2 if dtype == torch.bfloat16 else 1e-5, f"cache {k} {dtype}")


@pytest.mark.gpu
@pytest.mark.parametrize("T,B", [(8192, 2), (2048, 16)])
def test_fused_decode_step_replayed_equals_cublas_step_on_gpu(T, B):
    """The layer's fused step (norm + in_proj in one launch, the step kernel finishing its partial
    sums, out_proj), eager and replayed from a CUDA graph over consecutive tokens, against the
    same layer's step through the norm kernel and cuBLAS (PROJ_MAX_ROWS = 0) on a copy of the
    cache: outputs and caches agree at bf16 rounding."""
    ir, pkg = load("rat_swa")
    torch.manual_seed(1)
    block = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
    kernels = block.decode_kernels
    with torch.no_grad():
        block.input_norm.weight.uniform_(0.5, 1.5)
    caches = [block.init_cache(B, T + 64) for _ in range(2)]
    for u, v in zip(caches[0].tensors.values(), caches[1].tensors.values()):
        u.normal_()
        v.copy_(u)
    for c in caches:
        c.pos.copy_(T - 3 + torch.arange(B, device="cuda") % 5)  # ragged, chunks closing
    h = torch.randn(B, ir.d_model, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(h)
    run = lambda: out.copy_(block.decode(h, caches[0]))

    def unfused():
        saved = kernels.PROJ_CONFIG["PROJ_MAX_ROWS"]
        kernels.PROJ_CONFIG["PROJ_MAX_ROWS"] = 0
        try:
            return block.decode(h, caches[1])
        finally:
            kernels.PROJ_CONFIG["PROJ_MAX_ROWS"] = saved

    assert kernels.fuses_projection(h, block.in_proj.weight)
    with torch.no_grad():
        for i in range(8):
            h.normal_()
            if i == 2:  # steps 0, 1 eager (compiling), then captured: the graph replays at 2, 4, 6
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    run()
            graph.replay() if i % 2 == 0 and i >= 2 else run()
            want = unfused()
            assert_close(out, want, 1e-2, f"step {i}")
            for k in kernels.CACHE_FIELDS:
                assert_close(caches[0].tensors[k], caches[1].tensors[k], 1e-2,
                             f"cache {k}, step {i}")
            for c in caches:
                c.advance()


@pytest.mark.gpu
def test_rat_decode_many_splits_replayed_on_gpu():
    """The one-launch RAT step with many splits per head (the last program of each (row, head)
    merges, then resets its count), eager and replayed from a CUDA graph, against the PyTorch step
    for consecutive tokens at ragged positions past 4000 chunk rows (chunks closing among them)."""
    ir, pkg = load("rat_swa")
    torch.manual_seed(0)
    block = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
    kernels, D = block.decode_kernels, ir.d_model
    B, capacity = 3, 65536
    cache = block.init_cache(B, capacity)
    for t in cache.tensors.values():
        t.normal_()
    cache.pos.copy_(torch.tensor([64000, 65005, 40009], device="cuda"))  # l = 0, 13, 9
    proj = torch.empty(B, block.in_proj.out_features, device="cuda", dtype=torch.bfloat16)
    bias = block._gate_bias()
    for split_rows in (32, 0):  # 32 rows: about 2000 splits per (row, head); 0: auto
        config = dict(DECODE_SPLIT_ROWS=split_rows)
        out = torch.empty(B, D, device="cuda", dtype=torch.bfloat16)
        run = lambda: kernels.rat_decode(proj, bias, cache.tensors, cache.pos, config, out=out)
        proj.normal_()
        run()  # compile outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        for i in range(6):
            proj.normal_()
            want_cache = {k: v.clone() for k, v in cache.tensors.items()}
            want = kernels.step_torch(proj, bias, want_cache, cache.pos)
            run() if i % 2 else graph.replay()
            assert_close(out, want, 1e-2, f"split rows {split_rows}, step {i}")
            rows = (torch.arange(B, device="cuda"), cache.pos // 16)  # row 1 closes at i = 2
            for k, v in cache.tensors.items():
                got, exp = (v[rows], want_cache[k][rows]) if v.dim() == 3 else (v, want_cache[k])
                assert_close(got, exp, 1e-2, f"cache {k} after step {i}")
            cache.advance()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["tiny_hybrid", "tiny_rat"])
def test_cuda_graph_generate_equals_eager(name):
    ir, pkg = load(name)
    torch.manual_seed(0)
    model = pkg.Model(device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, ir.vocab_size, (3, 21), device="cuda")
    lengths = torch.tensor([21, 9, 14], device="cuda")
    for kw in (dict(), dict(temperature=0.9, top_k=20)):
        runs = [model.generate(ids, 40, lengths=lengths, use_cuda_graph=graph,
                               generator=torch.Generator("cuda").manual_seed(5), **kw)
                for graph in (False, True)]
        assert torch.equal(runs[0], runs[1]), f"{kw}: graph {runs[1]} vs eager {runs[0]}"
