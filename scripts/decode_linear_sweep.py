"""Time the decode step's fused linears (kernels/decode_linear.py) over a grid of launch configs,
against the unfused PyTorch path they replace, on a CUDA GPU.

    python3 scripts/decode_linear_sweep.py                 # M = 2 rows
    python3 scripts/decode_linear_sweep.py --rows 2 16     # and M = 16
(from the repository root with PYTHONPATH=$PWD, as scripts/gpu_env.sh sets; about 5 minutes a
row count on an H100, most of it compiling 108 configs twice).

Cases (bf16, D = 2048): norm_linear, F.linear(rms_norm(h), W_in) with W_in [6656, 2048] (a mixer's
in_proj), and linear_add, h + F.linear(y, W_out) with W_out [2048, 2048] (its out_proj). Every
config of BLOCK_N x BLOCK_K x num_warps x num_stages is timed with triton.testing.do_bench (median,
L2 flushed before each call, as a decode step finds the weights: the previous layers evicted
them); configs that do not compile or run out of shared memory score infinity, configs that
disagree with the unfused path by more than a tolerance are marked. Then both calls back to back
as one CUDA graph: unfused, fused with CONFIG, fused with each case's best config. Prints the top
configs per case, the graphs, and the best config.
"""

import argparse
import itertools
import math

import torch
import triton
from triton.runtime.errors import OutOfResources, PTXASError
from triton.testing import do_bench

from ratc.codegen.render import load_decode_linear

D, N_IN, EPS = 2048, 6656, 1e-5
GRID = dict(BLOCK_N=(8, 16, 32, 64), BLOCK_K=(128, 256, 512), num_warps=(2, 4, 8),
            num_stages=(2, 3, 4))
PEAK_TBPS = {"H100": 3.35, "H200": 4.8}  # SXM cards' HBM bandwidth, for the "% of peak" column


def configs():
    keys = list(GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*GRID.values())]


COMPILE_FAILURES = (triton.CompilationError, OutOfResources, PTXASError)


def bench(fn, rep):
    """Median microseconds of fn (L2 flushed before each call); inf where it fails to compile or
    runs out of resources (shared memory, registers)."""
    try:
        return 1e3 * do_bench(fn, warmup=10, rep=rep, return_mode="median")
    except COMPILE_FAILURES:
        return math.inf


def graph_of(fn):
    """fn captured as a CUDA graph (run once eagerly first: compiles, settles workspaces)."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def within_ulps(got, want, scale, ulps=2):
    bound = ulps * torch.finfo(got.dtype).eps * scale.float().abs()
    return bool(((got.float() - want.float()).abs() <= bound).all())


def sweep_case(name, run, want, scale, rep, progress):
    """[(us, config, ok)] over the grid, fastest first; ok: within two ulps (of `scale`) of the
    unfused path's output `want`. run(config) -> y."""
    rows = []
    for cfg in progress(configs(), name):
        try:
            ok = within_ulps(run(cfg), want, scale)
        except COMPILE_FAILURES:
            rows.append((math.inf, cfg, False))
            continue
        rows.append((bench(lambda: run(cfg), rep), cfg, ok))
    return sorted(rows, key=lambda r: r[0])


def show_case(name, rows, base_us, weight_bytes, top, peak):
    def line(label, us, note=""):
        tbps = weight_bytes / (us * 1e-6) / 1e12 if math.isfinite(us) else 0.0
        share = f"{100 * tbps / peak:5.1f}%" if peak else ""
        print(f"  {label:48} {us:8.2f} us {tbps:6.2f} TB/s {share}  {note}")

    print(f"\n{name}: weight {weight_bytes / 2**20:.1f} MiB")
    line("unfused (PyTorch path)", base_us)
    for us, cfg, ok in rows[:top]:
        label = " ".join(f"{k}={v}" for k, v in cfg.items())
        line(label, us, f"x{base_us / us:.2f}" + ("" if ok else "  WRONG (> 2 ulps)"))
    failed = sum(not math.isfinite(r[0]) for r in rows)
    if failed:
        print(f"  ({failed} of {len(rows)} configs did not compile or ran out of resources)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[2],
                    help="rows M to try (each <= MAX_ROWS = 16), default 2; e.g. --rows 2 16")
    ap.add_argument("--top", type=int, default=8, help="configs to print per case (default 8)")
    ap.add_argument("--rep", type=int, default=50, help="do_bench rep, ms per timing (default 50)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("needs a CUDA GPU")
    mod = load_decode_linear()
    try:
        from rich.progress import track

        def progress(items, name):
            return track(items, description=f"{name:22}", transient=True)
    except ImportError:
        def progress(items, name):
            return items

    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    g = (1 + 0.1 * torch.randn(D, device=dev)).to(dt)
    w_in = (0.02 * torch.randn(N_IN, D, device=dev)).to(dt)
    w_out = (0.02 * torch.randn(D, D, device=dev)).to(dt)
    gpu = torch.cuda.get_device_name()
    peak = next((tbps for card, tbps in PEAK_TBPS.items() if card in gpu), None)
    print(f"{gpu}, triton {triton.__version__}, torch {torch.__version__}; CONFIG = {mod.CONFIG}")
    best = {}
    for M in args.rows:
        if not 1 <= M <= mod.MAX_ROWS:
            ap.error(f"--rows takes 1 to {mod.MAX_ROWS}, got {M}")
        h = torch.randn(M, D, device=dev, dtype=dt)
        y = torch.randn(M, D, device=dev, dtype=dt)
        product = torch.nn.functional.linear(y, w_out)
        nl_want = mod.norm_linear_torch(h, g, EPS, w_in)
        la_want = mod.linear_add_torch(y, w_out, h)
        cases = {  # name: (fused run(config), unfused run(), its output, ulp scale, weight bytes)
            f"norm_linear M={M}": (
                lambda cfg: mod.decode_linear_fwd(h, w_in, norm_weight=g, eps=EPS, config=cfg),
                lambda: mod.norm_linear_torch(h, g, EPS, w_in), nl_want, nl_want,
                w_in.numel() * w_in.element_size()),
            f"linear_add M={M}": (
                lambda cfg: mod.decode_linear_fwd(y, w_out, residual=h, config=cfg),
                lambda: mod.linear_add_torch(y, w_out, h), la_want,
                torch.maximum(la_want.abs(), product.abs()), w_out.numel() * w_out.element_size()),
        }
        for name, (run, unfused, want, scale, nbytes) in cases.items():
            rows = sweep_case(name, run, want, scale, args.rep, progress)
            show_case(name, rows, bench(unfused, args.rep), nbytes, args.top, peak)
            best[name] = next((cfg for us, cfg, ok in rows if ok and math.isfinite(us)), None)

        # both calls back to back, as the decode step runs them (the mixer's step between)
        nl_best, la_best = best[f"norm_linear M={M}"], best[f"linear_add M={M}"]
        graphs = {
            "unfused": lambda: (mod.norm_linear_torch(h, g, EPS, w_in),
                                mod.linear_add_torch(y, w_out, h)),
            "fused, CONFIG": lambda: (mod.norm_linear(h, g, EPS, w_in),
                                      mod.linear_add(y, w_out, h)),
            "fused, best of each": lambda: (
                mod.decode_linear_fwd(h, w_in, norm_weight=g, eps=EPS, config=nl_best),
                mod.decode_linear_fwd(y, w_out, residual=h, config=la_best)),
        }
        print(f"\nCUDA graph of norm_linear + linear_add, M={M}:")
        base = None
        for label, fn in graphs.items():
            us = bench(graph_of(fn), args.rep)
            base = base or us
            print(f"  {label:24} {us:8.2f} us  x{base / us:.2f}")

    print("\nbest config per case (fastest within 2 ulps of the unfused path):")
    for name, cfg in best.items():
        print(f"  {name:22} {cfg}")


if __name__ == "__main__":
    main()
