"""Emit the generated package's files from the IR: {relative path: text}.

Files (DESIGN.md §2 "The generated package"):
  __init__.py        Model, MIXERS, SPEC
  __main__.py        smoke run
  spec.py            SPEC, the resolved model as plain data
  layers.py          one nn.Module per layer definition (h + mixer(h), prefill, step), MIXERS
  model.py           FFN, blocks, Model (forward, prefill, step, generate)
  cache.py           LayerCache, ModelCache: decode caches with per-row positions
  generate.py        sampling and the CUDA-graph step runner
  kernels/<kind>_<name>.py          rendered forward kernel template of each layer definition
  kernels/decode_<kind>_<name>.py   rendered decode template (cache, prefill fill, fused step)
  kernels/rms_norm.py               rendered RMSNorm template (fused forward and backward), the
                                    same in every package
  manifest.json      spec hash, ratc version, baked-in configs, file hashes (written by build)
"""

from __future__ import annotations

import ast
import pprint

from .. import __version__
from ..ir import Activation, LayerKind, MixerIR, ModelIR, to_jsonable
from .render import _env, kernel_context, load_module, render_kernel, render_rms_norm

DECODE_TEMPLATE_OF = {
    LayerKind.RAT: "decode/rat.py.jinja",
    LayerKind.RNN: "decode/rnn.py.jinja",
    LayerKind.SLIDING_WINDOW: "decode/attention.py.jinja",
    LayerKind.ATTENTION: "decode/attention.py.jinja",
}
PACKAGE_FILES = ("__init__.py", "__main__.py", "cache.py", "generate.py", "layers.py", "model.py")

ACTIVATION_CODE = {
    Activation.GELU: "torch.nn.functional.gelu",
    Activation.GELU_TANH: "(lambda x: torch.nn.functional.gelu(x, approximate='tanh'))",
    Activation.RELU: "torch.relu",
    Activation.SILU: "torch.nn.functional.silu",
}


def kernel_module_name(m: MixerIR) -> str:
    return f"{m.kind.value}_{m.name}"


def render_decode(m: MixerIR, config: dict | None = None, tuned: dict | None = None) -> str:
    """The decode module of mixer `m`: init_cache, prefill_cache, step (one fused Triton kernel
    per token, and its PyTorch path); `tuned` its decode records (device -> "decode" -> bucket ->
    config). Raises SyntaxError if it does not parse."""
    text = _env.get_template(DECODE_TEMPLATE_OF[m.kind]).render(**kernel_context(m, config, tuned))
    ast.parse(text, filename=f"<{m.name} decode>")
    return text


def modes_of(table: dict, modes: tuple[str, ...]) -> dict:
    """device -> mode -> bucket -> config, only `modes` (devices left with none dropped)."""
    out = {dev: {k: v for k, v in by_mode.items() if k in modes} for dev, by_mode in table.items()}
    return {dev: by_mode for dev, by_mode in out.items() if by_mode}


def load_decode(m: MixerIR, config: dict | None = None):
    """Render and import the decode module of mixer `m` (tests use this)."""
    return load_module(render_decode(m, config), f"decode_{kernel_module_name(m)}")


def class_names(ir: ModelIR) -> dict[str, str]:
    """Layer name -> Python class name (CamelCase + 'Mixer', made unique)."""
    out, used = {}, set()
    for m in ir.mixers:
        base = "".join(p[:1].upper() + p[1:] for p in m.name.split("_") if p) or "Layer"
        name, i = f"{base}Mixer", 2
        while name in used:
            name, i = f"{base}{i}Mixer", i + 1
        used.add(name)
        out[m.name] = name
    return out


def _summary(m: MixerIR) -> str:
    if m.kind is LayerKind.RAT:
        s = f"RAT, {m.heads} heads x {m.head_dim}, G={m.groups}, chunk L={m.chunk}"
    elif m.kind is LayerKind.SLIDING_WINDOW:
        s = f"sliding-window attention, {m.heads} heads x {m.head_dim}, window W={m.window}"
    elif m.kind is LayerKind.ATTENTION:
        s = f"causal attention, {m.heads} heads x {m.head_dim}"
    else:
        s = f"gated RNN, width {m.d_model}"
    if m.forget_gate:
        s += f", forget gate {m.forget_gate.source}, input scale {m.input_scale.value}"
        s += ", output gate sigmoid" if m.output_gate else ", no output gate"
    if m.kind is not LayerKind.RNN:
        s += f", position {m.position.value}"
    return s


def _mixer_context(m: MixerIR, cls: str) -> dict:
    bias_hi = {LayerKind.RAT: max((m.chunk or 2) - 1, 1), LayerKind.RNN: max(m.max_seq_len - 1, 1)}
    return dict(
        name=m.name, cls=cls, kind=m.kind.value, module=kernel_module_name(m), D=m.d_model,
        eps=repr(m.norm_eps), in_features=m.in_features, has_gate_bias=m.has_gate_bias,
        bias_hi=bias_hi.get(m.kind, 1), summary=_summary(m),
    )


def emit(ir: ModelIR, tuned: dict[str, dict] | None = None) -> dict[str, str]:
    """Every file of the package except manifest.json. `tuned`: layer name -> device name -> mode
    -> shape bucket -> launch config; prefill and train records are baked into that layer's kernel
    module, decode records into its decode module (see build.tuned_for)."""
    tuned = tuned or {}
    classes = class_names(ir)
    ctx = dict(
        version=__version__, spec_name=ir.name, spec_sha256=ir.source_sha256,
        first_layer=ir.layers[0], n_layers=ir.n_layers, layers=repr(list(ir.layers)),
        D=ir.d_model, eps=repr(ir.norm_eps), hidden=ir.ffn.hidden, vocab=ir.vocab_size,
        activation=ir.ffn.activation.value, activation_code=ACTIVATION_CODE[ir.ffn.activation],
        tied=ir.tie_embeddings, mixers=[_mixer_context(m, classes[m.name]) for m in ir.mixers],
    )
    files = {
        name: _env.get_template(f"package/{name}.jinja").render(**ctx)
        for name in PACKAGE_FILES
    }
    spec = to_jsonable(ir)
    spec["source_sha256"] = ir.source_sha256
    files["spec.py"] = (
        f"# Generated by ratc {__version__} from {ir.name} — do not edit; rebuild with `ratc build`.\n"
        '"""SPEC: the resolved model this package was built from (ratc IR as plain data)."""\n\n'
        f"SPEC = {pprint.pformat(spec, width=100, sort_dicts=True)}\n"
    )
    files["kernels/__init__.py"] = ('"""Rendered kernel modules: <kind>_<name> (forward) and '
                                    'decode_<kind>_<name> (decode) of each\nlayer definition; '
                                    'rms_norm, the fused RMSNorm of every norm."""\n')
    files["kernels/rms_norm.py"] = render_rms_norm()
    for m in ir.mixers:
        table = tuned.get(m.name, {})
        files[f"kernels/{kernel_module_name(m)}.py"] = render_kernel(
            m, tuned=modes_of(table, ("prefill", "train")))
        files[f"kernels/decode_{kernel_module_name(m)}.py"] = render_decode(
            m, tuned=modes_of(table, ("decode",)))
    for path, text in files.items():
        ast.parse(text, filename=path)  # every rendered file must be valid Python
    return dict(sorted(files.items()))
