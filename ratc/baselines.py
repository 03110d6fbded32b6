"""Baselines that `ratc bench` times generated layers against, written from DESIGN.md §1.

Each baseline is a function of (layer, h) that reuses the generated layer's own parameters
(input_norm, in_proj, gate_bias, out_proj), so its output can be checked against the generated
layer before anything is timed.

- `paper_rat`: RAT as the paper's released code computes it — the in-chunk scan as PyTorch ops,
  the inter-chunk attention through FlexAttention with a block mask, the self term as an einsum
  merged through the log-sum-exp — under torch.compile. Written here from the math, not copied.
- `sdpa_attention`: causal attention through PyTorch SDPA (flash backend on Hopper).
- `flex_sliding_window`: sliding-window attention through FlexAttention.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def rope_tables(positions: torch.Tensor, dim: int, base: float):
    """cos, sin [len(positions), dim] for rotate-half RoPE, in fp32."""
    inv = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    ang = positions.float()[:, None] * inv[None, :]
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


def _flex(q, k, v, block_mask, scale):
    from torch.nn.attention.flex_attention import flex_attention

    try:
        from torch.nn.attention.flex_attention import AuxRequest

        out, aux = flex_attention(q, k, v, block_mask=block_mask, scale=scale,
                                  return_aux=AuxRequest(lse=True))
        return out, aux.lse
    except ImportError:
        return flex_attention(q, k, v, block_mask=block_mask, scale=scale, return_lse=True)


def paper_rat_core(parts: dict, gate_bias, *, H, d, G, L, rope_base, chunk_rope, block_mask):
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
    out, lse = _flex(qr, K, V, block_mask, scale)
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


def sdpa_core(parts, *, H, d, rope_base, use_rope):
    q, k, v = _attention_qkv(parts, H, d, rope_base, use_rope)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
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


def make_baselines(layer, mixer, T: int):
    """{name: fn(h)} of the baselines that compute this layer's function, compiled where the paper
    compiles. `mixer` is the layer's MixerIR; `layer` the generated nn.Module. Reference points
    that compute another function (full attention beside a windowed layer) come from
    `reference_points`."""
    from .ir import LayerKind, Position

    layer.in_split = mixer.in_split
    dev = str(layer.in_proj.weight.device)
    H, d = mixer.heads, mixer.head_dim
    out = {}
    if mixer.kind is LayerKind.RAT:
        L = mixer.chunk
        core = torch.compile(functools.partial(
            paper_rat_core, H=H, d=d, G=mixer.groups, L=L, rope_base=mixer.rope_base,
            chunk_rope=mixer.position is Position.CHUNK_ROPE))
        out["paper RAT (flex + compiled scan)"] = lambda h: h + layer.out_proj(
            core(_split(layer, h), layer.gate_bias, block_mask=_chunk_mask(T, T // L, L, dev)))
    if mixer.kind in (LayerKind.RAT, LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        rope = mixer.position is not Position.NOPE
        sd = functools.partial(sdpa_core, H=H, d=d, rope_base=mixer.rope_base, use_rope=rope)
        attn_parts = lambda h: {p: t for p, t in _split(layer, h).items() if p in "xqk"}  # noqa
        if mixer.kind is LayerKind.ATTENTION:
            out["SDPA attention (flash)"] = lambda h: h + layer.out_proj(sd(attn_parts(h)))
    if mixer.kind is LayerKind.SLIDING_WINDOW:
        fx = torch.compile(functools.partial(flex_window_core, H=H, d=d, rope_base=mixer.rope_base,
                                             use_rope=mixer.position is not Position.NOPE))
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

        def forward(self, h):
            x, q, k = self.in_proj(self.input_norm(h)).split(D, dim=-1)
            y = sdpa_core({"x": x, "q": q, "k": k}, H=H, d=D // H, rope_base=10000.0, use_rope=True)
            return h + self.out_proj(y)

    return Attn()


__all__ = ["make_baselines", "reference_points", "sdpa_attention_layer", "paper_rat_core", "rope_tables", "apply_rope"]
