"""`ratc bench`: time a generated layer against baselines in the same process.

For every requested (T, batch) and layer: build the spec's package into a temporary folder, make
the layer in bf16 on the GPU, check its output against each baseline (relative error), then time
everything with `triton.testing.do_bench` (median). Achieved TFLOP/s use the cost model's FLOPs;
the roofline floor is max(FLOPs / matmul ceiling, bytes / copy ceiling) with both ceilings measured
on the spot.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .cost import mixer_cost
from .ir import ModelIR


@dataclass
class Row:
    layer: str
    kind: str
    seq: int
    batch: int
    impl: str
    ms: float | None  # None: failed (see note)
    rel_err: float | None  # against the generated layer's output
    tflops: float | None
    roofline_pct: float | None
    speedup: float | None  # generated layer over this row (on generated rows: over the first baseline)
    note: str = ""


def measure_ceilings():
    """(bf16 matmul FLOP/s, copy bytes/s) measured on the current GPU."""
    import torch
    from triton.testing import do_bench

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ b, warmup=50, rep=200, return_mode="median")
    flops = 2 * n**3 / (ms * 1e-3)
    x = torch.empty(1 << 29, device="cuda", dtype=torch.bfloat16).normal_()  # 1 GiB
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=20, rep=100, return_mode="median")
    bw = 2 * x.numel() * 2 / (ms * 1e-3)  # read + write
    del a, b, x, y
    return flops, bw


def rel_err(out, ref) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def run_bench(ir: ModelIR, layers: list[str], sizes: list[tuple[int, int]], mode: str,
              progress=None) -> dict:
    import torch
    from triton.testing import do_bench

    from .baselines import make_baselines, reference_points
    from .build import import_built, write
    from .codegen.emit import emit

    tmp = Path(tempfile.mkdtemp(prefix="ratc_bench_"))
    write(emit(ir), tmp / ir.name)
    pkg = import_built(tmp / ir.name)
    flops_peak, bw_peak = measure_ceilings()
    device = torch.cuda.get_device_name()
    rows: list[Row] = []
    for name in layers:
        mixer = ir.mixer(name)
        cost = mixer_cost(mixer, dtype_bytes=2)
        for T, Bsz in sizes:
            if progress:
                progress(f"{name} T={T} B={Bsz}")
            torch.manual_seed(0)
            layer = pkg.MIXERS[name](device="cuda", dtype=torch.bfloat16)
            h = torch.randn(Bsz, T, mixer.d_model, device="cuda", dtype=torch.bfloat16)
            c = cost.evaluate(Bsz, T)
            floor_ms = max(c["fwd_flops"] / flops_peak, c["bytes_moved"] / bw_peak) * 1e3
            fns = {"ratc (generated)": layer}
            fns.update(make_baselines(layer, mixer, T))
            context = reference_points(mixer, "cuda", torch.bfloat16)
            fns.update(context)
            with torch.no_grad():
                ours = layer(h)
                times = {}
                for impl, fn in fns.items():
                    err, note = None, ""
                    try:
                        out = fn(h)
                        if impl != "ratc (generated)" and impl not in context:
                            err = rel_err(ours - h, out - h)  # compare the mixer part
                        times[impl] = do_bench(lambda: fn(h), warmup=25, rep=100,
                                               return_mode="median")
                        del out
                    except torch.OutOfMemoryError:
                        times[impl], note = None, "out of memory"
                    except Exception as e:  # noqa: BLE001 - a baseline failing is a result
                        times[impl], note = None, f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
                    torch.cuda.empty_cache()
                    is_ours = impl == "ratc (generated)"
                    ms = times[impl]
                    if ms is not None and impl in context:
                        attn = (4 * Bsz * mixer.heads * mixer.head_dim * T * (T + 1) / 2
                                + 2 * Bsz * T * mixer.d_model * 4 * mixer.d_model)
                        tf = attn / (ms * 1e-3) / 1e12
                    else:
                        tf = c["fwd_flops"] / (ms * 1e-3) / 1e12 if ms else None
                    rows.append(Row(name, mixer.kind.value, T, Bsz, impl, ms, err, tf,
                                    (100 * floor_ms / ms) if (ms and is_ours) else None, None, note))
            base = [r for r in rows[-len(fns):] if r.impl != "ratc (generated)"]
            ours_ms = times["ratc (generated)"]
            for r in base:
                r.speedup = (r.ms / ours_ms) if (r.ms and ours_ms) else None
            first = next((r for r in base if r.ms), None)
            rows[-len(fns)].speedup = (first.ms / ours_ms) if (first and ours_ms) else None
            del layer, h, ours
            torch.cuda.empty_cache()
    return {
        "device": device,
        "torch": torch.__version__,
        "mode": mode,
        "ceilings": {"bf16_matmul_tflops": flops_peak / 1e12, "copy_tb_s": bw_peak / 1e12},
        "rows": [asdict(r) for r in rows],
    }


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(1, len(layers), figsize=(6 * len(layers), 4.5), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for impl in dict.fromkeys(r["impl"] for r in rows if r["layer"] == layer):
            pts = [(r["seq"], r["ms"]) for r in rows
                   if r["layer"] == layer and r["impl"] == impl and r["ms"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (batch x T fixed per point, see table)")
        ax.set_ylabel("ms (median)")
        ax.set_title(f"{layer}: {result['mode']} latency, {result['device']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def save_json(result: dict, path: str) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
