"""Session 6 diagnostic: the RAT decode step with its input norm and in_proj in one split-K GEMV
launch (whose partial sums the step kernel finishes) against the session 5 step (RMSNorm kernel,
then cuBLAS's in_proj), in situ: one RAT layer of the 1.3B spec, bf16, replayed from a CUDA graph,
at 131072 x 2 and 16384 x 16. Per PROJ config: the wall clock per replay (what `ratc bench
--mode decode` reports) and each kernel's time (torch.profiler)."""
import importlib
import itertools
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from ratc.bench import cuda_graphed, wall_ms_per_call


def kernel_times(fn, n=50):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    rows = [(e.key[:40], e.device_time_total / n) for e in p.key_averages()
            if e.device_time_total > 0]
    return sorted(rows, key=lambda r: -r[1])


def main():
    pkg = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "generated.rat_swa.layers")
    full = len(sys.argv) > 2 and sys.argv[2] == "full"
    for T, B in ((131072, 2), (16384, 16)):
        torch.manual_seed(0)
        with torch.no_grad():
            layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
            dk = layer.decode_kernels
            cache = layer.init_cache(B, T + 64)
            for t in cache.tensors.values():
                t.normal_()
            cache.pos.fill_(T)
            h = torch.randn(B, 2048, device="cuda", dtype=torch.bfloat16)
            saved = dict(dk.PROJ_CONFIG)
            configs = [("cuBLAS (norm kernel)", {"PROJ_MAX_ROWS": 0}), ("default", {})]
            # (PROJ_BN, PROJ_SPLIT_K, PROJ_BK, PROJ_WARPS, PROJ_STAGES); programs: N/BN * splits
            grid = itertools.product((64, 128, 256), (2, 4, 8), (64, 128), (4, 8), (3, 4)) \
                if full else [(256, 4, 64, 4, 3), (256, 5, 64, 4, 3), (256, 5, 64, 4, 4),
                              (128, 5, 64, 4, 4), (128, 5, 64, 4, 3), (256, 5, 32, 4, 4),
                              (64, 2, 128, 4, 3), (64, 5, 64, 4, 4), (256, 10, 32, 4, 4),
                              (128, 3, 64, 4, 4), (256, 3, 64, 4, 3), (256, 4, 32, 4, 4),
                              (256, 5, 64, 8, 3), (512, 10, 32, 8, 3), (128, 10, 32, 4, 4)]
            configs += [(str(c), dict(zip(("PROJ_BN", "PROJ_SPLIT_K", "PROJ_BK", "PROJ_WARPS",
                                           "PROJ_STAGES"), c))) for c in grid]
            want = None
            for name, cfg in configs:
                dk.PROJ_CONFIG.clear()
                dk.PROJ_CONFIG.update(saved | cfg)
                fn = lambda: layer.decode(h, cache)
                got = fn().float()
                want = got if want is None else want
                err = ((got - want).norm() / want.norm()).item()
                g = cuda_graphed(fn)
                wall = wall_ms_per_call(g) * 1e3
                ks = kernel_times(g) if not full or name in ("default", "cuBLAS (norm kernel)") \
                    else []
                print(f"T={T} B={B} {name:22s} wall {wall:6.1f} us (rel. diff {err:.1e}) "
                      + "; ".join(f"{k} {us:.1f}" for k, us in ks), flush=True)
            dk.PROJ_CONFIG.clear()
            dk.PROJ_CONFIG.update(saved)
            del cache
    print(torch.cuda.get_device_name(), flush=True)


if __name__ == "__main__":
    main()
