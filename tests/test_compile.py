"""torch.compile of a generated Model: the Triton launchers are torch custom ops with fake
implementations, so dynamo traces every layer kind into one graph, forward and backward.

The unmarked tests run the kernels on DEVICE: the GPU where there is one, else the CPU under
TRITON_INTERPRET=1; the compiled graph runs under the aot_eager backend (AOTAutograd without
inductor), so logits and gradients must equal eager exactly. GPU (marked): the default inductor
backend in bf16.
"""

import pytest
import torch

from ratc.build import import_built
from ratc.codegen.render import load_module, render_kernel
from ratc.lower import lower
from ratc.spec import load_spec

SPEC = "tiny_hybrid"  # every layer kind: RAT, sliding window, full attention, RNN
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def pkg():
    return import_built(f"generated/{SPEC}")


def kernel_modules(pkg):
    return {name: getattr(pkg.kernels, name) for name in dir(pkg.kernels)
            if hasattr(getattr(pkg.kernels, name), "OP_NAMESPACE")}


def loss_and_grads(model, ids, forward=None):
    """Logits of (forward or model)(ids) and the gradients of mean(logits^2) for model's parameters."""
    model.zero_grad(set_to_none=True)
    logits = (model if forward is None else forward)(ids)
    logits.float().square().mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def recording(backend):
    """A dynamo backend that keeps each graph it is given, then compiles it with `backend`."""
    graphs = []

    def compile_fn(gm, example_inputs):
        graphs.append(gm)
        return torch._dynamo.lookup_backend(backend)(gm, example_inputs)

    return compile_fn, graphs


def graph_text(gm):
    return gm.print_readable(print_output=False)


def assert_close(name, got, want, atol, rtol):
    err = (got.float() - want.float()).abs()
    bound = atol + rtol * want.float().abs()
    worst = int((err - bound).argmax())
    assert bool((err <= bound).all()), (
        f"{name}: |diff| {err.flatten()[worst]:.3g} at flat index {worst} "
        f"(got {got.flatten()[worst]:.6g}, eager {want.flatten()[worst]:.6g})")


def test_every_kernel_module_has_its_ops(pkg):
    mods = kernel_modules(pkg)
    assert {m.rsplit("_", 1)[0] for m in mods} >= {"rat_rat", "rnn", "sliding_window", "attention"}
    assert "rms_norm" in mods  # the fused RMSNorm of every norm
    for mod in mods.values():
        ops = getattr(torch.ops, mod.OP_NAMESPACE)
        fwd = [n for n in dir(mod) if n.endswith("_fwd_op")]
        assert len(fwd) == 1 and hasattr(ops, fwd[0].removesuffix("_op")), mod.__name__


def test_compiled_model_matches_eager_with_no_graph_break(pkg):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    model = pkg.Model(device=DEVICE, dtype=torch.float32)
    ids = torch.randint(0, pkg.SPEC["vocab_size"], (1, 17), device=DEVICE)  # T = 17 > every chunk
    ref_logits, ref_grads = loss_and_grads(model, ids)

    backend, graphs = recording("aot_eager")
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    logits, grads = loss_and_grads(model, ids, compiled)

    assert len(graphs) == 1, f"{len(graphs)} graphs"
    assert not torch._dynamo.utils.counters["graph_break"], dict(
        torch._dynamo.utils.counters["graph_break"])
    text = graph_text(graphs[0])
    for mod in kernel_modules(pkg).values():  # the kernels are in the graph, as ops
        assert mod.OP_NAMESPACE in text, f"{mod.__name__}'s ops are not in the compiled graph"
    torch.testing.assert_close(logits, ref_logits, atol=0, rtol=0)
    for name, g in ref_grads.items():
        assert_close(name, grads[name], g, atol=1e-6, rtol=1e-5)


def test_reimport_shares_ops_and_other_kernels_get_other_names(pkg):
    """A second import of identical kernel text (a temporary build of the same spec) reuses the
    registered ops; text that differs (another launch config) registers its own namespace."""
    ir = lower(load_spec(f"specs/{SPEC}.yaml"))
    m = next(m for m in ir.mixers if m.kind.value == "rnn")
    first = next(mod for name, mod in kernel_modules(pkg).items() if name.startswith("rnn"))
    same = load_module(render_kernel(m), "compile_test_rnn_again")
    assert same is not first and same.OP_NAMESPACE == first.OP_NAMESPACE
    assert same.rnn_fwd_op is first.rnn_fwd_op
    other = load_module(render_kernel(m, config={"BT": 32}), "compile_test_rnn_bt32")
    assert other.OP_NAMESPACE != first.OP_NAMESPACE
    proj = torch.randn(1, 5, first.IN_FEATURES, device=DEVICE)
    torch.testing.assert_close(other.core_triton(proj), first.core_triton(proj))


def test_core_triton_takes_a_launch_config_through_the_op(pkg):
    mod = next(mod for name, mod in kernel_modules(pkg).items() if name.startswith("rnn"))
    proj = torch.randn(1, 9, mod.IN_FEATURES, device=DEVICE, requires_grad=True)
    bias = torch.randn(mod.D, device=DEVICE, requires_grad=True)
    y = mod.core_triton(proj, bias, {"BT": 16})
    y.square().sum().backward()
    dp, db = proj.grad.clone(), bias.grad.clone()
    proj.grad = bias.grad = None
    torch.testing.assert_close(y, mod.core_triton(proj, bias))
    mod.core_triton(proj, bias).square().sum().backward()
    torch.testing.assert_close(proj.grad, dp)
    torch.testing.assert_close(bias.grad, db)


def op_calls(name, mod):
    """(forward op, its args, backward op, its args) for kernel module `name` on small inputs."""
    g = torch.Generator().manual_seed(0)
    if name == "rms_norm":
        x = torch.randn(2, 19, 200, generator=g).to(DEVICE)  # 200: not a power of two
        w = torch.randn(200, generator=g).to(DEVICE)
        dy = torch.randn(2, 19, 200, generator=g).to(DEVICE)
        _, rstd, r = mod.rms_norm_fwd_op(x, w, 1e-5, "", True)  # the residual form: all outputs
        return (mod.rms_norm_fwd_op, (x, w, 1e-5, "", True),
                mod.rms_norm_bwd_op, (x, w, rstd, dy, r, ""))
    proj = torch.randn(2, 19, mod.IN_FEATURES, generator=g).to(DEVICE)  # 19: a partial chunk
    dy = torch.randn(2, 19, mod.D, generator=g).to(DEVICE)
    bias = torch.randn(mod.D, generator=g).to(DEVICE)
    layer = next(n for n in dir(mod) if n.endswith("_fwd_op")).removesuffix("_fwd_op")
    fwd, bwd = getattr(mod, f"{layer}_fwd_op"), getattr(mod, f"{layer}_bwd_op")
    if name.startswith("rnn"):
        return fwd, (proj, bias, "", "train"), bwd, (proj, bias, dy, "")
    if name.startswith("rat"):  # the forward keeping the scan's outputs for the backward
        y, lse, *scan = fwd(proj, bias, "", True, True)
        return fwd, (proj, bias, "", True, True), bwd, (proj, bias, y, lse, dy, *scan, "")
    y, lse = fwd(proj, "", True)
    return fwd, (proj, "", True), bwd, (proj, y, lse, dy, "")


def test_ops_fake_implementations_match_the_kernels(pkg):
    """torch.library.opcheck: each op's schema holds and its fake (what torch.compile traces)
    gives the real outputs' shapes, strides and dtypes."""
    for name, mod in kernel_modules(pkg).items():
        fwd, fwd_args, bwd, bwd_args = op_calls(name, mod)
        calls = [(fwd, fwd_args), (bwd, bwd_args)]
        if name.startswith("rat"):  # and RECOMPUTE_SCAN's: nothing kept, the backward rescans
            proj, bias, y, lse, dy = bwd_args[:5]
            empty = [t.new_empty(0) for t in bwd_args[5:11]]
            calls += [(fwd, fwd_args[:4] + (False,)), (bwd, (proj, bias, y, lse, dy, *empty, ""))]
        for op, args in calls:
            torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.gpu
@pytest.mark.parametrize("spec", ["tiny_hybrid", "small_rat_swa"])
def test_inductor_bf16_on_cuda(spec):
    pkg = import_built(f"generated/{spec}")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    model = pkg.Model(device="cuda", dtype=torch.bfloat16)
    backend, graphs = recording("inductor")
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for T in (256, 200):  # the second length recompiles with a dynamic T
        ids = torch.randint(0, pkg.SPEC["vocab_size"], (2, T), device="cuda")
        ref_logits, ref_grads = loss_and_grads(model, ids)
        logits, grads = loss_and_grads(model, ids, compiled)
        assert_close(f"logits T={T}", logits, ref_logits, atol=5e-2, rtol=5e-2)
        for name, g in ref_grads.items():
            rel = (grads[name].float() - g.float()).norm() / g.float().norm().clamp_min(1e-12)
            assert rel < 5e-2, f"{name} T={T}: relative error {rel:.3g}"
    assert not torch._dynamo.utils.counters["graph_break"]
    assert all(any(mod.OP_NAMESPACE in graph_text(gm) for gm in graphs)
               for mod in kernel_modules(pkg).values())
