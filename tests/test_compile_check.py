"""Every Triton kernel of two generated packages compiles for an H100 (sm_90), on any machine.

The interpreter tests run kernels as Python and miss what only the compiler rejects; a failed
compile on the GPU machine costs device time. scripts/compile_check.py runs the packages' Triton
launchers on CPU tensors with each launch compiled (through ptxas) instead of run. It runs in a
subprocess: the kernels must be JIT functions, which TRITON_INTERPRET=1 (set by other test
modules at import) would turn into interpreted ones. Together the two packages hold every layer
kind and option the templates branch on: RAT with chunk RoPE and an output gate, RAT without
positions and with a custom gate (each with its warp-specialised Hopper forward), sliding window, full attention, the RNN, RMSNorm, and each
decode module.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["generated.tiny_rat_swa", "generated.tiny_hybrid"])
def test_every_kernel_compiles_for_sm90(package):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "compile_check.py"), package],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "none failed" in run.stdout
    # the RAT forward and backward kernels were among those compiled, in both dtypes
    for dtype in ("bfloat16", "float32"):
        assert any(line.startswith("ok   rat_") and dtype in line and "rat_attn_bwd_dkv_kernel"
                   in line for line in run.stdout.splitlines()), run.stdout
    # the warp-specialised (Gluon) forward too, which only bf16 launches
    assert any(line.startswith("ok   rat_") and "bfloat16" in line and "rat_attn_fwd_ws_kernel"
               in line for line in run.stdout.splitlines()), run.stdout
