"""Session 10: registers and spills of a RAT kernel module's Triton kernels at given launch
configs, on a machine without a GPU (sm_90 compile through scripts/compile_check.py's stand-in
driver, then `ptxas -v` on each kernel's PTX).

    python3 regs.py MODULE_FILE [--config '{"DQ_BT": 64, ...}'] [--seq 16384] [--batch 1]

The launchers run on CPU tensors (nothing executes; only the compile matters), with the module's
CONFIG updated by --config (e.g. a train record). Prints, per kernel: warps, registers per
thread, spill stores and loads (bytes), as ptxas reports them, and how many of the local-memory
(spill) instructions in the SASS (nvdisasm) sit inside a loop (between a backward branch and its
target) against outside one.
"""
import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from compile_check import CompileOnlyDriver  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--config", default="{}")
ap.add_argument("--seq", type=int, default=4096)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--arch", type=int, default=90)
a = ap.parse_args()

from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.runtime import driver, jit  # noqa: E402

driver.set_active(CompileOnlyDriver(a.arch))
compiled = []
_run = jit.JITFunction.run


def compile_only(self, *args, grid, warmup, **kwargs):
    kernel = _run(self, *args, grid=grid, warmup=True, **kwargs)
    compiled.append((self.fn.__name__, kernel.metadata.num_warps, kernel.asm["ptx"]))
    return kernel


jit.JITFunction.run = compile_only
spec = importlib.util.spec_from_file_location("regs_target", a.module)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
cfg = dict(mod.CONFIG) | json.loads(a.config)
B, T = a.batch, a.seq
proj = torch.zeros(B, T, mod.IN_FEATURES, dtype=torch.bfloat16)
bias = torch.zeros(mod.D)
lse = torch.zeros(B, mod.H, T)
y, scan = mod.rat_fwd(proj, bias, lse=lse, config=cfg, mode="train", keep=True)
mod.rat_bwd(proj, bias, y, lse, torch.zeros_like(y), config=cfg, mode="train", scan=scan)

ptxas = get_ptxas(a.arch).path
arch = f"sm_{a.arch}a" if a.arch == 90 else f"sm_{a.arch}"
print(f"{Path(a.module).name} sm_{a.arch}, config {cfg}")
nvdisasm = str(Path(ptxas).with_name("nvdisasm"))


def spills_in_loops(cubin):
    """(local loads/stores inside loops, outside) in the cubin's SASS."""
    sass = subprocess.run([nvdisasm, "-c", "-hex", cubin], capture_output=True, text=True).stdout
    ins = [(int(m.group(1), 16), line) for line in sass.splitlines()
           if (m := re.search(r"/\*([0-9a-f]{4,})\*/", line))]
    labels = {}
    for line in sass.splitlines():
        if (m := re.match(r"\.(L_x_\d+):", line.strip())):
            labels[m.group(1)] = None
    # label addresses: the instruction after each label line
    current = None
    for line in sass.splitlines():
        if (m := re.match(r"\.(L_x_\d+):", line.strip())):
            current = m.group(1)
        elif current and (a := re.search(r"/\*([0-9a-f]{4,})\*/", line)):
            labels[current], current = int(a.group(1), 16), None
    loops = [(labels[m.group(1)], addr) for addr, line in ins
             if (m := re.search(r"BRA.*`\(\.(L_x_\d+)\)", line))
             and labels.get(m.group(1)) is not None and labels[m.group(1)] < addr]
    inside = outside = 0
    for addr, line in ins:
        if re.search(r"\b(STL|LDL)\b", line):
            if any(lo <= addr <= hi for lo, hi in loops):
                inside += 1
            else:
                outside += 1
    return inside, outside


for name, warps, ptx in compiled:
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    cubin = f.name + ".cubin"
    out = subprocess.run([ptxas, "-v", f"--gpu-name={arch}", f.name, "-o", cubin],
                         capture_output=True, text=True).stderr
    inside, outside = spills_in_loops(cubin)
    regs = re.search(r"Used (\d+) registers", out)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    print(f"  {name:28s} warps {warps}  registers {regs.group(1) if regs else '?':>4s}  "
          f"spill stores {spill.group(1) if spill else '?':>6s} B, loads "
          f"{spill.group(2) if spill else '?':>6s} B; local ld/st in loops {inside}, "
          f"outside {outside}")
