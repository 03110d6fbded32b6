"""`ratc bench`'s own code: its baselines, its memory arithmetic, its command line.

- Decode baselines (the paper-style eager steps, SDPA steps) against the reference decode, float64.
- Train baselines (paper RAT with FlexAttention swapped for a dense mask, SDPA): input and
  parameter gradients against the reference layer.
- Decode mode's correctness check, on the generated package's PyTorch path.
- Model.prefill's logits="last" and micro-batches, generate's timings (what generate mode uses).
- Batch choice for generate mode; CLI errors (exit 2, one line).
- GPU (marked): every mode end to end at tiny sizes.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ratc import bench
from ratc.baselines import make_baselines, make_decode_baselines
from ratc.build import import_built
from ratc.cli import main
from ratc.lower import lower
from ratc.reference import mixer_module
from ratc.spec import load_spec

TOL = {torch.float64: 1e-10, "fp32 inside": 1e-5}


def mixers(*names):
    for name in names:
        ir = lower(load_spec(f"specs/{name}.yaml"))
        for m in ir.mixers:
            yield pytest.param(m, id=f"{name}-{m.name}")


def rel(got, want):
    return ((got - want).norm() / want.norm()).item()


def assert_close(got, want, tol, what):
    err = rel(got, want)
    if not err < tol:
        diff = (got - want).abs().flatten()
        worst = diff.topk(min(5, diff.numel())).indices.tolist()
        raise AssertionError(f"{what}: relative error {err:.2e} >= {tol:.0e}; worst: " + ", ".join(
            f"[{i}] got {got.flatten()[i]:.6g} want {want.flatten()[i]:.6g}" for i in worst))


# -------------------------------------------------------------------------------------------------
# decode baselines against the reference decode


def prompt_lengths(m):
    """Awkward prompt lengths: one before a chunk closes, a chunk boundary, a wrapped window."""
    if m.chunk:
        return [m.chunk - 1, 3 * m.chunk, 3 * m.chunk + 5]
    if m.window:
        return [m.window - 2, m.window + 9]
    return [1, 23]


@torch.no_grad()
@pytest.mark.parametrize("m", list(mixers("tiny_rat_swa", "tiny_attention", "tiny_rnn",
                                          "tiny_hybrid")))
def test_decode_baselines_match_reference_steps(m):
    torch.manual_seed(0)
    ref = mixer_module(m)(m, dtype=torch.float64)
    n = (m.chunk or 2) + 2  # enough steps to close a chunk
    for T in prompt_lengths(m):
        h = torch.randn(2, T + n, m.d_model, dtype=torch.float64)
        _, cache = ref.prefill(h[:, :T], capacity=T + n)
        tensors = {f.name: getattr(cache, f.name) for f in dataclasses.fields(cache)
                   if isinstance(getattr(cache, f.name), torch.Tensor)}
        want = []
        start = {k: v.clone() for k, v in tensors.items()}
        for i in range(n):
            want.append(ref.step(h[:, T + i], cache))
        steps = make_decode_baselines(ref, m, T + n)
        assert steps
        for name, step in steps.items():
            mine = {k: v.clone() for k, v in start.items()}
            for i in range(n):
                got = step(h[:, T + i], mine, T + i)
                assert_close(got - h[:, T + i], want[i] - h[:, T + i], TOL[torch.float64],
                             f"{m.name} {name} T={T} step {i}")


# -------------------------------------------------------------------------------------------------
# train baselines: gradients against the reference layer


@pytest.mark.parametrize("m", list(mixers("tiny_rat_swa", "tiny_attention")))
def test_train_baselines_gradients_match_reference(m):
    """paper_rat_core (FlexAttention swapped for a dense masked softmax: it has no CPU backward),
    SDPA attention and SDPA with a window mask: input and parameter gradients. The paper-style
    code computes gates, RoPE and the merge in fp32, hence the fp32 tolerance."""
    torch.manual_seed(0)
    ref = mixer_module(m)(m, dtype=torch.float64)
    T = 3 * (m.chunk or 8)  # paper RAT needs T % L == 0, as the released code asserts
    h = torch.randn(2, T, m.d_model, dtype=torch.float64, requires_grad=True)
    dy = torch.randn_like(h)
    ref(h).backward(dy)
    want = h.grad - dy
    want_p = {n: p.grad.clone() for n, p in ref.named_parameters()}
    fns = make_baselines(ref, m, T, dense=True)
    assert fns
    for name, fn in fns.items():
        h.grad = None
        ref.zero_grad()
        out = fn(h)
        assert_close(out.detach(), ref(h).detach(), TOL["fp32 inside"], f"{name} output")
        out.backward(dy)
        assert_close(h.grad - dy, want, TOL["fp32 inside"], f"{name} input gradient")
        for n, p in ref.named_parameters():
            assert_close(p.grad, want_p[n], TOL["fp32 inside"], f"{name} d{n}")


# -------------------------------------------------------------------------------------------------
# decode mode's check, on the generated package's PyTorch path


@pytest.mark.parametrize("layer", ["rat", "swa"])
def test_decode_check_passes_on_generated_layer(layer, monkeypatch):
    ir = lower(load_spec("specs/tiny_rat_swa.yaml"))
    pkg = import_built(Path("generated") / "tiny_rat_swa")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the emitted PyTorch path
    torch.manual_seed(0)
    block = pkg.MIXERS[layer](dtype=torch.float64)
    m = ir.mixer(layer)
    errs = bench.check_decode_steps(block, m, make_decode_baselines(block, m, 8))
    assert errs and max(errs.values()) < TOL[torch.float64], errs


# -------------------------------------------------------------------------------------------------
# what generate mode drives: prefill(logits="last", micro_batch), generate(timings)


@torch.no_grad()
@pytest.mark.parametrize("name", ["tiny_rat_swa", "tiny_hybrid"])
def test_prefill_last_logits_and_micro_batches(name, monkeypatch):
    ir = lower(load_spec(f"specs/{name}.yaml"))
    pkg = import_built(Path("generated") / name)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    torch.manual_seed(0)
    model = pkg.Model(dtype=torch.float64)
    ids = torch.randint(0, ir.vocab_size, (5, 19))
    lengths = torch.tensor([19, 4, 11, 19, 1])
    full, cache = model.prefill(ids, lengths=lengths, capacity=24)
    last, cache2 = model.prefill(ids, lengths=lengths, capacity=24, logits="last", micro_batch=2)
    assert last.shape == (5, ir.vocab_size)
    assert_close(last, full[torch.arange(5), lengths - 1], TOL[torch.float64], "last logits")
    assert cache2.seen == cache.seen == 19 and torch.equal(cache2.pos, lengths)
    for a, b in zip(cache.layers, cache2.layers):
        for k in a.tensors:
            assert torch.allclose(a.tensors[k], b.tensors[k], rtol=1e-12, atol=1e-12), \
                f"{a.kind} {k}"  # not bit-equal: matmuls of other row counts sum in other orders
    tok = ids[:, 0]
    assert_close(model.step(tok, cache2), model.step(tok, cache), TOL[torch.float64], "step")
    with pytest.raises(ValueError, match='logits must be "all" or "last"'):
        model.prefill(ids, logits="first")


@torch.no_grad()
def test_generate_timings_and_micro_batch_keep_tokens(monkeypatch):
    ir = lower(load_spec("specs/tiny_rat_swa.yaml"))
    pkg = import_built(Path("generated") / "tiny_rat_swa")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    torch.manual_seed(0)
    model = pkg.Model(dtype=torch.float64)
    ids = torch.randint(0, ir.vocab_size, (3, 10))
    timings = {}
    got = model.generate(ids, 6, micro_batch=2, timings=timings)
    assert torch.equal(got, model.generate(ids, 6))
    assert set(timings) == {"prefill_s", "decode_s"} and min(timings.values()) >= 0


# -------------------------------------------------------------------------------------------------
# batch choice


GiB = 2**30


def test_choose_batch_arithmetic():
    # 80 GiB free, 8 GiB workspace, 2 GiB reserve -> 70 GiB for 51 MiB rows: 1405 -> 1400
    assert bench.choose_batch(80 * GiB, 50 * 2**20, 2**20, 8 * GiB, 2 * GiB) == 1400
    assert bench.choose_batch(80 * GiB, 10 * GiB, 0, 8 * GiB, 2 * GiB) == 7  # under 8: exact
    assert bench.choose_batch(10 * GiB, 10 * GiB, 0, 1 * GiB, 1 * GiB) == 0  # nothing fits
    assert bench.choose_batch(10 * GiB, GiB // 2, 0, GiB, GiB, multiple=4) == 16
    assert bench.micro_batch(8 * GiB, 3072, 133 * 2**10, 1400) == 20
    assert bench.micro_batch(GiB, 10**6, 10**6, 64) == 1  # never below one row
    assert bench.micro_batch(8 * GiB, 16, 16, 5) == 5  # never above the batch


@pytest.mark.parametrize("name", ["rat", "rat_swa", "attention"])
def test_generation_plan_fits_in_80_gib(name):
    """The 1.3B specs on an 80 GB card after their ~2.7 GB of weights: every term of the plan
    fits in what is free, and the batches order as their cache sizes do."""
    ir = lower(load_spec(f"specs/{name}.yaml"))
    free = 76 * GiB
    plan = bench.generation_plan(ir, free, 3072, 1024)
    B = plan["batch"]
    assert plan["capacity"] == 4095
    used = (B * plan["cache_bytes_per_seq"] + plan["workspace_bytes"] + plan["reserve_bytes"]
            + plan["micro_batch"] * 3072 * bench.prefill_bytes_per_token(ir) - plan["workspace_bytes"])
    assert B >= 8 and used <= free
    assert plan["micro_batch"] * 3072 * bench.prefill_bytes_per_token(ir) <= plan["workspace_bytes"]
    expect = {"attention": (60, 100), "rat_swa": (400, 650), "rat": (1100, 1600)}[name]
    assert expect[0] <= B <= expect[1], B
    assert bench.generation_plan(ir, free, 3072, 1024, batch=12)["batch"] == 12


# -------------------------------------------------------------------------------------------------
# the benched package carries the tuning records `ratc build` would bake in


def test_bench_package_bakes_records(tmp_path):
    from ratc.build import tuned_for
    from ratc.codegen.render import signature_of
    from ratc.tune.records import save_record

    ir = lower(load_spec("specs/tiny_rat_swa.yaml"))
    rat = ir.mixer("rat")
    config = {"DECODE_BC": 16, "DECODE_WARPS": 2, "DECODE_STAGES": 2, "DECODE_SPLIT_ROWS": 64}
    save_record(tmp_path / "Fake_GPU.json", "Fake GPU", signature_of(rat, "decode"), "rat",
                "decode", "T4096xB2", {"config": config, "ms": 0.05})
    tuned = tuned_for(ir, tmp_path)
    pkg = bench.build_package(ir, tuned)
    assert pkg.MIXERS["rat"].decode_kernels.TUNED == {"Fake GPU": {"decode": {"T4096xB2": config}}}
    assert pkg.MIXERS["rat"].kernels.TUNED == {}  # no prefill or train record
    assert bench.tuned_here(tuned, "Fake GPU") == {"rat": {"decode": ["T4096xB2"]}}
    assert bench.tuned_here(tuned, "Other GPU") == {}
    none = tuned_for(ir, tmp_path / "empty")
    assert none == {} and bench.build_package(ir, none).MIXERS["rat"].decode_kernels.TUNED == {}


def test_bench_bad_record_file_exits_2_one_line(tmp_path):
    (tmp_path / "NVIDIA_H100.json").write_text('{"format": "ratc-autotune", "format_version": 2,')
    r = run("bench", "specs/tiny_rat_swa.yaml", "--mode", "decode", "--records-dir", str(tmp_path))
    assert r.exit_code == 2, r.output
    assert "NVIDIA_H100.json" in r.output and len(r.output.strip().splitlines()) == 1, r.output


# -------------------------------------------------------------------------------------------------
# command line


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("args, message", [
    (["--mode", "generate", "--seq", "5"], "--seq does not apply to --mode generate; use --prompt and --new"),
    (["--mode", "generate", "--layer", "rat"], "--layer does not apply to --mode generate"),
    (["--mode", "generate", "--batch", "1,2"], "--mode generate takes one batch size or 'auto'"),
    (["--mode", "generate", "--plot", "x.png"], "--plot does not apply to --mode generate"),
    (["--mode", "decode", "--prompt", "5"], "--prompt and --new apply only to --mode generate"),
    (["--mode", "train", "--new", "5"], "--prompt and --new apply only to --mode generate"),
    (["--mode", "train", "--batch", "auto"], "--batch auto applies only to --mode generate"),
    (["--mode", "decode", "--seq", "1,2,3"], "got 2 (the default 16,2)"),
    (["--mode", "decode", "--layer", "nope"], "--layer nope: no such layer"),
    (["--mode", "warp"], "'warp' is not one of"),
], ids=["gen-seq", "gen-layer", "gen-batches", "gen-plot", "decode-prompt", "train-new",
        "train-auto", "decode-sizes", "decode-layer", "bad-mode"])
def test_bench_option_mistakes_exit_2_one_line(args, message):
    r = run("bench", "specs/tiny_rat_swa.yaml", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    if "is not one of" not in message:  # ours: one line, no usage banner
        assert len(r.output.strip().splitlines()) == 1, r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize("mode", ["train", "decode", "generate"])
def test_bench_modes_without_gpu_exit_2(mode):
    r = subprocess.run([sys.executable, "-m", "ratc", "bench", "specs/tiny_rat_swa.yaml",
                        "--mode", mode], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("ratc bench: no CUDA GPU on this machine")
    assert "Traceback" not in r.stderr


# -------------------------------------------------------------------------------------------------
# GPU: every mode end to end at tiny sizes


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["prefill", "train", "decode"])
def test_bench_modes_run_on_gpu(mode, tmp_path):
    r = run("bench", "specs/small_rat_swa.yaml", "--mode", mode, "--seq", "256,512", "--batch",
            "2", "--rep", "5", "--json", str(tmp_path / "r.json"))
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    ours = [x for x in rows if x["impl"] == "ratc (generated)"]
    assert ours and all(x["ms"] for x in ours)
    for x in rows:  # every baseline computing the same function agrees with ours
        if x["rel_err"] is not None:
            assert x["rel_err"] < 1e-1, x  # bf16 residual rounding at D = 384
    if mode == "train":
        assert all(x["peak_gib"] > 0 for x in ours)
    if mode == "decode":
        assert {x["graph"] for x in rows} == {False, True}
        assert any(x["rel_err"] is not None for x in rows)


@pytest.mark.gpu
def test_bench_generate_runs_on_gpu(tmp_path):
    r = run("bench", "specs/small_rat_swa.yaml", "--mode", "generate", "--prompt", "64", "--new",
            "16", "--batch", "4", "--json", str(tmp_path / "g.json"))
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "g.json").read_text())["rows"][0]
    assert row["batch"] == 4 and row["tokens_per_s"] > 0 and row["decode_s"] > 0
