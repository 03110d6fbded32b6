"""Session 5 diagnostic: the decode step's two projections in situ (H100, 131072 x 2 and 16384 x 16).

The RAT layer's step (norm, in_proj, the one-launch decode kernel, out_proj, residual) replayed from
a CUDA graph with the projections computed in different ways, because what they cost alone with a
warm L2 says little about the step, where the 134 MB cache stream has just evicted the weights:
    F.linear with the residual added after (cuBLAS's choice of kernel), addmm with the residual
    (which copies h first), and layer.decode (the decode kernel copies h, out_proj adds into it
    in place).
Earlier versions also tried cuBLASLt preferred (no different), W @ x^T fed to the kernel as a
strided view (15 us slower at 131072 x 2), and the decode kernel asking out_proj's weight into L2
with prefetch.global.L2 as its programs finished (out_proj 0.6 us faster, the kernel 1 us slower).
Per variant: wall clock per replay, and each kernel's time (torch.profiler)."""
import importlib
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from ratc.bench import cuda_graphed, wall_ms_per_call


def kernels(fn, n=50):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    rows = [(e.key[:56], e.device_time_total / n) for e in p.key_averages()
            if e.device_time_total > 0]
    return sorted(rows, key=lambda r: -r[1])


def main():
    pkg = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "generated.rat_swa.layers")
    for T, B in ((131072, 2), (16384, 16)):
        torch.manual_seed(0)
        with torch.no_grad():
            layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
            cache = layer.init_cache(B, T + 64)
            for t in cache.tensors.values():
                t.normal_()
            cache.pos.fill_(T)
            h = torch.randn(B, 2048, device="cuda", dtype=torch.bfloat16)
            dk, w_in, w_out = layer.decode_kernels, layer.in_proj.weight, layer.out_proj.weight
            bias = layer._gate_bias()

            def core(proj):
                return dk.step(proj, bias, cache.step_tensors, cache.pos)

            variants = {
                "F.linear": lambda: h + F.linear(core(F.linear(layer.input_norm(h), w_in)), w_out),
                "addmm out": lambda: torch.addmm(h, core(F.linear(layer.input_norm(h), w_in)),
                                                 w_out.t()),
                "layer.decode": lambda: layer.decode(h, cache),
            }
            want = variants["F.linear"]()
            for name, fn in variants.items():
                err = ((fn().float() - want.float()).norm() / want.float().norm()).item()
                g = cuda_graphed(fn)
                wall = wall_ms_per_call(g) * 1e3
                ks = kernels(g)
                print(f"T={T} B={B} {name:10s} wall {wall:6.1f} us  (rel. diff {err:.1e}): "
                      + "; ".join(f"{k} {us:.1f}" for k, us in ks), flush=True)
            del cache


if __name__ == "__main__":
    main()
