"""Lower a validated `Spec` to the `ModelIR`: resolve defaults, parse gates, fix every size."""

from __future__ import annotations

from .gates import parse_gate
from .ir import FFNIR, Activation, InputScale, LayerKind, MixerIR, ModelIR, Position
from .spec import Spec


def lower_mixer(name: str, d: dict, model: dict) -> MixerIR:
    kind = LayerKind(d["kind"])
    common = dict(name=name, kind=kind, d_model=model["d_model"], max_seq_len=model["max_seq_len"],
                  norm_eps=model["norm_eps"])
    if kind is LayerKind.RNN:
        return MixerIR(**common, heads=1, head_dim=model["d_model"], **_gating(d))
    common |= dict(heads=d["heads"], head_dim=d["head_dim"], position=Position(d["position"]),
                   rope_base=d["rope_base"])
    if kind is LayerKind.RAT:
        chunks = tuple(d["chunk"])
        return MixerIR(**common, groups=d["groups"], chunk=chunks[0], chunk_candidates=chunks,
                       **_gating(d))
    if kind is LayerKind.SLIDING_WINDOW:
        return MixerIR(**common, window=d["window"])
    return MixerIR(**common)


def _gating(d: dict) -> dict:
    return dict(forget_gate=parse_gate(d["forget_gate"]), input_scale=InputScale(d["input_scale"]),
                output_gate=d["output_gate"] == "sigmoid")


def lower(spec: Spec, chunks: dict[str, int] | None = None) -> ModelIR:
    """Spec -> ModelIR. `chunks` overrides the chunk length of named RAT layers (tuned values);
    each must be one of that layer's candidates."""
    m = spec.data["model"]
    mixers = []
    for name, d in spec.data["layers"].items():
        mixer = lower_mixer(name, d, m)
        if chunks and name in chunks:
            if chunks[name] not in mixer.chunk_candidates:
                raise ValueError(f"layers.{name}: chunk {chunks[name]} is not among the spec's "
                                 f"candidates {list(mixer.chunk_candidates)}")
            mixer = _replace(mixer, chunk=chunks[name])
        mixers.append(mixer)
    ffn = FFNIR(d_model=m["d_model"], hidden=m["ffn"]["hidden"],
                activation=Activation(m["ffn"]["activation"]), norm_eps=m["norm_eps"])
    return ModelIR(name=spec.name, d_model=m["d_model"], vocab_size=m["vocab_size"],
                   max_seq_len=m["max_seq_len"], tie_embeddings=m["tie_embeddings"],
                   norm_eps=m["norm_eps"], ffn=ffn, mixers=tuple(mixers),
                   layers=tuple(spec.data["layer_names"]), source_sha256=spec.sha256)


def _replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
