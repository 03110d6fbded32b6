"""Render kernel templates for one mixer definition.

Each kind has one template in `templates/` (`rat.py.jinja`, `rnn.py.jinja`,
`attention.py.jinja` — the last serves sliding-window and full attention). A rendered template is
a standalone Python module (imports: torch, triton, stdlib) exposing

    core(proj, gate_bias=None) -> y        # dispatches: CUDA tensor or TRITON_INTERPRET=1 -> Triton,
    core_triton(proj, gate_bias=None, config=None)  # otherwise the emitted PyTorch path; both
    core_torch(proj, gate_bias=None)       #   differentiable (Triton: autograd Function)

where proj [B, T, in_features] is in_proj's output (split by `mixer.in_split`) and y [B, T, D] is
what out_proj consumes. The Triton forward and backward launchers are torch custom ops (namespace
`OP_NAMESPACE`, see render_kernel), so torch.compile traces `core` with no graph break. Sizes,
chunk, window, gate expression and position are compile-time constants of the rendered text.
`CONFIG` holds the default launch parameters (block sizes, num_warps, num_stages); `TUNED` (from
autotune records, see build.tuned_for) overrides them per device, mode (prefill, train) and shape
bucket through `_launch_config`.

`render_rms_norm` renders the one spec-independent module, `rms_norm.py.jinja`: the fused RMSNorm
(forward and backward kernels as custom ops) that every norm of the generated model calls.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import pprint
import sys
import tempfile
from pathlib import Path

import jinja2

from ..gates import to_torch_code, to_triton_code
from ..ir import LayerKind, MixerIR

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_OF = {
    LayerKind.RAT: "rat.py.jinja",
    LayerKind.RNN: "rnn.py.jinja",
    LayerKind.SLIDING_WINDOW: "attention.py.jinja",
    LayerKind.ATTENTION: "attention.py.jinja",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def kernel_context(m: MixerIR, config: dict | None = None, tuned: dict | None = None) -> dict:
    """Everything a template may use. Gate hooks are callables: `{{ gate("b_a") }}` prints the
    forget gate of the variable named b_a as Triton code, `gate_torch("a")` as PyTorch code,
    `gate_grad(...)` / `gate_grad_torch(...)` its derivative dg/da."""
    gate = m.forget_gate
    offsets, off = {}, 0
    for part, size in m.in_split:
        offsets[part] = off
        off += size
    return dict(
        name=m.name,
        kind=m.kind.value,
        D=m.d_model,
        H=m.heads,
        d=m.head_dim,
        G=m.groups,
        L=m.chunk,
        W=m.window,  # None for full attention
        position=m.position.value,
        rope_base=float(m.rope_base),
        input_scale_one=(m.input_scale is not None and m.input_scale.value == "1"),
        output_gate=m.output_gate,
        in_features=m.in_features,
        offsets=offsets,  # part name -> first channel of that part in proj
        gate_source=gate.source if gate else None,
        gate_is_sigmoid=bool(gate and gate.is_sigmoid),
        gate=(lambda v: to_triton_code(gate.expr, v)) if gate else None,
        gate_torch=(lambda v: to_torch_code(gate.expr, v)) if gate else None,
        gate_grad=(lambda v: to_triton_code(gate.derivative, v)) if gate else None,
        gate_grad_torch=(lambda v: to_torch_code(gate.derivative, v)) if gate else None,
        config=dict(config or {}),
        # device name -> mode -> shape bucket -> launch config (autotune records), printed sorted
        tuned_table=pprint.pformat(tuned or {}, width=96, sort_dicts=True),
        forward_only=False,  # True: leave the backward out (forward_signature_text only)
    )


def render_kernel(m: MixerIR, config: dict | None = None, tuned: dict | None = None) -> str:
    """The rendered module text for mixer `m`. Raises SyntaxError if it does not parse.

    The module's torch custom ops live in namespace `ratc_<kind>_<hash>` (_render_with_ops)."""
    return _render_with_ops(TEMPLATE_OF[m.kind], m.kind.value, f"<{m.name} kernels>",
                            **kernel_context(m, config, tuned))


def render_rms_norm() -> str:
    """The fused RMSNorm module (templates/rms_norm.py.jinja), the same for every spec: forward
    and backward kernels, their custom ops in namespace `ratc_rms_norm_<hash>`, and
    `rms_norm(x, weight, eps)`, which every norm of the generated model calls."""
    return _render_with_ops("rms_norm.py.jinja", "rms_norm", "<rms_norm kernels>")


def _render_with_ops(template_name: str, prefix: str, filename: str, **context) -> str:
    """A module template rendered with its custom-op namespace `ratc_<prefix>_<hash>`, the hash of
    the text rendered with an empty namespace: identical modules share ops, different ones never
    clash. Raises SyntaxError if the text does not parse."""
    template = _env.get_template(template_name)
    draft = template.render(**context, op_namespace="")
    namespace = f"ratc_{prefix}_{hashlib.sha256(draft.encode()).hexdigest()[:12]}"
    text = template.render(**context, op_namespace=namespace)
    ast.parse(text, filename=filename)
    return text


def signature_of(m: MixerIR, mode: str = "prefill") -> str:
    """The key tuning records use for m's kernels in `mode`: its kind plus a hash of the Triton
    version and of the text that mode runs, rendered with default configs — prefill: the forward
    module without its backward (forward_signature_text), so an edit to the backward keeps the
    prefill records; train: the whole forward module; decode: the decode module
    (ratc.tune.records.kernel_signature)."""
    import triton

    from ..tune.records import kernel_signature

    if mode == "decode":
        from .emit import render_decode

        text = render_decode(m)
    elif mode == "train":
        text = render_kernel(m)
    else:
        text = forward_signature_text(m)
    return kernel_signature(m.kind.value, text, triton.__version__)


def forward_signature_text(m: MixerIR) -> str:
    """What prefill records are keyed by: m's kernel module rendered with default configs, no op
    namespace (a hash of the whole module) and no backward (the templates include their backward
    unless forward_only). Not a module to run: the custom-op glue still names the backward."""
    context = kernel_context(m) | {"forward_only": True}
    return _env.get_template(TEMPLATE_OF[m.kind]).render(**context, op_namespace="")


def load_module(text: str, name: str):
    """Import rendered text as a module from a real file (triton.jit needs source on disk)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / "ratc_kernels"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}_{digest}.py"
    if not path.exists():  # written whole, then renamed: another process never sees a part of it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".py", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    mod_name = f"ratc_kernels_{name}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return mod


def load_rms_norm():
    """Render and import the fused RMSNorm module (tests use this)."""
    return load_module(render_rms_norm(), "rms_norm")


def load_kernel(m: MixerIR, config: dict | None = None):
    """Render and import the kernel module of mixer `m` (tests and the tuner use this)."""
    return load_module(render_kernel(m, config), f"{m.kind.value}_{m.name}")
