"""Cost model: parameters, FLOPs, bytes moved and decode-cache bytes as sympy expressions.

Symbols: `B` batch, `T` sequence length. Conventions (the same as ../shared/ANCHORS.md's floor):
  - FLOPs count matrix products only (2 per multiply-add): the projections, the attention score
    and value products, the LM head. Elementwise work (norms, gates, scans, softmax) is not counted.
  - training FLOPs = forward + backward, backward = 2x forward for projections and 2.5x for
    attention products (the flash-attention backward recomputes the scores).
  - bytes moved (forward) is the HBM traffic of a plan that keeps projections on cuBLAS and fuses
    everything between them: weights read once; per token the block input read (D) and output
    written (D), in_proj's output written and read back (2F), the mixer output written and read
    back (2D); RAT adds its materialised running states (k~, v~: written and read, 4D per token);
    sliding-window and full attention re-read no keys (they are assumed cache resident).
  - decode-cache bytes are per sequence of length T (the capacity of the cache).
`dtype_bytes` (2 for bf16) converts element counts to bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import sympy

from .ir import LayerKind, MixerIR, ModelIR, FFNIR

B = sympy.Symbol("B", positive=True, integer=True)
T = sympy.Symbol("T", positive=True, integer=True)


@dataclass(frozen=True)
class Cost:
    """Costs of one layer (or a sum of layers). All fields are sympy expressions in B and T."""

    name: str
    params: sympy.Expr
    fwd_flops: sympy.Expr
    train_flops: sympy.Expr
    bytes_moved: sympy.Expr
    cache_bytes: sympy.Expr
    attn_flops: sympy.Expr = sympy.Integer(0)  # the part of fwd_flops in attention products

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.name, *(getattr(self, f.name) + getattr(other, f.name)
                                 for f in fields(self) if f.name != "name"))

    def scaled(self, n: int, name: str) -> "Cost":
        return Cost(name, *(getattr(self, f.name) * n for f in fields(self) if f.name != "name"))

    def evaluate(self, batch: int, seq: int) -> dict[str, int]:
        """Every field as an exact integer at B = batch, T = seq."""
        out = {}
        for f in fields(self):
            if f.name != "name":
                v = sympy.nsimplify(getattr(self, f.name).subs({B: batch, T: seq}))
                out[f.name] = int(v) if v == int(v) else float(v)
        return out


def attention_keys(m: MixerIR) -> sympy.Expr:
    """Total number of (query, key) pairs scored in one sequence of length T."""
    if m.kind is LayerKind.RAT:
        # query t scores the final states of chunks 0 .. t//L - 1 plus its own running state
        L = m.chunk
        n = sympy.floor(T / L)
        return T + L * n * (n - 1) / 2 + (T - n * L) * n
    if m.kind is LayerKind.SLIDING_WINDOW:
        W = m.window  # query t scores min(t, W) + 1 keys
        return sympy.Piecewise((T * (T + 1) / 2, T <= W + 1),
                               ((W + 1) * (W + 2) // 2 + (T - W - 1) * (W + 1), True))
    if m.kind is LayerKind.ATTENTION:
        return T * (T + 1) / 2
    return sympy.Integer(0)


def cache_elements(m: MixerIR) -> sympy.Expr:
    """Decode-cache elements per sequence of capacity T."""
    D = m.d_model
    if m.kind is LayerKind.RAT:
        return 2 * D * (sympy.floor(T / m.chunk) + 1)  # chunk-final K~, V~ plus running k~, v~
    if m.kind is LayerKind.SLIDING_WINDOW:
        return 2 * D * sympy.Min(T, m.window + 1)  # ring buffer of k, v
    if m.kind is LayerKind.ATTENTION:
        return 2 * D * T
    return sympy.Integer(D)  # RNN state


def mixer_cost(m: MixerIR, dtype_bytes: int = 2) -> Cost:
    D, F = m.d_model, m.in_features
    params = sympy.Integer(F * D + D * D + D + (D if m.has_gate_bias else 0))
    proj = 2 * B * T * D * (F + D)
    attn = 4 * B * m.heads * m.head_dim * attention_keys(m)
    per_token = 2 * D + 2 * F + 2 * D + (4 * D if m.kind is LayerKind.RAT else 0)
    return Cost(
        name=m.name,
        params=params,
        fwd_flops=proj + attn,
        train_flops=3 * proj + sympy.Rational(7, 2) * attn,
        bytes_moved=dtype_bytes * (params + B * T * per_token),
        cache_bytes=dtype_bytes * cache_elements(m),
        attn_flops=attn,
    )


def ffn_cost(f: FFNIR, dtype_bytes: int = 2) -> Cost:
    D, Hf = f.d_model, f.hidden
    params = sympy.Integer(2 * D * Hf + D)
    flops = 2 * B * T * 2 * D * Hf
    return Cost(
        name="ffn",
        params=params,
        fwd_flops=flops,
        train_flops=3 * flops,
        bytes_moved=dtype_bytes * (params + B * T * (2 * D + 2 * Hf)),
        cache_bytes=sympy.Integer(0),
    )


@dataclass(frozen=True)
class ModelCost:
    blocks: tuple[tuple[Cost, Cost], ...]  # (mixer, ffn) per block, in order
    embedding: Cost  # token embedding, final norm and LM head
    total: Cost


def model_cost(ir: ModelIR, dtype_bytes: int = 2) -> ModelCost:
    D, V = ir.d_model, ir.vocab_size
    head_params = 0 if ir.tie_embeddings else V * D
    emb_params = sympy.Integer(V * D + head_params + D)
    head_flops = 2 * B * T * D * V
    embedding = Cost(
        name="embedding+head",
        params=emb_params,
        fwd_flops=head_flops,
        train_flops=3 * head_flops,
        bytes_moved=dtype_bytes * (emb_params + B * T * (D + V)),
        cache_bytes=sympy.Integer(0),
    )
    f = ffn_cost(ir.ffn, dtype_bytes)
    blocks = tuple((mixer_cost(m, dtype_bytes), f) for m in ir.block_mixers)
    total = embedding
    for mc, fc in blocks:
        total = total + mc + fc
    return ModelCost(blocks=blocks, embedding=embedding, total=Cost("total", *(
        getattr(total, fl.name) for fl in fields(total) if fl.name != "name")))
