"""`ratc build`: committed output matches a fresh build, determinism, atomic writes, the package
contract, and agreement of the generated Model with the reference LM."""

import ast
import glob
import os
import sys
from pathlib import Path

import pytest
import torch

from ratc.build import build, dump, import_built, run_pipeline, write
from ratc.lower import lower
from ratc.spec import load_spec

SPECS = sorted(glob.glob("specs/*.yaml"))
TINY = [s for s in SPECS if Path(s).stem.startswith("tiny_")]
ALLOWED_IMPORTS = {"torch", "triton", "math", "os", "argparse", "time", "functools", "typing",
                   "dataclasses", "contextlib"}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: Path(s).stem)
def test_generated_folder_matches_fresh_build(spec):
    files = run_pipeline(spec).files
    folder = Path("generated") / Path(spec).stem
    on_disk = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert sorted(on_disk) == sorted(files), "file list differs: run `ratc build` on every spec"
    stale = [p for p in files if on_disk[p] != files[p]]
    assert not stale, f"generated/{folder.name} is stale in {stale}: rebuild and commit"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: Path(s).stem)
def test_build_is_deterministic_and_parses(spec):
    a, b = run_pipeline(spec).files, run_pipeline(spec).files
    assert a == b
    for path, text in a.items():
        if path.endswith(".py"):
            tree = ast.parse(text)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    roots = {n.name.split(".")[0] for n in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    roots = {node.module.split(".")[0]}
                else:
                    continue
                assert roots <= ALLOWED_IMPORTS, f"{path} imports {roots - ALLOWED_IMPORTS}"


def test_failed_write_leaves_previous_output(tmp_path):
    out = tmp_path / "pkg"
    write({"a.py": "x = 1\n"}, out)
    with pytest.raises(OSError):
        write({"b.py": "y = 2\n", "b.py/c.py": "broken"}, out)  # a file cannot be a folder
    assert sorted(p.name for p in out.iterdir()) == ["a.py"]
    assert (out / "a.py").read_text() == "x = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"], "temporary folder left behind"


def test_build_writes_package_and_manifest(tmp_path):
    import json

    r = build("specs/tiny_rat_swa.yaml", tmp_path / "out")
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["spec_sha256"] == load_spec("specs/tiny_rat_swa.yaml").sha256
    assert m["ratc_version"] and set(m["files"]) == set(r.files) - {"manifest.json"}


@pytest.mark.parametrize("stage", ["spec", "ir", "cost", "emit"])
def test_dump_stages(stage):
    text = dump("specs/tiny_hybrid.yaml", stage)
    assert text.strip()
    if stage == "emit":
        assert "# ===== kernels/rat_rat_nope.py =====" in text


@pytest.mark.parametrize("spec", TINY, ids=lambda s: Path(s).stem)
def test_generated_model_matches_reference_lm(spec, monkeypatch):
    """The emitted PyTorch path, float64: the whole LM equals the reference to rounding."""
    from ratc.reference import LM

    ir = lower(load_spec(spec))
    pkg = import_built(Path("generated") / ir.name)  # imported as conftest set the environment
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # dispatch to the PyTorch path
    torch.manual_seed(0)
    ref = LM(ir, dtype=torch.float64)
    model = pkg.Model(dtype=torch.float64)
    missing, unexpected = model.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    ids = torch.randint(0, ir.vocab_size, (2, 23))
    with torch.no_grad():
        want, got = ref(ids), model(ids)
    err = ((got - want).norm() / want.norm()).item()
    assert err < 1e-10, f"{ir.name}: generated CPU path differs from the reference by {err:.2e}"


@pytest.mark.interpreter
@pytest.mark.parametrize("spec", ["specs/tiny_hybrid.yaml", "specs/tiny_rat_swa.yaml"],
                         ids=["tiny_hybrid", "tiny_rat_swa"])
def test_generated_model_triton_path_matches_reference(spec, monkeypatch):
    """The Triton kernels (interpreter on CPU, compiled on GPU), float32, loading reference weights."""
    from ratc.reference import LM

    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ir = lower(load_spec(spec))
    pkg = import_built(Path("generated") / ir.name)
    torch.manual_seed(1)
    ref = LM(ir, dtype=torch.float64)
    model = pkg.Model(device=device, dtype=torch.float32)
    model.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    ids = torch.randint(0, ir.vocab_size, (2, 21))
    with torch.no_grad():
        want, got = ref(ids), model(ids.to(device)).double().cpu()
    err = ((got - want).norm() / want.norm()).item()
    assert err < 1e-4, f"{ir.name}: generated Triton path differs from the reference by {err:.2e}"


@pytest.mark.parametrize("spec", ["specs/tiny_hybrid.yaml"], ids=["tiny_hybrid"])
def test_mixers_contract(spec):
    ir = lower(load_spec(spec))
    pkg = import_built(Path("generated") / ir.name)
    assert set(pkg.MIXERS) == {m.name for m in ir.mixers}
    assert pkg.SPEC["name"] == ir.name and pkg.SPEC["layers"] == list(ir.layers)
    for name, cls in pkg.MIXERS.items():
        block = cls(device="cpu", dtype=torch.float32)
        h = torch.randn(2, 9, ir.d_model)
        out = block(h)
        assert out.shape == h.shape and out.dtype == h.dtype
        keys = set(block.state_dict())
        want = {"input_norm.weight", "in_proj.weight", "out_proj.weight"}
        want |= {"gate_bias"} if ir.mixer(name).has_gate_bias else set()
        assert keys == want, name


def test_smoke_run_of_a_built_package(tmp_path):
    import subprocess

    build("specs/tiny_rat_swa.yaml", tmp_path / "tiny_rat_swa")
    r = subprocess.run([sys.executable, "-m", "tiny_rat_swa", "--seq", "19"], cwd=tmp_path,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    assert "logits finite" in r.stdout


def test_residual_out_adds_into_the_copy_in_both_dtype_cases():
    """layers.residual_out: r + linear(y) by the GEMM into r when the dtypes agree (r a copy, the
    block input untouched), else linear(y) added into r in r's dtype (autocast's bf16 projection
    into an fp32 stream); gradients reach h, y and the weight either way."""
    ir = lower(load_spec("specs/tiny_hybrid.yaml"))
    pkg = import_built(Path("generated") / ir.name)
    layers = sys.modules[pkg.__name__ + ".layers"]
    torch.manual_seed(0)
    norm = layers.RMSNorm(24, 1e-6)
    lin = torch.nn.Linear(40, 24, bias=False)
    for y_dtype in (torch.float32, torch.bfloat16):
        h = torch.randn(2, 5, 24, requires_grad=True)
        y = torch.randn(2, 5, 40, dtype=y_dtype, requires_grad=True)
        x, r = norm(h, residual=True)
        assert r.shape == (10, 24) and torch.equal(r, h.detach().reshape(10, 24))
        lin_y = lin.to(y_dtype)
        out = layers.residual_out(r, y, lin_y)
        want = h.detach() + lin_y(y.detach()).float()
        assert out.shape == h.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, want, rtol=1e-2 if y_dtype == torch.bfloat16 else 1e-5,
                                   atol=1e-2 if y_dtype == torch.bfloat16 else 1e-5)
        (out * x.detach()).sum().backward()  # x: a fixed weighting; h's gradient is that weighting
        torch.testing.assert_close(h.grad, x.detach())
        assert y.grad is not None and lin_y.weight.grad is not None
        lin_y.weight.grad = None
