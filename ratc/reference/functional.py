"""The layers' math as plain functions of tensors (DESIGN.md §1), written to be read, not run fast.

Notation: B batch, T tokens, D model width, H heads of width d (D = H*d), G key/query groups,
L chunk length, W window, c = t // L the chunk of token t.

`mixer_core(mixer, proj, gate_bias)` is everything between a mixer's in_proj and its out_proj:

    RAT        [z, x, a, q, k] = proj      g = gate(a + gate_bias)
               k~_t = g_t k~_{t-1} + s_t k_t,  v~_t = g_t v~_{t-1} + s_t x_t   (reset at t % L == 0)
               y_t  = softmax([q_t.K~_0 .. q_t.K~_{c-1}, q_t.k~_t] / sqrt(d))
                      . [V~_0 .. V~_{c-1}, v~_t]
    window     [x, q, k] = proj            y_t = softmax over keys t-W .. t  (attention: 0 .. t)
    RNN        [z, x, a] = proj            y_t = v~_t, one scan over the whole sequence

with s_t = 1 - g_t (input scale "1 - g") or 1 (input scale "1"), K~_c = k~ at the last token of
chunk c, and, where the layer has an output gate, the result sigmoid(z) * y. Every function works in
the dtype it is given (float64 for the oracle); nothing is cast to fp32 here.

    >>> from ratc.lower import lower; from ratc.spec import load_spec
    >>> rat = lower(load_spec("specs/tiny_rat.yaml")).mixers[0]
    >>> mixer_core(rat, torch.randn(2, 13, rat.in_features), torch.zeros(64)).shape
    torch.Size([2, 13, 64])
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..gates import to_torch_function
from ..ir import InputScale, LayerKind, MixerIR, Position

# -------------------------------------------------------------------------------------------------
# building blocks


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def split_proj(mixer: MixerIR, proj: Tensor) -> dict[str, Tensor]:
    """Split in_proj's output [..., in_features] into its named parts, in `mixer.in_split` order."""
    if proj.shape[-1] != mixer.in_features:
        raise ValueError(f"{mixer.name}: in_proj output has {proj.shape[-1]} features, "
                         f"the layer expects {mixer.in_features} ({dict(mixer.in_split)})")
    names, sizes = zip(*mixer.in_split)
    return dict(zip(names, torch.split(proj, list(sizes), dim=-1)))


def forget_gate(mixer: MixerIR, a: Tensor, gate_bias: Tensor | None) -> Tensor:
    """g = gate(a + gate_bias), the gate being the spec's expression (`sigmoid` by default)."""
    gate = to_torch_function(mixer.forget_gate.expr)
    return gate(a if gate_bias is None else a + gate_bias)


def input_weight(mixer: MixerIR, g: Tensor) -> Tensor:
    """The factor on the new input in s_t = g_t s_{t-1} + (.) x_t: 1 - g, or 1."""
    return 1 - g if mixer.input_scale is InputScale.ONE_MINUS_G else torch.ones_like(g)


def gated_scan(x: Tensor, g: Tensor, w: Tensor, chunk: int | None = None) -> Tensor:
    """s_t = g_t * s_{t-1} + w_t * x_t per channel, s_{-1} = 0, restarting from 0 at every
    multiple of `chunk` (None: one scan over the whole sequence).

    Args: x, g, w [B, T, D]. Returns every state s_t, [B, T, D].

    With chunks, all chunks advance together: step l updates token l of every chunk (T padded to
    whole chunks, the padding cut off after), so the loop runs `chunk` times, not T.
    """
    B, T, D = x.shape
    if chunk is None:
        states, s = [], torch.zeros_like(x[:, 0])
        for t in range(T):
            s = g[:, t] * s + w[:, t] * x[:, t]
            states.append(s)
        return torch.stack(states, dim=1)
    n = -(-T // chunk)
    x, g, w = (torch.nn.functional.pad(u, (0, 0, 0, n * chunk - T)).view(B, n, chunk, D)
               for u in (x, g, w))
    states, s = [], torch.zeros_like(x[:, :, 0])
    for l in range(chunk):
        s = g[:, :, l] * s + w[:, :, l] * x[:, :, l]
        states.append(s)
    return torch.stack(states, dim=2).view(B, n * chunk, D)[:, :T]


def tile_groups(x: Tensor, times: int) -> Tensor:
    """[..., G*d] -> [..., H*d]: channel j of the result is channel j mod G*d of x, so head h
    reads group h mod G (the released code's `repeat`, not the usual h // (H/G) grouping)."""
    return torch.cat([x] * times, dim=-1)


def heads(x: Tensor, n_heads: int) -> Tensor:
    """[B, T, H*d] -> [B, T, H, d]."""
    return x.unflatten(-1, (n_heads, x.shape[-1] // n_heads))


def rope(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotate x [B, T, H, d] by RoPE at positions [T] (rotate-half convention).

    Channel pair (i, i + d/2) turns by angle position * base^(-2i/d), i < d/2. Angles are computed
    in float64 and then cast, so forward and decode use bit-identical factors.
    """
    d = x.shape[-1]
    inv_freq = torch.tensor(float(base), dtype=torch.float64, device=positions.device) ** (
        -torch.arange(0, d, 2, dtype=torch.float64, device=positions.device) / d)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [T, d/2]
    angles = torch.cat([angles, angles], dim=-1)[None, :, None, :]  # [1, T, 1, d]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


# -------------------------------------------------------------------------------------------------
# RAT


def rat_positions(mixer: MixerIR, t: Tensor) -> Tensor:
    """The position RoPE uses for token indices t: the chunk index t // L."""
    return torch.div(t, mixer.chunk, rounding_mode="floor")


def rat_rotate(mixer: MixerIR, x: Tensor, t: Tensor) -> Tensor:
    """Chunk RoPE on x [B, T, H, d] for token indices t [T]; identity for position nope."""
    if mixer.position is Position.CHUNK_ROPE:
        return rope(x, rat_positions(mixer, t), mixer.rope_base)
    return x


def rat_states(mixer: MixerIR, proj: Tensor, gate_bias: Tensor | None) -> dict[str, Tensor]:
    """The in-chunk scans of a RAT layer, before positions are applied.

    Returns z [B, T, D] (None without an output gate), q [B, T, D] (groups tiled to D), and the
    running states k~ and v~ [B, T, D].
    """
    p = split_proj(mixer, proj)
    times = mixer.heads // mixer.groups
    g = forget_gate(mixer, p["a"], gate_bias)
    w = input_weight(mixer, g)
    return {
        "z": p.get("z"),
        "q": tile_groups(p["q"], times),
        "k": gated_scan(tile_groups(p["k"], times), g, w, chunk=mixer.chunk),
        "v": gated_scan(p["x"], g, w, chunk=mixer.chunk),
    }


def rat_core(mixer: MixerIR, proj: Tensor, gate_bias: Tensor | None) -> Tensor:
    """RAT between in_proj and out_proj: [B, T, in_features] -> [B, T, D]. Any T >= 1."""
    B, T, _ = proj.shape
    H, d, L = mixer.heads, mixer.head_dim, mixer.chunk
    s = rat_states(mixer, proj, gate_bias)
    t = torch.arange(T, device=proj.device)
    q = rat_rotate(mixer, heads(s["q"], H), t)  # [B, T, H, d]
    k = rat_rotate(mixer, heads(s["k"], H), t)  # k~_t rotated at its own chunk
    v = heads(s["v"], H)
    # chunk-final states of the complete chunks: tokens L-1, 2L-1, ...; T // L of them
    K, V = k[:, L - 1::L], v[:, L - 1::L]  # [B, C, H, d]
    scale = d ** -0.5
    inter = torch.einsum("bthd,bchd->bhtc", q, K) * scale  # [B, H, T, C]
    earlier = torch.arange(K.shape[1], device=proj.device)[None, :] < (t // L)[:, None]  # [T, C]
    inter = inter.masked_fill(~earlier, float("-inf"))
    self_score = torch.einsum("bthd,bthd->bht", q, k)[..., None] * scale  # [B, H, T, 1]
    p = torch.softmax(torch.cat([inter, self_score], dim=-1), dim=-1)
    y = torch.einsum("bhtc,bchd->bthd", p[..., :-1], V) + p[..., -1].transpose(1, 2)[..., None] * v
    y = y.flatten(-2)
    return torch.sigmoid(s["z"]) * y if mixer.output_gate else y


# -------------------------------------------------------------------------------------------------
# sliding-window and full attention


def attention_rotate(mixer: MixerIR, x: Tensor, t: Tensor) -> Tensor:
    """Token RoPE on x [B, T, H, d] at token indices t [T]; identity for position nope."""
    return rope(x, t, mixer.rope_base) if mixer.position is Position.ROPE else x


def attention_core(mixer: MixerIR, proj: Tensor) -> Tensor:
    """Causal softmax attention, token t seeing t-W .. t (all of 0 .. t without a window).

    [B, T, in_features] -> [B, T, D], scale d^-1/2, no output gate.
    """
    T, H = proj.shape[1], mixer.heads
    p = split_proj(mixer, proj)
    t = torch.arange(T, device=proj.device)
    q = attention_rotate(mixer, heads(p["q"], H), t)
    k = attention_rotate(mixer, heads(p["k"], H), t)
    v = heads(p["x"], H)
    scores = torch.einsum("bthd,bshd->bhts", q, k) * mixer.head_dim ** -0.5
    lag = t[:, None] - t[None, :]  # query t, key s: t - s
    visible = lag >= 0
    if mixer.kind is LayerKind.SLIDING_WINDOW:
        visible &= lag <= mixer.window
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
    return torch.einsum("bhts,bshd->bthd", probs, v).flatten(-2)


# -------------------------------------------------------------------------------------------------
# gated RNN


def rnn_core(mixer: MixerIR, proj: Tensor, gate_bias: Tensor | None) -> Tensor:
    """The gated RNN between in_proj and out_proj: y_t = v~_t over the whole sequence."""
    p = split_proj(mixer, proj)
    g = forget_gate(mixer, p["a"], gate_bias)
    y = gated_scan(p["x"], g, input_weight(mixer, g))
    return torch.sigmoid(p["z"]) * y if mixer.output_gate else y


# -------------------------------------------------------------------------------------------------
# dispatch


def mixer_core(mixer: MixerIR, proj: Tensor, gate_bias: Tensor | None) -> Tensor:
    """Everything between a mixer's in_proj and its out_proj.

    Args:
        mixer: the layer's IR.
        proj: in_proj's output [B, T, mixer.in_features], parts in `mixer.in_split` order.
        gate_bias: [D] for RAT and the RNN (None counts as zero); ignored by attention.
    Returns:
        [B, T, D], the tensor out_proj is applied to (sigmoid(z) * y where there is an output gate).
    """
    if mixer.kind is LayerKind.RAT:
        return rat_core(mixer, proj, gate_bias)
    if mixer.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        return attention_core(mixer, proj)
    if mixer.kind is LayerKind.RNN:
        return rnn_core(mixer, proj, gate_bias)
    raise ValueError(f"unknown layer kind {mixer.kind}")
