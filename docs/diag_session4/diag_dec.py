"""Session 4 diagnostic: where a RAT decode layer step goes (H100), random vs zero cache contents."""
import sys, torch
from torch.profiler import profile, ProfilerActivity
from triton.testing import do_bench
from ratc.bench import cuda_graphed, wall_ms_per_call
import importlib

pkg = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "generated.rat_swa.layers")
T, B = 131072, 2
torch.manual_seed(0)

def kernels(fn, n=50):
    fn(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(n): fn()
        torch.cuda.synchronize()
    rows = [(e.key[:60], e.device_time_total / n, e.count / n) for e in p.key_averages() if e.device_time_total > 0]
    rows.sort(key=lambda r: -r[1])
    return rows

with torch.no_grad():
    for name in ("rat", "swa"):
        layer = pkg.MIXERS[name](device="cuda", dtype=torch.bfloat16)
        cache = layer.init_cache(B, T + 64)
        h1 = torch.randn(B, 2048, device="cuda", dtype=torch.bfloat16)
        for fill in ("random", "zeros"):
            for t in cache.tensors.values():
                t.normal_() if fill == "random" else t.zero_()
            cache.pos.fill_(T)
            dk = layer.decode_kernels
            unfused = lambda: h1 + layer.out_proj(dk.step(layer.in_proj(layer.input_norm(h1)), layer._gate_bias(), cache.tensors, cache.pos))
            gu = cuda_graphed(unfused)
            print(f"{name} {fill}: unfused layer step graph wall {wall_ms_per_call(gu)*1e3:.1f} us, do_bench {do_bench(gu, warmup=20, rep=200)*1e3:.1f} us", flush=True)
            g = cuda_graphed(lambda: layer.decode(h1, cache))
            wall = wall_ms_per_call(g) * 1e3
            gpu = do_bench(g, warmup=20, rep=200) * 1e3
            print(f"{name} {fill}: fused layer step graph wall {wall:.1f} us, do_bench {gpu:.1f} us", flush=True)
            tot = 0
            for k, us, c in kernels(g):
                tot += us
                print(f"    {k:60s} {us:7.1f} us x{c:.0f}")
            print(f"    sum {tot:.1f} us")
            if name == "rat":
                dk = layer.decode_kernels
                proj = layer.in_proj(layer.input_norm(h1))
                for label, cfg in (("record", None), ("default", dict(dk.CONFIG))):
                    f = cuda_graphed(lambda: dk.rat_decode(proj, layer.gate_bias, cache.tensors, cache.pos, config=cfg))
                    print(f"  core ({label}) graph do_bench {do_bench(f, warmup=20, rep=200)*1e3:.1f} us, wall {wall_ms_per_call(f)*1e3:.1f} us", flush=True)
