"""Baselines that `ratc bench` times generated layers against, written from DESIGN.md §1.

Each baseline is a function of (layer, h) that reuses the generated layer's own parameters
(input_norm, in_proj, gate_bias, out_proj), so its output can be checked against the generated
layer before anything is timed.

- `paper_rat`: RAT as the paper's released code computes it — the in-chunk scan as PyTorch ops,
  the inter-chunk attention through FlexAttention with a block mask, the self term as an einsum
  merged through the log-sum-exp — under torch.compile. Written here from the math, not copied.
- `sdpa_attention`: causal attention through PyTorch SDPA (flash backend on Hopper).
- `flex_sliding_window`: sliding-window attention through FlexAttention.

Train mode times the same functions forward and backward. Decode mode times single-token steps
written eagerly from DESIGN.md §1 (`PaperRATStep`, `AttentionStep`, `RNNStep`): plain PyTorch ops
on caches laid out as the generated package's (chunk_keys, chunk_values, key_state, value_state;
keys, values; state), so one cache serves every implementation.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def rope_tables(positions: torch.Tensor, dim: int, base: float, dtype=torch.float32):
    """cos, sin [len(positions), dim] for rotate-half RoPE, in `dtype` (fp32 or float64)."""
    inv = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=dtype) / dim)
    ang = positions.to(dtype)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., N, d] rotated by per-position cos/sin [N, d] (rotate-half convention)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rot = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rot * sin).to(x.dtype)


def _split(layer, h):
    u = layer.input_norm(h)
    proj = layer.in_proj(u)
    sizes = [n for _, n in layer.in_split]
    return dict(zip([p for p, _ in layer.in_split], proj.split(sizes, dim=-1)))


# -------------------------------------------------------------------------------------------------
# RAT, paper style


@functools.lru_cache(maxsize=16)
def _chunk_mask(T: int, C: int, L: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal_chunks(b, h, q_idx, kv_idx):
        return kv_idx < q_idx // L

    # compiled: an eager create_block_mask materialises the dense T x C mask first
    return torch.compile(create_block_mask)(causal_chunks, B=None, H=None, Q_LEN=T, KV_LEN=C,
                                            device=device)


def dense_chunk_attend(L: int):
    """A dense stand-in for `_flex` over the chunk mask (query t sees chunks c' < t // L):
    (out [B, H, T, d], lse [B, H, T]) from plain ops. FlexAttention has no CPU backward, so the
    CPU tests check paper_rat_core's gradients through this; empty rows get weight exp(-1e9) ~ 0
    instead of flex's lse = -inf, which merges to the same result."""

    def attend(q, k, v, block_mask, scale):
        T, C = q.shape[-2], k.shape[-2]
        s = torch.einsum("bhtd,bhcd->bhtc", q.float() if q.dtype != torch.float64 else q,
                         k.to(q.dtype if q.dtype == torch.float64 else torch.float32)) * scale
        t = torch.arange(T, device=q.device)
        seen = torch.arange(C, device=q.device)[None, :] < (t // L)[:, None]
        s = s.masked_fill(~seen, -1e9)
        lse = torch.logsumexp(s, -1)
        out = torch.einsum("bhtc,bhcd->bhtd", torch.softmax(s, -1), v.to(s.dtype))
        return out.to(q.dtype), lse

    return attend


def _flex(q, k, v, block_mask, scale):
    from torch.nn.attention.flex_attention import flex_attention

    try:
        from torch.nn.attention.flex_attention import AuxRequest

        out, aux = flex_attention(q, k, v, block_mask=block_mask, scale=scale,
                                  return_aux=AuxRequest(lse=True))
        return out, aux.lse
    except ImportError:
        return flex_attention(q, k, v, block_mask=block_mask, scale=scale, return_lse=True)


def paper_rat_core(parts: dict, gate_bias, *, H, d, G, L, rope_base, chunk_rope, block_mask,
                   attend=None):
    """RAT between in_proj and out_proj as the paper's code computes it. parts: in_proj's output
    split by name ([B, T, n] each); `attend(q, k, v, block_mask, scale) -> (out, lse)` is
    FlexAttention by default. Needs T % L == 0, as the released code asserts."""
    attend = _flex if attend is None else attend
    x, a, q, k = parts["x"], parts["a"], parts["q"], parts["k"]
    Bsz, T, D = x.shape
    C = T // L
    g = torch.sigmoid(a.float() + gate_bias.float())
    kt = k.repeat(1, 1, D // k.shape[-1])  # tile G groups to width D: channel j uses k[j % (G d)]
    # in-chunk scan, written as PyTorch ops over the L positions of every chunk
    g4 = g.view(Bsz, C, L, D)
    ks, vs = ((1 - g) * kt.float()).view(Bsz, C, L, D), ((1 - g) * x.float()).view(Bsz, C, L, D)
    k_states, v_states = [ks[:, :, 0]], [vs[:, :, 0]]
    for i in range(1, L):
        k_states.append(g4[:, :, i] * k_states[-1] + ks[:, :, i])
        v_states.append(g4[:, :, i] * v_states[-1] + vs[:, :, i])
    k_run = torch.stack(k_states, 2).to(x.dtype)  # [B, C, L, D], rounded like the paper's code
    v_run = torch.stack(v_states, 2).to(x.dtype)
    heads = lambda t: t.reshape(Bsz, -1, H, d).transpose(1, 2)  # noqa: E731  [B, H, N, d]
    qh = heads(q.repeat(1, 1, H // G))
    k_self, v_self = heads(k_run.reshape(Bsz, T, D)), heads(v_run.reshape(Bsz, T, D))
    K, V = heads(k_run[:, :, -1]), heads(v_run[:, :, -1])  # chunk-final states [B, H, C, d]
    if chunk_rope:
        pos = torch.arange(T, device=x.device) // L
        cq, sq = rope_tables(pos, d, rope_base)
        ck, sk = rope_tables(torch.arange(C, device=x.device), d, rope_base)
        qr, K = apply_rope(qh, cq, sq), apply_rope(K, ck, sk)
    else:
        qr = qh
    scale = d ** -0.5
    out, lse = attend(qr, K, V, block_mask, scale)
    s_self = torch.einsum("bhtd,bhtd->bht", qh.float(), k_self.float()) * scale  # rope cancels
    m = torch.maximum(lse, s_self)
    w_att, w_self = torch.exp(lse - m), torch.exp(s_self - m)
    y = (w_att[..., None] * out.float() + w_self[..., None] * v_self.float())
    y = y / (w_att + w_self)[..., None]
    y = y.transpose(1, 2).reshape(Bsz, T, D).to(x.dtype)
    return torch.sigmoid(parts["z"]) * y if "z" in parts else y


# -------------------------------------------------------------------------------------------------
# attention baselines


def _attention_qkv(parts, H, d, rope_base, use_rope):
    x, q, k = parts["x"], parts["q"], parts["k"]
    Bsz, T, D = x.shape
    heads = lambda t: t.reshape(Bsz, T, H, d).transpose(1, 2)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(x)
    if use_rope:
        cos, sin = rope_tables(torch.arange(T, device=x.device), d, rope_base)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    return q, k, v


def sdpa_core(parts, *, H, d, rope_base, use_rope, window=None):
    """Causal attention through SDPA; `window` W adds a dense mask (token t sees t-W .. t)."""
    q, k, v = _attention_qkv(parts, H, d, rope_base, use_rope)
    if window is None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        t = torch.arange(q.shape[-2], device=q.device)
        lag = t[:, None] - t[None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=(lag >= 0) & (lag <= window))
    Bsz, _, T, _ = y.shape
    return y.transpose(1, 2).reshape(Bsz, T, H * d)


@functools.lru_cache(maxsize=16)
def _window_mask(T: int, W: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def sliding(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx <= W)

    return torch.compile(create_block_mask)(sliding, B=None, H=None, Q_LEN=T, KV_LEN=T,
                                            device=device)


def flex_window_core(parts, *, H, d, rope_base, use_rope, block_mask):
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = _attention_qkv(parts, H, d, rope_base, use_rope)
    y = flex_attention(q, k, v, block_mask=block_mask)
    Bsz, _, T, _ = y.shape
    return y.transpose(1, 2).reshape(Bsz, T, H * d)


# -------------------------------------------------------------------------------------------------
# layer-level wrappers: h -> h + out_proj(core(...)) with the generated layer's weights


def make_baselines(layer, mixer, T: int, dense: bool = False):
    """{name: fn(h)} of the baselines that compute this layer's function, compiled where the paper
    compiles. `mixer` is the layer's MixerIR; `layer` the generated nn.Module (or a reference
    module: the same parameter names). Reference points that compute another function (full
    attention beside a windowed layer) come from `reference_points`.

    dense=True swaps FlexAttention for plain masked softmax and compiles nothing: the CPU tests'
    float64 version of the same baselines (FlexAttention has no CPU backward).
    """
    from .ir import LayerKind, Position

    layer.in_split = mixer.in_split
    dev = str(layer.in_proj.weight.device)
    H, d = mixer.heads, mixer.head_dim
    compile_ = (lambda f: f) if dense else functools.partial(torch.compile, dynamic=False)
    out = {}
    if mixer.kind is LayerKind.RAT:
        L = mixer.chunk
        core = compile_(functools.partial(
            paper_rat_core, H=H, d=d, G=mixer.groups, L=L, rope_base=mixer.rope_base,
            chunk_rope=mixer.position is Position.CHUNK_ROPE,
            attend=dense_chunk_attend(L) if dense else None))
        mask = (lambda: None) if dense else (lambda: _chunk_mask(T, T // L, L, dev))
        out["paper RAT (flex + compiled scan)"] = lambda h: h + layer.out_proj(
            core(_split(layer, h), layer.gate_bias, block_mask=mask()))
    if mixer.kind in (LayerKind.RAT, LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        rope = mixer.position is not Position.NOPE
        sd = functools.partial(sdpa_core, H=H, d=d, rope_base=mixer.rope_base, use_rope=rope)
        attn_parts = lambda h: {p: t for p, t in _split(layer, h).items() if p in "xqk"}  # noqa
        if mixer.kind is LayerKind.ATTENTION:
            out["SDPA attention (flash)"] = lambda h: h + layer.out_proj(sd(attn_parts(h)))
    if mixer.kind is LayerKind.SLIDING_WINDOW:
        rope = mixer.position is not Position.NOPE
        if dense:
            W = mixer.window
            out["SDPA sliding window (dense mask)"] = lambda h: h + layer.out_proj(sdpa_core(
                attn_parts(h), H=H, d=d, rope_base=mixer.rope_base, use_rope=rope, window=W))
        else:
            fx = compile_(functools.partial(flex_window_core, H=H, d=d,
                                            rope_base=mixer.rope_base, use_rope=rope))
            out["FlexAttention sliding window"] = lambda h: h + layer.out_proj(
                fx(attn_parts(h), block_mask=_window_mask(T, mixer.window, dev)))
    return out


def reference_points(mixer, device, dtype):
    """{name: module} of layers that compute a different function at the same width, timed for
    context (full attention beside RAT and sliding-window layers), never compared for error."""
    from .ir import LayerKind

    if mixer.kind in (LayerKind.RAT, LayerKind.SLIDING_WINDOW):
        return {"SDPA attention layer (same D)": sdpa_attention_layer(
            mixer.d_model, mixer.heads, device, dtype)}
    return {}


def sdpa_attention_layer(D: int, H: int, device, dtype):
    """A plain attention layer (same sizes, its own weights) for the RAT comparison row."""
    from torch import nn

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_norm = nn.RMSNorm(D, eps=1e-6, device=device, dtype=dtype)
            self.in_proj = nn.Linear(D, 3 * D, bias=False, device=device, dtype=dtype)
            self.out_proj = nn.Linear(D, D, bias=False, device=device, dtype=dtype)
            for w in (self.in_proj.weight, self.out_proj.weight):
                nn.init.normal_(w, std=0.02)

        in_split = (("x", D), ("q", D), ("k", D))

        def forward(self, h):
            x, q, k = self.in_proj(self.input_norm(h)).split(D, dim=-1)
            y = sdpa_core({"x": x, "q": q, "k": k}, H=H, d=D // H, rope_base=10000.0, use_rope=True)
            return h + self.out_proj(y)

    return Attn()


# -------------------------------------------------------------------------------------------------
# decode: one token per row at position t (a Python int: the same for every row, as the paper's
# eager step has it), on caches laid out as the generated package's LayerCache.tensors


def _split_step(layer, h):
    """h [B, D] -> {part: [B, n]} of in_proj(input_norm(h))."""
    return _split(layer, h)


def _gate(mixer, layer, a, ct):
    """(g, w) in dtype ct: the spec's forget gate of a + gate_bias (sigmoid in the paper) and the
    input weight (1 - g, or 1)."""
    from .reference.functional import forget_gate, input_weight

    bias = getattr(layer, "gate_bias", None)
    g = forget_gate(mixer, a.to(ct), None if bias is None else bias.to(ct))
    return g, input_weight(mixer, g)


class PaperRATStep:
    """The paper-style eager RAT decode step (DESIGN.md §1), plain PyTorch ops:

    norm, in_proj, split; g = sigmoid(a + gate_bias) in fp32; k~ = g k~ + (1-g) k, v~ likewise
    (restarted when t opens a chunk); chunk RoPE at c = t // L on q and k~; one softmax over
    [q.K~_0 .. q.K~_{c-1}, q.k~] / sqrt(d); y = sigmoid(z) * (p . [V~; v~]); out_proj; and when t
    closes its chunk, K~_c, V~_c are written. (The spec's gate and input scale stand in for the
    paper's sigmoid and 1 - g where a spec changes them.)

    Call: step(h [B, D], cache {chunk_keys, chunk_values [B, R, D], key_state, value_state [B, D]},
    t) -> h + mixer(h) [B, D]; updates the cache in place.
    """

    def __init__(self, layer, mixer, capacity: int):
        from .ir import Position

        layer.in_split = mixer.in_split
        self.layer, self.m = layer, mixer
        self.H, self.d, self.G, self.L = mixer.heads, mixer.head_dim, mixer.groups, mixer.chunk
        w = layer.in_proj.weight
        rows = capacity // self.L + 1
        self.rope = mixer.position is Position.CHUNK_ROPE
        ct = torch.float64 if w.dtype == torch.float64 else torch.float32
        self.ct = ct
        self.cos, self.sin = rope_tables(torch.arange(rows, device=w.device), self.d,
                                         mixer.rope_base, ct)  # [rows, d]: tables built once, as a server would

    def _rot(self, x, c):  # x [B, H, d] at chunk c
        x1, x2 = x.chunk(2, dim=-1)
        return x * self.cos[c] + torch.cat([-x2, x1], dim=-1) * self.sin[c]

    def __call__(self, h, cache, t: int):
        layer, H, d, L, ct = self.layer, self.H, self.d, self.L, self.ct
        B, D = h.shape
        p = _split_step(layer, h)
        c, l = divmod(t, L)
        g, w = _gate(self.m, layer, p["a"], ct)
        k = p["k"].to(ct).repeat(1, H // self.G)
        ks, vs = cache["key_state"], cache["value_state"]
        if l == 0:
            k_state, v_state = w * k, w * p["x"].to(ct)
        else:
            k_state = g * ks.to(ct) + w * k
            v_state = g * vs.to(ct) + w * p["x"].to(ct)
        ks.copy_(k_state)
        vs.copy_(v_state)
        q = p["q"].to(ct).repeat(1, H // self.G).view(B, H, d)
        kh, vh = k_state.view(B, H, d), v_state.view(B, H, d)
        if self.rope:
            q, kh = self._rot(q, c), self._rot(kh, c)
        scale = d ** -0.5
        K = cache["chunk_keys"][:, :c].view(B, c, H, d)
        V = cache["chunk_values"][:, :c].view(B, c, H, d)
        s = torch.einsum("bhd,bchd->bhc", q.to(K.dtype), K).to(ct) * scale
        s_self = (q * kh).sum(-1, keepdim=True) * scale
        prob = torch.softmax(torch.cat([s, s_self], dim=-1), dim=-1)
        y = torch.einsum("bhc,bchd->bhd", prob[..., :-1].to(V.dtype), V).to(ct)
        y = (y + prob[..., -1:] * vh).reshape(B, D)
        if l == L - 1 and c < cache["chunk_keys"].shape[1]:
            cache["chunk_keys"][:, c] = kh.reshape(B, D).to(cache["chunk_keys"].dtype)
            cache["chunk_values"][:, c] = v_state.to(cache["chunk_values"].dtype)
        if "z" in p:
            y = torch.sigmoid(p["z"].to(ct)) * y
        return h + layer.out_proj(y.to(h.dtype))


class AttentionStep:
    """One-token attention decode: norm, in_proj, token RoPE at t on q and k, k and v written to
    slot t % N of the cache, softmax over the filled slots (a ring of W + 1 with a window: exactly
    tokens t-W .. t), out_proj. `sdpa` False: eager einsum/softmax (the paper's style); True:
    PyTorch SDPA for the attention part.

    Call: step(h [B, D], cache {keys, values [B, N, D]}, t) -> h + mixer(h) [B, D].
    """

    def __init__(self, layer, H: int, d: int, rope_base: float, use_rope: bool, capacity: int,
                 sdpa: bool = False):
        self.layer, self.H, self.d, self.sdpa, self.use_rope = layer, H, d, sdpa, use_rope
        w = layer.in_proj.weight
        self.ct = torch.float64 if w.dtype == torch.float64 else torch.float32
        self.cos, self.sin = rope_tables(torch.arange(capacity + 1, device=w.device), d,
                                         rope_base, self.ct)

    def _rot(self, x, t):  # x [B, H, d] at token t
        x1, x2 = x.chunk(2, dim=-1)
        return x * self.cos[t] + torch.cat([-x2, x1], dim=-1) * self.sin[t]

    def __call__(self, h, cache, t: int):
        layer, H, d, ct = self.layer, self.H, self.d, self.ct
        B, D = h.shape
        p = _split_step(layer, h)
        keys, values = cache["keys"], cache["values"]
        N = keys.shape[1]
        q, k = p["q"].to(ct).view(B, H, d), p["k"].to(ct).view(B, H, d)
        if self.use_rope:
            q, k = self._rot(q, t), self._rot(k, t)
        keys[:, t % N] = k.reshape(B, D).to(keys.dtype)
        values[:, t % N] = p["x"].to(values.dtype)
        n = min(t + 1, N)
        K, V = keys[:, :n].view(B, n, H, d), values[:, :n].view(B, n, H, d)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q.to(K.dtype)[:, :, None], K.transpose(1, 2),
                                               V.transpose(1, 2))[:, :, 0]
        else:
            s = torch.einsum("bhd,bnhd->bhn", q.to(K.dtype), K).to(ct) * d ** -0.5
            y = torch.einsum("bhn,bnhd->bhd", torch.softmax(s, -1).to(V.dtype), V)
        return h + layer.out_proj(y.reshape(B, D).to(h.dtype))


class RNNStep:
    """The gated RNN's eager step: v~ = g v~ + (1-g) x, y = sigmoid(z) * v~ (the spec's gate and
    input scale where it changes them)."""

    def __init__(self, layer, mixer):
        layer.in_split = mixer.in_split
        self.layer, self.m = layer, mixer

    def __call__(self, h, cache, t: int):
        p = _split_step(self.layer, h)
        st = cache["state"]
        ct = torch.float64 if st.dtype == torch.float64 else torch.float32
        g, w = _gate(self.m, self.layer, p["a"], ct)
        s = g * st.to(ct) + w * p["x"].to(ct)
        st.copy_(s)
        y = torch.sigmoid(p["z"].to(ct)) * s if "z" in p else s
        return h + self.layer.out_proj(y.to(h.dtype))


def make_decode_baselines(layer, mixer, capacity: int):
    """{name: step(h [B, D], cache tensors, t)} of the eager decode steps computing this layer's
    function, on the generated layer's own weights and cache layout."""
    from .ir import LayerKind, Position

    layer.in_split = mixer.in_split
    if mixer.kind is LayerKind.RAT:
        return {"paper RAT step (eager ops)": PaperRATStep(layer, mixer, capacity)}
    if mixer.kind is LayerKind.RNN:
        return {"RNN step (eager ops)": RNNStep(layer, mixer)}
    kw = dict(H=mixer.heads, d=mixer.head_dim, rope_base=mixer.rope_base,
              use_rope=mixer.position is not Position.NOPE, capacity=capacity)
    what = "window" if mixer.kind is LayerKind.SLIDING_WINDOW else "attention"
    return {f"paper {what} step (eager ops)": AttentionStep(layer, **kw),
            f"SDPA {what} step": AttentionStep(layer, sdpa=True, **kw)}


__all__ = ["make_baselines", "reference_points", "sdpa_attention_layer", "paper_rat_core",
           "rope_tables", "apply_rope", "dense_chunk_attend", "PaperRATStep", "AttentionStep",
           "RNNStep", "make_decode_baselines"]
