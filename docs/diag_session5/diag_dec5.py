"""Session 5 diagnostic: a RAT layer's decode step, one package against another (H100).

    python diag_dec5.py PKG [PKG ...]     # e.g. old_rat_swa generated.rat_swa

For each package (its layers module) and each ANCHORS size: the layer step (norm, in_proj, core,
out_proj, residual) replayed from a CUDA graph, wall clock per replay and do_bench median; the
core alone; and the kernels of one replay (torch.profiler over 50)."""
import importlib
import sys

import torch
from torch.profiler import ProfilerActivity, profile
from triton.testing import do_bench

from ratc.bench import cuda_graphed, wall_ms_per_call


def kernels(fn, n=50):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    rows = [(e.key[:60], e.device_time_total / n, e.count / n) for e in p.key_averages()
            if e.device_time_total > 0]
    return sorted(rows, key=lambda r: -r[1])


def main():
    torch.manual_seed(0)
    with torch.no_grad():
        for T, B in ((131072, 2), (16384, 16)):
            h1 = torch.randn(B, 2048, device="cuda", dtype=torch.bfloat16)
            for name in sys.argv[1:]:
                pkg = importlib.import_module(name + ".layers")
                layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
                torch.manual_seed(1)
                for p in layer.parameters():
                    p.normal_(0, 0.02)
                cache = layer.init_cache(B, T + 64)
                for t in cache.tensors.values():
                    t.normal_()
                cache.pos.fill_(T)
                g = cuda_graphed(lambda: layer.decode(h1, cache))
                wall = wall_ms_per_call(g) * 1e3
                gpu = do_bench(g, warmup=20, rep=200) * 1e3
                dk = layer.decode_kernels
                proj = layer.in_proj(layer.input_norm(h1))
                core = cuda_graphed(lambda: dk.rat_decode(proj, layer.gate_bias, cache.tensors,
                                                          cache.pos))
                cw = wall_ms_per_call(core) * 1e3
                print(f"{name} T={T} B={B}: layer step wall {wall:.1f} us, do_bench {gpu:.1f} us;"
                      f" core wall {cw:.1f} us", flush=True)
                tot = 0
                for k, us, c in kernels(g):
                    tot += us
                    print(f"    {k:60s} {us:7.1f} us x{c:.0f}")
                print(f"    sum {tot:.1f} us", flush=True)
                del cache, g, core
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
