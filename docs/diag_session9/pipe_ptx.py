"""Compile a variant of the RAT forward kernel for sm_90 on a CPU machine and print the order of
its chunk loop's tensor-core, exp2 and wait instructions (PTX), to see whether the next block's
scores stay in flight during the softmax.

    python3 docs/diag_session9/pipe_ptx.py "fwd pipelined" --bt 64 --bc 64 --warps 4 --stages 3
"""
import argparse
import importlib.util
import re
import sys
import tempfile

import torch

sys.path[:0] = ["scripts", "docs/diag_session9"]
import compile_check  # noqa: E402
from variants import edited  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("variant")
ap.add_argument("--kernel", default="rat_attn_fwd_kernel")
ap.add_argument("--bt", type=int, default=64)
ap.add_argument("--bc", type=int, default=64)
ap.add_argument("--warps", type=int, default=4)
ap.add_argument("--stages", type=int, default=3)
a = ap.parse_args()

src = edited(open("generated/rat_swa/kernels/rat_rat.py").read(), a.variant)
f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
f.write(src)
f.close()
spec = importlib.util.spec_from_file_location("rat_variant", f.name)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

compiled = []
compile_check.install(90, compiled)
from triton.runtime import jit  # noqa: E402

kernels = {}
orig = jit.JITFunction.run


def keep(self, *args, grid, warmup, **kwargs):
    k = orig(self, *args, grid=grid, warmup=True, **kwargs)
    kernels[self.fn.__name__] = k
    return k


jit.JITFunction.run = keep
B, T = 1, 4096
proj = torch.randn(B, T, mod.IN_FEATURES, dtype=torch.bfloat16)
cfg = dict(BT=a.bt, BC=a.bc, num_warps=a.warps, num_stages=a.stages)
if a.kernel == "rat_attn_fwd_kernel":
    mod.rat_fwd(proj, torch.zeros(mod.D), config=cfg, mode="prefill")
else:
    lse = torch.empty(B, mod.H, T)
    y = mod.rat_fwd(proj, torch.zeros(mod.D), lse=lse, mode="train")
    mod.rat_bwd(proj, torch.zeros(mod.D), y, lse, torch.randn_like(y),
                config=dict(DQ_BT=a.bt, DQ_BC=a.bc, dq_num_warps=a.warps, dq_num_stages=a.stages))
k = kernels[a.kernel]
ptx = k.asm["ptx"]
import os, subprocess  # noqa: E401,E402
import triton.backends.nvidia as nv  # noqa: E402
ptxas = os.path.join(os.path.dirname(nv.__file__), "bin", "ptxas")
with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as g:
    g.write(ptx)
info = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", g.name, "-o", os.devnull],
                      capture_output=True, text=True).stderr
print(f"{a.variant}: {a.kernel} {cfg}:", " ".join(re.findall(r"Used \d+ registers|\d+ bytes spill \w+", info)))
events = []
for line in ptx.splitlines():
    s = line.strip()
    for pat, tag in (("wgmma.mma_async", "MMA"), ("wgmma.wait_group", "WAIT"),
                     ("wgmma.commit_group", "COMMIT"), ("ex2.approx", "EXP"),
                     ("cp.async.bulk.tensor", "TMA"), ("mbarrier.try_wait", "BARWAIT")):
        if s.startswith(pat):
            events.append(tag + (" " + s.split()[1].rstrip(";") if tag == "WAIT" else ""))
compressed = []
for e in events:
    if compressed and compressed[-1][0] == e:
        compressed[-1][1] += 1
    else:
        compressed.append([e, 1])
print(" ".join(f"{e}x{n}" if n > 1 else e for e, n in compressed))
