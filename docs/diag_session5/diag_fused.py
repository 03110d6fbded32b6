"""Session 5 diagnostic: where the one-launch RAT decode step spends its last ~5 us (H100).

Variants of the generated decode module (text edits of generated/rat_swa/kernels/decode_rat_rat.py)
at 131072 x 2 and the two-launch module of old_rat_swa: each launcher replayed from a CUDA graph
(do_bench median), with the kernel's registers per thread and spills, across split sizes."""
import sys

import torch
from triton.testing import do_bench

from ratc.bench import cuda_graphed
from ratc.codegen.render import load_module

T, B = 131072, 2


class Recorder:
    """Stands in for a kernel object in a module: records what each launch returns."""

    def __init__(self, kernel):
        self.kernel, self.last = kernel, None

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.last = self.kernel[grid](*args, **kwargs)
            return self.last
        return run


def main():
    new = open("generated/rat_swa/kernels/decode_rat_rat.py").read()
    old = open("old_rat_swa/kernels/decode_rat_rat.py").read()
    variants = {
        "old two-launch": old,
        "one-launch": new,
        "one-launch, no finish": new.replace("if done == SPLITS - 1:", "if done == SPLITS + (1 << 30):"),
        "one-launch, merge 8": new.replace("MERGE_BLOCK = 32", "MERGE_BLOCK = 8"),
        "one-launch, merge 16": new.replace("MERGE_BLOCK = 32", "MERGE_BLOCK = 16"),
        "one-launch, merge 64": new.replace("MERGE_BLOCK = 32", "MERGE_BLOCK = 64"),
    }
    torch.manual_seed(0)
    proj = torch.randn(B, 6656, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(2048, device="cuda", dtype=torch.bfloat16)
    pos = torch.full((B,), T, device="cuda", dtype=torch.long)
    for name, text in variants.items():
        mod = load_module(text, "diag_" + name.replace(" ", "_").replace(",", ""))
        kernels = [k for k in ("rat_decode_kernel", "rat_decode_partial_kernel",
                               "rat_decode_combine_kernel") if hasattr(mod, k)]
        for k in kernels:
            setattr(mod, k, Recorder(getattr(mod, k)))
        cache = mod.init_cache(B, T + 64, device="cuda", dtype=torch.bfloat16)
        for t in cache.values():
            t.normal_()
        if hasattr(mod, "init_workspace"):
            cache |= mod.init_workspace(B, device="cuda")
        for rows in (128, 256, 512, 1024):
            cfg = dict(DECODE_BC=32, DECODE_WARPS=2, DECODE_STAGES=2, DECODE_SPLIT_ROWS=rows)
            out = torch.empty(B, 2048, device="cuda", dtype=torch.bfloat16)
            g = cuda_graphed(lambda: mod.rat_decode(proj, bias, cache, pos, cfg, out=out))
            us = do_bench(g, warmup=20, rep=300) * 1e3
            regs = ", ".join(f"{k}: {getattr(mod, k).last.n_regs} regs "
                             f"{getattr(mod, k).last.n_spills} spills" for k in kernels)
            print(f"{name:24s} split rows {rows:5d}: {us:6.1f} us   {regs}", flush=True)
        del cache
    print(torch.cuda.get_device_name(), file=sys.stderr)


if __name__ == "__main__":
    main()
