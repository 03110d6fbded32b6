"""Session 18: the SASS a RAT launch config compiles to, on a machine without a GPU: per kernel
its warps, shared memory, registers and spills (ptxas -v), and for the kernels named by --kernel
the instruction mix of the largest loop body (the longest span from a label to a backward
branch to it: the token loop of the scans, the key-block loop of the attention kernels).

    python3 docs/diag_session18/sass_loop.py generated.rat_swa.kernels.rat_rat \\
        --config '{"bwd_scan_num_warps": 1, "bwd_scan_num_stages": 2}' --kernel rat_scan_bwd

Runs rat_fwd and rat_bwd through core_triton on a bf16 [1, 1024, F] input with the config given
(the template's defaults for the rest) under scripts/compile_check.py's stand-in driver, with
Hopper's warp-specialised paths allowed. Session 18 counted the scan backward's loop this way:
2077 -> 1799 instructions at the H200 train record (docs/performance.md).
"""
import argparse
import collections
import importlib
import json
import os
import re
import subprocess
import sys

import torch
import triton
from triton.runtime import driver, jit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from compile_check import CompileOnlyDriver, ptxas_verbose  # noqa: E402

INSTR = re.compile(r"^\s*/\*[0-9a-f]+\*/\s*(?:@!?U?P\w+\s+)?([A-Z0-9_]+)")


def largest_loop(sass: str):
    """(instruction count, Counter of opcodes) of the longest label .. backward-branch span."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines)
              if (m := re.match(r"^(\.L_x_\d+):", line))}
    best = (0, collections.Counter())
    for i, line in enumerate(lines):
        m = re.search(r"BRA `\((\.L_x_\d+)\)", line)
        if m and labels.get(m.group(1), i) < i:
            body = lines[labels[m.group(1)]:i + 1]
            ops = collections.Counter(x.group(1) for x in map(INSTR.match, body) if x)
            if sum(ops.values()) > best[0]:
                best = (sum(ops.values()), ops)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("module", help="a generated RAT kernel module, e.g. "
                    "generated.rat_swa.kernels.rat_rat")
    ap.add_argument("--config", default="{}", help="launch config (JSON) over the defaults")
    ap.add_argument("--kernel", action="append", default=[], help="kernel name substring")
    ap.add_argument("--arch", type=int, default=90)
    a = ap.parse_args()
    driver.set_active(CompileOnlyDriver(a.arch))
    mod = importlib.import_module(a.module)
    mod._on_hopper = lambda t: True
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                            "nvdisasm")
    run, seen = jit.JITFunction.run, set()

    def compile_only(self, *args, grid, warmup, **kwargs):
        k = run(self, *args, grid=grid, warmup=True, **kwargs)
        name = self.fn.__name__
        if name in seen:
            return k
        seen.add(name)
        notes = [line.split(":")[-1].strip() for line in ptxas_verbose(k.asm["ptx"], a.arch)
                 if "Used" in line or "spill" in line]
        print(f"{name}: {k.metadata.num_warps} warps, {k.metadata.shared} B shared; "
              + "; ".join(notes), flush=True)
        if any(s in name for s in a.kernel):
            cubin = f"/tmp/sass_loop_{name}.cubin"
            with open(cubin, "wb") as f:
                f.write(k.asm["cubin"])
            sass = subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True).stdout
            n, ops = largest_loop(sass)
            print(f"  largest loop: {n} instructions; "
                  + ", ".join(f"{op} {c}" for op, c in ops.most_common(16)), flush=True)
        return k

    jit.JITFunction.run = compile_only
    proj = torch.zeros(1, 1024, mod.IN_FEATURES, dtype=torch.bfloat16, requires_grad=True)
    bias = torch.zeros(mod.D, requires_grad=True)
    y = mod.core_triton(proj, bias, json.loads(a.config))
    y.backward(torch.zeros_like(y))


if __name__ == "__main__":
    main()
