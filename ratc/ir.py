"""The resolved model: frozen dataclasses with every size known.

`lower(spec)` turns a validated `ratc.spec.Spec` into a `ModelIR`. Passes downstream (cost model,
reference modules, code generation) read only the IR, never the YAML.

Notation used across ratc:
  B batch, T sequence length (sympy symbols in the cost model), D model width,
  H heads, d head width (D = H*d), G key/query groups (RAT), L chunk length, W window.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field

import sympy

# -------------------------------------------------------------------------------------------------
# kinds and options


class LayerKind(enum.Enum):
    RAT = "rat"
    SLIDING_WINDOW = "sliding_window"
    ATTENTION = "attention"
    RNN = "rnn"


class Position(enum.Enum):
    CHUNK_ROPE = "chunk_rope"  # RAT: rotate q_t and k~_t by the chunk index t // L
    ROPE = "rope"  # attention: rotate q_t and k_t by the token index t
    NOPE = "nope"  # no positions


class InputScale(enum.Enum):
    ONE_MINUS_G = "1 - g"  # the paper's: s_t = g s_{t-1} + (1 - g) x_t
    ONE = "1"  # s_t = g s_{t-1} + x_t


class Activation(enum.Enum):
    GELU = "gelu"  # exact (erf) GELU, as torch.nn.functional.gelu
    GELU_TANH = "gelu_tanh"
    RELU = "relu"
    SILU = "silu"


# -------------------------------------------------------------------------------------------------
# gates

A = sympy.Symbol("a", real=True)  # the forget gate's pre-activation, gate bias included


@dataclass(frozen=True, slots=True)
class Gate:
    """A forget gate g = f(a), a = (u W_a^T) + gate_bias, evaluated in fp32.

    `source` is the spec's text (`sigmoid` or an expression); `expr` the sympy expression in `A`.
    """

    source: str
    expr: sympy.Expr

    @property
    def derivative(self) -> sympy.Expr:
        # not simplified: simplify may rewrite sigmoid as cosh or abs as Piecewise, which the
        # printers do not take; diff keeps the whitelisted functions the value check evaluated
        return sympy.diff(self.expr, A)

    @property
    def is_sigmoid(self) -> bool:
        return self.expr.func.__name__ == "sigmoid" and self.expr.args == (A,)


# -------------------------------------------------------------------------------------------------
# layers


@dataclass(frozen=True, slots=True)
class MixerIR:
    """One sequence-mixing layer definition, resolved.

    Fields that do not apply to a kind hold None (window for RAT, chunk for attention, ...).
    `in_split` lists the chunks of in_proj's output in order, e.g. RAT
    (("z", D), ("x", D), ("a", D), ("q", G*d), ("k", G*d)).
    """

    name: str
    kind: LayerKind
    d_model: int
    heads: int
    head_dim: int
    groups: int | None = None  # RAT: number of distinct q/k vectors; head h uses group h % G
    chunk: int | None = None  # RAT: chunk length L in use
    chunk_candidates: tuple[int, ...] = ()  # RAT: what the tuner may pick L from (L first)
    window: int | None = None  # sliding window: key t-W ... t seen by query t
    forget_gate: Gate | None = None  # RAT, RNN
    input_scale: InputScale | None = None  # RAT, RNN
    output_gate: bool = False  # RAT, RNN: out = W_out(sigmoid(z) * y)
    position: Position = Position.NOPE
    rope_base: float = 10000.0
    max_seq_len: int = 4096  # RNN gate-bias init; capacity bound for chunk and window
    norm_eps: float = 1e-6

    @property
    def in_split(self) -> tuple[tuple[str, int], ...]:
        D = self.d_model
        if self.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
            return (("x", D), ("q", D), ("k", D))
        parts = ((("z", D),) if self.output_gate else ()) + (("x", D), ("a", D))
        if self.kind is LayerKind.RAT:
            parts += (("q", self.groups * self.head_dim), ("k", self.groups * self.head_dim))
        return parts

    @property
    def in_features(self) -> int:
        return sum(n for _, n in self.in_split)

    @property
    def has_gate_bias(self) -> bool:
        return self.kind in (LayerKind.RAT, LayerKind.RNN)


@dataclass(frozen=True, slots=True)
class FFNIR:
    d_model: int
    hidden: int
    activation: Activation
    norm_eps: float = 1e-6


@dataclass(frozen=True, slots=True)
class ModelIR:
    """The whole LM: embedding, N blocks (mixer then FFN), final RMSNorm, LM head.

    `mixers` holds each named layer definition once; `layers` names the definition used by each
    of the n_layers blocks, in order.
    """

    name: str
    d_model: int
    vocab_size: int
    max_seq_len: int
    tie_embeddings: bool
    norm_eps: float
    ffn: FFNIR
    mixers: tuple[MixerIR, ...]
    layers: tuple[str, ...]
    source_sha256: str = field(default="", compare=False)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def mixer(self, name: str) -> MixerIR:
        for m in self.mixers:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def block_mixers(self) -> tuple[MixerIR, ...]:
        """The mixer definition of every block, in order."""
        return tuple(self.mixer(n) for n in self.layers)


# -------------------------------------------------------------------------------------------------
# serialisation (for --dump, --json and the generated package's SPEC)


def to_jsonable(obj):
    """Plain JSON data for any IR object: enums by value, gates by source and simplified form."""
    if isinstance(obj, Gate):
        return {"source": obj.source, "expr": str(obj.expr)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (ModelIR, MixerIR, FFNIR)):
        out = {f: to_jsonable(getattr(obj, f)) for f in obj.__dataclass_fields__}
        if isinstance(obj, MixerIR):
            out["in_split"] = [list(p) for p in obj.in_split]
        return out
    if isinstance(obj, (tuple, list)):
        return [to_jsonable(x) for x in obj]
    return obj


def ir_hash(model: ModelIR) -> str:
    """A stable hash of the resolved model (not of the YAML's formatting)."""
    text = json.dumps(to_jsonable(model) | {"source_sha256": ""}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "A", "Activation", "FFNIR", "Gate", "InputScale", "LayerKind", "MixerIR", "ModelIR",
    "Position", "ir_hash", "to_jsonable", "asdict",
]
