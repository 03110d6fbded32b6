"""Reference nn.Modules with the paper's parameter names, and their decode caches.

Every mixer is a pre-norm residual block, `forward(h) = h + out_proj(mixer_core(in_proj(
input_norm(h))))`, with parameters `input_norm.weight`, `in_proj.weight` [in_features, D],
`gate_bias` [D] (RAT and RNN only) and `out_proj.weight` [D, D]; a checkpoint of the paper's
released code loads with a plain `load_state_dict`.

Decoding: `prefill(h [B, T, D], capacity)` returns the same output as `forward` and a cache sized
for `capacity` tokens; `step(h [B, D], cache)` computes one more token from the cache alone and
advances it in place. The step is written as a recurrence, independently of the parallel forward,
so that comparing the two tests both.

    >>> lm = LM(lower(load_spec("specs/tiny_rat.yaml")), dtype=torch.float64)
    >>> logits, cache = lm.prefill(ids[:, :10], capacity=16)
    >>> next_logits = lm.step(ids[:, 10], cache)  # == lm(ids[:, :11])[:, 10]
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ir import FFNIR, Activation, LayerKind, MixerIR, ModelIR
from .functional import (
    attention_rotate, forget_gate, heads, input_weight, mixer_core, rat_rotate, rat_states,
    rms_norm, split_proj, tile_groups,
)

DECODE_ROOM = 64  # tokens of room `prefill` leaves after the prompt when no capacity is given
INIT_STD = 0.02  # normal(0, 0.02) for every linear and embedding weight

# -------------------------------------------------------------------------------------------------
# decode caches (one sequence's worth per batch row; `position` = tokens seen so far)


class _Cache:
    capacity: int
    position: int

    def tensors(self) -> list[Tensor]:
        values = (getattr(self, f.name) for f in fields(self))
        return [v for v in values if isinstance(v, Tensor)]

    def nbytes(self) -> int:
        """Bytes held in tensors (the position counter is not counted)."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def check_room(self, n: int = 1) -> None:
        if self.position + n > self.capacity:
            raise ValueError(f"decode cache is full: it holds {self.capacity} tokens and "
                             f"{self.position} are in it, so {n} more do not fit; prefill with a "
                             f"larger capacity")


@dataclass(eq=False)
class RATCache(_Cache):
    """RAT: chunk-final states of complete chunks, plus the running in-chunk state.

    chunk_keys, chunk_values [B, capacity // L, D]: K~_c (chunk RoPE at c applied) and V~_c, row c
    written when chunk c completes. key_state, value_state [B, D]: k~, v~ after the last token
    (no positions applied); the next token restarts them if it opens a chunk.
    """

    chunk_keys: Tensor
    chunk_values: Tensor
    key_state: Tensor
    value_state: Tensor
    capacity: int
    position: int = 0


@dataclass(eq=False)
class KVCache(_Cache):
    """Attention and sliding window: keys (RoPE applied) and values [B, slots, D] of the latest
    tokens, token t in slot t % slots. slots = capacity, or min(capacity, W + 1) with a window, so
    the sliding window's buffer is a ring whose overwritten token has just left the window."""

    keys: Tensor
    values: Tensor
    capacity: int
    position: int = 0


@dataclass(eq=False)
class RNNCache(_Cache):
    """Gated RNN: the state v~ [B, D] after the last token. The state does not grow, but the
    capacity is kept and checked so every layer of an LM honours the same contract."""

    state: Tensor
    capacity: int
    position: int = 0


@dataclass(eq=False)
class LMCache:
    """One cache per block, in order."""

    layers: list

    @property
    def position(self) -> int:
        return self.layers[0].position

    @property
    def capacity(self) -> int:
        return self.layers[0].capacity

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in self.layers)


# -------------------------------------------------------------------------------------------------
# mixers


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


class Mixer(nn.Module):
    """What every mixer shares: parameters, forward, and the prefill/step contract."""

    kind: LayerKind  # set by each subclass

    def __init__(self, mixer: MixerIR, device=None, dtype=None):
        super().__init__()
        if mixer.kind is not self.kind:
            raise ValueError(f"{type(self).__name__} builds {self.kind.value} layers, "
                             f"got '{mixer.name}' of kind {mixer.kind.value}")
        self.mixer = mixer
        D, kw = mixer.d_model, dict(device=device, dtype=dtype)
        self.in_proj = nn.Linear(D, mixer.in_features, bias=False, **kw)
        if mixer.has_gate_bias:
            self.gate_bias = nn.Parameter(torch.empty(D, **kw))
        else:
            self.register_parameter("gate_bias", None)
        self.input_norm = RMSNorm(D, mixer.norm_eps, **kw)
        self.out_proj = nn.Linear(D, D, bias=False, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.in_proj.weight, 0.0, INIT_STD)
        nn.init.normal_(self.out_proj.weight, 0.0, INIT_STD)
        nn.init.ones_(self.input_norm.weight)
        if self.gate_bias is not None:
            hi = self.gate_bias_high()
            with torch.no_grad():  # log(U(1, hi)); hi <= 1 leaves log(1) = 0
                self.gate_bias.uniform_(1.0, hi).log_() if hi > 1 else self.gate_bias.zero_()

    def gate_bias_high(self) -> float:
        raise NotImplementedError

    def forward(self, h: Tensor) -> Tensor:
        """[B, T, D] -> [B, T, D]: h + out_proj(mixer_core(in_proj(input_norm(h))))."""
        proj = self.in_proj(self.input_norm(h))
        return h + self.out_proj(mixer_core(self.mixer, proj, self.gate_bias))

    def init_cache(self, batch: int, capacity: int) -> _Cache:
        """An empty cache for sequences of up to `capacity` tokens."""
        raise NotImplementedError

    def prefill(self, h: Tensor, capacity: int | None = None, room: int = DECODE_ROOM):
        """Run the prompt h [B, T, D]; return (forward(h), cache for `capacity` tokens).

        capacity defaults to T + room. Raises ValueError if the prompt does not fit.
        """
        B, T, _ = h.shape
        capacity = T + room if capacity is None else capacity
        cache = self.init_cache(B, capacity)
        cache.check_room(T)
        if T == 0:
            return h, cache
        self.fill_cache(cache, self.in_proj(self.input_norm(h)))
        cache.position = T
        return self(h), cache

    def fill_cache(self, cache: _Cache, proj: Tensor) -> None:
        raise NotImplementedError

    def step(self, h: Tensor, cache: _Cache) -> Tensor:
        """One token h [B, D] at position cache.position -> [B, D]; advances the cache."""
        cache.check_room(1)
        p = split_proj(self.mixer, self.in_proj(self.input_norm(h)))
        y = self.step_core(p, cache)
        cache.position += 1
        return h + self.out_proj(y)

    def step_core(self, p: dict[str, Tensor], cache: _Cache) -> Tensor:
        raise NotImplementedError

    def _empty(self, *shape: int) -> Tensor:
        w = self.in_proj.weight
        return torch.zeros(*shape, device=w.device, dtype=w.dtype)


class RAT(Mixer):
    """RAT layer: gated recurrence inside chunks of L tokens, softmax attention across chunks."""

    kind = LayerKind.RAT

    def gate_bias_high(self) -> float:
        return self.mixer.chunk - 1

    def init_cache(self, batch: int, capacity: int) -> RATCache:
        D, rows = self.mixer.d_model, capacity // self.mixer.chunk
        return RATCache(self._empty(batch, rows, D), self._empty(batch, rows, D),
                        self._empty(batch, D), self._empty(batch, D), capacity)

    def fill_cache(self, cache: RATCache, proj: Tensor) -> None:
        m, T = self.mixer, proj.shape[1]
        s = rat_states(m, proj, self.gate_bias)
        k = rat_rotate(m, heads(s["k"], m.heads), torch.arange(T, device=proj.device)).flatten(-2)
        n = T // m.chunk  # complete chunks
        cache.chunk_keys[:, :n] = k[:, m.chunk - 1::m.chunk]
        cache.chunk_values[:, :n] = s["v"][:, m.chunk - 1::m.chunk]
        cache.key_state[:] = s["k"][:, -1]
        cache.value_state[:] = s["v"][:, -1]

    def step_core(self, p: dict[str, Tensor], cache: RATCache) -> Tensor:
        m = self.mixer
        H, L, t = m.heads, m.chunk, cache.position
        c, opens_chunk, closes_chunk = t // L, t % L == 0, t % L == L - 1
        g = forget_gate(m, p["a"], self.gate_bias)
        w = input_weight(m, g)
        k_prev = 0 if opens_chunk else cache.key_state
        v_prev = 0 if opens_chunk else cache.value_state
        cache.key_state = g * k_prev + w * tile_groups(p["k"], H // m.groups)
        cache.value_state = g * v_prev + w * p["x"]
        pos = torch.tensor([t], device=g.device)
        q = rat_rotate(m, heads(tile_groups(p["q"], H // m.groups)[:, None], H), pos)[:, 0]
        k = rat_rotate(m, heads(cache.key_state[:, None], H), pos)[:, 0]  # [B, H, d]
        v = heads(cache.value_state, H)
        K = heads(cache.chunk_keys[:, :c], H)  # [B, c, H, d]: chunks 0 .. c-1
        V = heads(cache.chunk_values[:, :c], H)
        scores = torch.cat([torch.einsum("bhd,bchd->bhc", q, K),
                            torch.einsum("bhd,bhd->bh", q, k)[..., None]], dim=-1)
        probs = torch.softmax(scores * m.head_dim ** -0.5, dim=-1)  # [B, H, c + 1]
        y = torch.einsum("bhc,bchd->bhd", probs[..., :-1], V) + probs[..., -1:] * v
        if closes_chunk:
            cache.chunk_keys[:, c] = k.flatten(-2)
            cache.chunk_values[:, c] = cache.value_state
        y = y.flatten(-2)
        return torch.sigmoid(p["z"]) * y if m.output_gate else y


class Attention(Mixer):
    """Causal softmax attention with token RoPE; no output gate, no gate bias."""

    kind = LayerKind.ATTENTION

    def slots(self, capacity: int) -> int:
        return capacity

    def init_cache(self, batch: int, capacity: int) -> KVCache:
        n, D = self.slots(capacity), self.mixer.d_model
        return KVCache(self._empty(batch, n, D), self._empty(batch, n, D), capacity)

    def fill_cache(self, cache: KVCache, proj: Tensor) -> None:
        m, T = self.mixer, proj.shape[1]
        p = split_proj(m, proj)
        t = torch.arange(T, device=proj.device)
        k = attention_rotate(m, heads(p["k"], m.heads), t).flatten(-2)
        n = cache.keys.shape[1]
        for s in range(max(0, T - n), T):  # the latest n tokens, token s in slot s % n
            cache.keys[:, s % n] = k[:, s]
            cache.values[:, s % n] = p["x"][:, s]

    def step_core(self, p: dict[str, Tensor], cache: KVCache) -> Tensor:
        m, t, n = self.mixer, cache.position, cache.keys.shape[1]
        pos = torch.tensor([t], device=p["q"].device)
        q = attention_rotate(m, heads(p["q"][:, None], m.heads), pos)[:, 0]  # [B, H, d]
        k = attention_rotate(m, heads(p["k"][:, None], m.heads), pos)[:, 0]
        cache.keys[:, t % n] = k.flatten(-2)
        cache.values[:, t % n] = p["x"]
        seen = min(t + 1, n)  # filled slots; with a window, exactly tokens t-W .. t
        K, V = heads(cache.keys[:, :seen], m.heads), heads(cache.values[:, :seen], m.heads)
        probs = torch.softmax(torch.einsum("bhd,bshd->bhs", q, K) * m.head_dim ** -0.5, dim=-1)
        return torch.einsum("bhs,bshd->bhd", probs, V).flatten(-2)


class SlidingWindowAttention(Attention):
    """Attention where token t sees only tokens t-W .. t; its cache is a ring of W + 1 tokens."""

    kind = LayerKind.SLIDING_WINDOW

    def slots(self, capacity: int) -> int:
        return min(capacity, self.mixer.window + 1)


class GatedRNN(Mixer):
    """The gated linear RNN: one gated scan over the whole sequence, optional output gate."""

    kind = LayerKind.RNN

    def gate_bias_high(self) -> float:
        return self.mixer.max_seq_len - 1

    def init_cache(self, batch: int, capacity: int) -> RNNCache:
        return RNNCache(self._empty(batch, self.mixer.d_model), capacity)

    def fill_cache(self, cache: RNNCache, proj: Tensor) -> None:
        p = split_proj(self.mixer, proj)
        g = forget_gate(self.mixer, p["a"], self.gate_bias)
        w = input_weight(self.mixer, g)
        for t in range(proj.shape[1]):
            cache.state = g[:, t] * cache.state + w[:, t] * p["x"][:, t]

    def step_core(self, p: dict[str, Tensor], cache: RNNCache) -> Tensor:
        g = forget_gate(self.mixer, p["a"], self.gate_bias)
        cache.state = g * cache.state + input_weight(self.mixer, g) * p["x"]
        return torch.sigmoid(p["z"]) * cache.state if self.mixer.output_gate else cache.state


MIXERS = {LayerKind.RAT: RAT, LayerKind.SLIDING_WINDOW: SlidingWindowAttention,
          LayerKind.ATTENTION: Attention, LayerKind.RNN: GatedRNN}


def mixer_module(mixer: MixerIR) -> type[Mixer]:
    """The reference class for a mixer's kind: `mixer_module(m)(m, dtype=torch.float64)`."""
    return MIXERS[mixer.kind]


# -------------------------------------------------------------------------------------------------
# FFN and the LM


ACTIVATIONS = {
    Activation.GELU: F.gelu,
    Activation.GELU_TANH: lambda x: F.gelu(x, approximate="tanh"),
    Activation.RELU: F.relu,
    Activation.SILU: F.silu,
}


class FFN(nn.Module):
    """h + fc2(act(fc1(ln(h)))); works on [..., D]."""

    def __init__(self, ffn: FFNIR, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.ffn = ffn
        self.ln = RMSNorm(ffn.d_model, ffn.norm_eps, **kw)
        self.fc1 = nn.Linear(ffn.d_model, ffn.hidden, bias=False, **kw)
        self.fc2 = nn.Linear(ffn.hidden, ffn.d_model, bias=False, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.ln.weight)
        nn.init.normal_(self.fc1.weight, 0.0, INIT_STD)
        nn.init.normal_(self.fc2.weight, 0.0, INIT_STD)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(ACTIVATIONS[self.ffn.activation](self.fc1(self.ln(h))))


class Block(nn.Module):
    """One block: the mixer (`seq_layer`), then the FFN (`hidden_layer`)."""

    def __init__(self, mixer: MixerIR, ffn: FFNIR, device=None, dtype=None):
        super().__init__()
        self.seq_layer = mixer_module(mixer)(mixer, device=device, dtype=dtype)
        self.hidden_layer = FFN(ffn, device=device, dtype=dtype)

    def forward(self, h: Tensor) -> Tensor:
        return self.hidden_layer(self.seq_layer(h))


class Embedding(nn.Module):
    def __init__(self, model: ModelIR, device=None, dtype=None):
        super().__init__()
        self.wte = nn.Embedding(model.vocab_size, model.d_model, device=device, dtype=dtype)


class Backbone(nn.Module):
    def __init__(self, model: ModelIR, device=None, dtype=None):
        super().__init__()
        self.layers = nn.ModuleList(Block(m, model.ffn, device=device, dtype=dtype)
                                    for m in model.block_mixers)
        self.ln = RMSNorm(model.d_model, model.norm_eps, device=device, dtype=dtype)


class Head(nn.Module):
    def __init__(self, model: ModelIR, device=None, dtype=None):
        super().__init__()
        self.lm_head = nn.Linear(model.d_model, model.vocab_size, bias=False, device=device,
                                 dtype=dtype)


class LM(nn.Module):
    """The whole model: embedding -> blocks -> final RMSNorm -> LM head (tied if the spec says).

    Keys: embedding.wte.weight, backbone.layers.{i}.seq_layer.*, backbone.layers.{i}.hidden_layer.*,
    backbone.ln.weight, head.lm_head.weight (with tied embeddings the last is the embedding's own
    Parameter, listed under both keys as torch does).
    """

    def __init__(self, model: ModelIR, device=None, dtype=None):
        super().__init__()
        self.model = model
        self.embedding = Embedding(model, device=device, dtype=dtype)
        self.backbone = Backbone(model, device=device, dtype=dtype)
        self.head = Head(model, device=device, dtype=dtype)
        if model.tie_embeddings:
            self.head.lm_head.weight = self.embedding.wte.weight
        nn.init.normal_(self.embedding.wte.weight, 0.0, INIT_STD)
        nn.init.normal_(self.head.lm_head.weight, 0.0, INIT_STD)
        nn.init.ones_(self.backbone.ln.weight)

    def logits(self, h: Tensor) -> Tensor:
        return self.head.lm_head(self.backbone.ln(h))

    def forward(self, ids: Tensor) -> Tensor:
        """ids [B, T] -> logits [B, T, V]."""
        h = self.embedding.wte(ids)
        for block in self.backbone.layers:
            h = block(h)
        return self.logits(h)

    def init_cache(self, batch: int, capacity: int) -> LMCache:
        return LMCache([b.seq_layer.init_cache(batch, capacity) for b in self.backbone.layers])

    def prefill(self, ids: Tensor, capacity: int | None = None, room: int = DECODE_ROOM):
        """ids [B, T] -> (logits [B, T, V], cache for `capacity` tokens, default T + room)."""
        capacity = ids.shape[1] + room if capacity is None else capacity
        h, caches = self.embedding.wte(ids), []
        for block in self.backbone.layers:
            h, cache = block.seq_layer.prefill(h, capacity)
            h = block.hidden_layer(h)
            caches.append(cache)
        return self.logits(h), LMCache(caches)

    def step(self, token_ids: Tensor, cache: LMCache) -> Tensor:
        """token_ids [B] at position cache.position -> logits [B, V]; advances the cache."""
        h = self.embedding.wte(token_ids)
        for block, layer_cache in zip(self.backbone.layers, cache.layers):
            h = block.hidden_layer(block.seq_layer.step(h, layer_cache))
        return self.logits(h)

    def n_params(self) -> int:
        """Distinct parameters (a tied head is counted once)."""
        return sum(p.numel() for p in self.parameters())


__all__ = [
    "DECODE_ROOM", "FFN", "LM", "Attention", "GatedRNN", "KVCache", "LMCache", "MIXERS", "Mixer",
    "RAT", "RATCache", "RMSNorm", "RNNCache", "SlidingWindowAttention", "mixer_module",
]
