"""`ratc bench`: time a generated layer (or model) against baselines in the same process.

Modes (each builds the spec's package into a temporary folder and runs it in bf16 on the GPU):

- prefill: one forward of a layer with its projections, no grad. Baselines' outputs are checked
  against the generated layer (relative error), then everything is timed with
  `triton.testing.do_bench` (median). The floor is max(FLOPs / matmul ceiling, bytes / copy
  ceiling), both ceilings measured on the spot.
- train: forward + backward of a layer with a fixed upstream gradient. The input gradient of every
  baseline is checked against the generated layer's first; then do_bench times fwd+bwd (grads
  reset each repetition) and one more fwd+bwd gives the peak memory (max_memory_allocated over
  what was allocated before it). FLOPs and floor: the cost model's train FLOPs.
- decode: one token per row at position T (the cache holds T tokens) for batch B. Each step is
  first checked against the generated step on a real prefilled cache at a small size; timing uses
  a cache of the full size with random contents. Every implementation is timed twice, eager and
  replayed from a CUDA graph, as back-to-back steps on the wall clock (what a decode loop sees,
  launch overhead included). Floor: (weights + cache bytes read) / copy ceiling.
- generate: the whole Model, `Model.generate` greedily continuing random prompts (random-init
  weights), batch chosen from free memory (see `choose_batch`) and halved on out-of-memory.
"""

from __future__ import annotations

import dataclasses
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
    peak_gib: float | None = None  # train: peak memory of one fwd+bwd above what was allocated
    graph: bool | None = None  # decode: replayed from a CUDA graph (True) or eager (False)


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


def build_package(ir: ModelIR, tuned: dict | None = None):
    """Build the spec's package into a temporary folder, with `tuned` (build.tuned_for's
    {layer: {device: {mode: {bucket: config}}}}: the records `ratc build` would bake in) baked
    in, and import it."""
    from .build import import_built, write
    from .codegen.emit import emit

    tmp = Path(tempfile.mkdtemp(prefix="ratc_bench_"))
    write(emit(ir, tuned), tmp / ir.name)
    return import_built(tmp / ir.name)


def tuned_here(tuned: dict, device: str) -> dict:
    """{layer: {mode: [buckets]}} of the records in `tuned` (build.tuned_for's) for `device`: what
    steers this run's launches."""
    return {layer: {mode: sorted(buckets) for mode, buckets in sorted(by_device[device].items())}
            for layer, by_device in sorted(tuned.items()) if device in by_device}


def run_bench(ir: ModelIR, layers: list[str], sizes: list[tuple[int, int]], mode: str,
              progress=None, rep: int = 100, checkpoint=None, tuned: dict | None = None) -> dict:
    """Bench `layers` of `ir` at every (T, batch) of `sizes` in `mode` (prefill, train, decode),
    the package built with the tuning records `tuned` (build.tuned_for's; None: none).
    Returns {device, torch, mode, ceilings, tuned, rows: [Row as dict]} (tuned: tuned_here);
    `checkpoint(result so far)` is called before every (layer, size), so a run cut short still
    leaves its finished rows."""
    import torch

    tuned = tuned or {}
    pkg = build_package(ir, tuned)
    flops_peak, bw_peak = measure_ceilings()
    rows: list[Row] = []

    def result():
        return {
            "device": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "mode": mode,
            "ceilings": {"bf16_matmul_tflops": flops_peak / 1e12, "copy_tb_s": bw_peak / 1e12},
            "tuned": tuned_here(tuned, torch.cuda.get_device_name()),
            "rows": [asdict(r) for r in rows],
        }

    def step(message):
        if checkpoint:
            checkpoint(result())
        if progress:
            progress(message)

    run = {"prefill": _run_prefill, "train": _run_train, "decode": _run_decode}[mode]
    run(ir, pkg, layers, sizes, flops_peak, bw_peak, step, rep, rows)
    return result()


def _set_speedups(rows: list[Row], ours: str = "ratc (generated)") -> None:
    """speedup = (this row's time) / (the generated row's time); on the generated row: over the
    first baseline that ran. Rows are compared within one (graph) group."""
    mine = next((r for r in rows if r.impl == ours), None)
    if mine is None or not mine.ms:
        return
    base = [r for r in rows if r is not mine]
    for r in base:
        r.speedup = (r.ms / mine.ms) if r.ms else None
    first = next((r for r in base if r.ms), None)
    mine.speedup = (first.ms / mine.ms) if first else None


def reference_point_flops(mixer, T: int, B: int, train: bool = False) -> float:
    """FLOPs of the SDPA attention layer timed for context beside `mixer` (full causal attention
    at the same width; baselines.reference_points), on the cost model's conventions: matrix
    products only; training = 3x the projections and 3.5x the attention."""
    proj = 2 * B * T * mixer.d_model * 4 * mixer.d_model
    attn = 4 * B * mixer.heads * mixer.head_dim * T * (T + 1) / 2
    return 3 * proj + 3.5 * attn if train else proj + attn


def _failure(e: BaseException) -> str:
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return "out of memory"
    return f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"


def _run_prefill(ir, pkg, layers, sizes, flops_peak, bw_peak, progress, rep, rows):
    import torch
    from triton.testing import do_bench

    from .baselines import make_baselines, reference_points

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
                        times[impl] = do_bench(lambda: fn(h), warmup=25, rep=rep,
                                               return_mode="median")
                        del out
                    except Exception as e:  # noqa: BLE001 - a baseline failing is a result
                        times[impl], note = None, _failure(e)
                    torch.cuda.empty_cache()
                    is_ours = impl == "ratc (generated)"
                    ms = times[impl]
                    flops = (reference_point_flops(mixer, T, Bsz) if impl in context
                             else c["fwd_flops"])
                    rows.append(Row(name, mixer.kind.value, T, Bsz, impl, ms, err,
                                    flops / (ms * 1e-3) / 1e12 if ms else None,
                                    (100 * floor_ms / ms) if (ms and is_ours) else None, None, note))
            _set_speedups(rows[-len(fns):])
            del layer, h, ours
            torch.cuda.empty_cache()
    return rows


# -------------------------------------------------------------------------------------------------
# train: forward + backward


def _run_train(ir, pkg, layers, sizes, flops_peak, bw_peak, progress, rep, rows):
    import torch

    from .baselines import make_baselines, reference_points

    seen: dict = {}  # reference points already timed: (impl, T, B, D, H) -> Row
    for name in layers:
        mixer = ir.mixer(name)
        cost = mixer_cost(mixer, dtype_bytes=2)
        for T, Bsz in sizes:
            if progress:
                progress(f"train {name} T={T} B={Bsz}")
            torch.manual_seed(0)
            layer = pkg.MIXERS[name](device="cuda", dtype=torch.bfloat16)
            h = torch.randn(Bsz, T, mixer.d_model, device="cuda", dtype=torch.bfloat16,
                            requires_grad=True)
            dy = torch.randn_like(h)  # the fixed upstream gradient
            c = cost.evaluate(Bsz, T)
            floor_ms = c["train_flops"] / flops_peak * 1e3
            context = reference_points(mixer, "cuda", torch.bfloat16)
            fns = {"ratc (generated)": layer, **make_baselines(layer, mixer, T), **context}
            group: list[Row] = []
            want = None  # the generated layer's input gradient, mixer part
            for impl, fn in fns.items():
                key = (impl, T, Bsz, mixer.d_model, mixer.heads)
                if impl in context and key in seen:  # the same layer at the same size: reuse
                    group.append(dataclasses.replace(seen[key], layer=name, kind=mixer.kind.value,
                                                     speedup=None))
                    continue
                params = list((context[impl] if impl in context else layer).parameters())
                grads = [h] + params
                ms = err = peak = None
                note = ""
                try:
                    for t in grads:
                        t.grad = None
                    fn(h).backward(dy)  # also compiles
                    got = h.grad - dy  # the mixer's part of the input gradient
                    if impl == "ratc (generated)":
                        want = got
                    elif impl not in context and want is not None:
                        err = rel_err(got, want)
                    del got
                    peak = fwd_bwd_peak_gib(fn, h, dy, grads)
                    ms = time_ms(lambda: fn(h).backward(dy), rep, grads)
                except Exception as e:  # noqa: BLE001 - a baseline failing is a result
                    note = _failure(e)
                for t in grads:
                    t.grad = None
                torch.cuda.empty_cache()
                is_ours = impl == "ratc (generated)"
                flops = (reference_point_flops(mixer, T, Bsz, train=True) if impl in context
                         else c["train_flops"])
                group.append(Row(name, mixer.kind.value, T, Bsz, impl, ms, err,
                                 flops / (ms * 1e-3) / 1e12 if ms else None,
                                 (100 * floor_ms / ms) if (ms and is_ours) else None, None, note,
                                 peak_gib=peak))
                if impl in context:
                    seen[key] = group[-1]
            _set_speedups(group)
            rows += group
            del layer, h, dy, want, fns, context
            torch.cuda.empty_cache()
    return rows


def time_ms(fn, rep: float, grad_to_none=None) -> float:
    """Median ms of fn: triton's do_bench, except for calls longer than rep / 4 ms, where it is
    the median of three calls timed with CUDA events (do_bench would spend five calls estimating
    first). fn must have run before (compiled, warmed)."""
    import torch
    from triton.testing import do_bench

    def once():
        for t in grad_to_none or ():
            t.grad = None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)

    first = once()
    if first > rep / 4:
        return sorted([first, once(), once()])[1]
    return do_bench(fn, warmup=10, rep=rep, grad_to_none=grad_to_none, return_mode="median")


def fwd_bwd_peak_gib(fn, h, dy, grads) -> float:
    """GiB that one fn(h).backward(dy) allocates at its peak above what was allocated before."""
    import torch

    for t in grads:
        t.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(h).backward(dy)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    for t in grads:
        t.grad = None
    return peak / 2**30


# -------------------------------------------------------------------------------------------------
# decode: one token per row at position T


DECODE_ROOM = 64  # cache capacity beyond T in decode mode


def decode_check_length(mixer) -> int:
    """Prompt length of decode mode's correctness check: a few chunks past a whole one for RAT, a
    ring that has wrapped for a sliding window."""
    from .ir import LayerKind

    if mixer.kind is LayerKind.RAT:
        return 3 * mixer.chunk + 5
    if mixer.kind is LayerKind.SLIDING_WINDOW:
        return mixer.window + 37
    return 77


def cuda_graphed(fn):
    """fn captured in a CUDA graph (after three warm-up calls on a side stream): its replay."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def wall_ms_per_call(fn, rep_ms: float = 100, repeats: int = 5) -> float:
    """Median over `repeats` of the wall-clock ms per call of back-to-back calls (synchronised
    before and after each batch of calls); the batch lasts about rep_ms / repeats."""
    import time

    import torch

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    est = (time.perf_counter() - t0) / 10 * 1e3
    n = max(10, int(rep_ms / repeats / max(est, 1e-3)))
    out = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) / n * 1e3)
    return sorted(out)[len(out) // 2]


def check_decode_steps(layer, mixer, steps: dict, batch: int = 2) -> dict:
    """Relative error of every baseline step against the generated layer's step, on a cache
    prefilled by the generated layer from a real prompt (decode_check_length tokens), over
    enough steps to close a chunk. {name: worst rel. error of the mixer part}."""
    import torch

    from .baselines import make_decode_baselines

    T = decode_check_length(mixer)
    n = (mixer.chunk or 1) + 2
    D = mixer.d_model
    h = torch.randn(batch, T + n, D, device=layer.in_proj.weight.device,
                    dtype=layer.in_proj.weight.dtype)
    _, cache = layer.prefill(h[:, :T], capacity=T + n)
    start = {k: v.clone() for k, v in cache.tensors.items()}
    want = [layer.step(h[:, T + i], cache) - h[:, T + i] for i in range(n)]
    errs = {}
    for name, step in make_decode_baselines(layer, mixer, T + n).items():
        if name not in steps:
            continue
        tensors = {k: v.clone() for k, v in start.items()}
        errs[name] = max(rel_err(step(h[:, T + i], tensors, T + i) - h[:, T + i], want[i])
                         for i in range(n))
    return errs


def _run_decode(ir, pkg, layers, sizes, flops_peak, bw_peak, progress, rep, rows):
    import torch

    from .baselines import AttentionStep, make_decode_baselines, sdpa_attention_layer
    from .ir import LayerKind

    seen: dict = {}  # reference points already timed: (impl, graph, T, B, D, H) -> Row
    for name in layers:
        mixer = ir.mixer(name)
        cost = mixer_cost(mixer, dtype_bytes=2)
        for T, Bsz in sizes:
            if progress:
                progress(f"decode {name} T={T} B={Bsz}")
            torch.manual_seed(0)
            with torch.no_grad():
                layer = pkg.MIXERS[name](device="cuda", dtype=torch.bfloat16)
                cap = T + DECODE_ROOM
                steps = make_decode_baselines(layer, mixer, cap)
                errs = check_decode_steps(layer, mixer, steps)
                # the full-size cache: random contents, every row at position T
                cache = layer.init_cache(Bsz, cap)
                for t in cache.tensors.values():
                    t.normal_()
                cache.pos.fill_(T)
                cache.seen = T
                h1 = torch.randn(Bsz, mixer.d_model, device="cuda", dtype=torch.bfloat16)
                fns = {"ratc (generated)": lambda: layer.decode(h1, cache)}
                for impl, step in steps.items():
                    fns[impl] = (lambda s: lambda: s(h1, cache.tensors, T))(step)
                context = set()
                impl = "SDPA attention layer step (same D)"
                if mixer.kind in (LayerKind.RAT, LayerKind.SLIDING_WINDOW) and \
                        (impl, True, T, Bsz, mixer.d_model, mixer.heads) in seen:
                    context.add(impl)  # timed beside another layer already
                elif mixer.kind in (LayerKind.RAT, LayerKind.SLIDING_WINDOW):
                    attn = sdpa_attention_layer(mixer.d_model, mixer.heads, "cuda", torch.bfloat16)
                    kv = {f: torch.randn(Bsz, cap, mixer.d_model, device="cuda",
                                         dtype=torch.bfloat16) for f in ("keys", "values")}
                    astep = AttentionStep(attn, mixer.heads, mixer.head_dim, 10000.0, True, cap,
                                          sdpa=True)
                    fns[impl] = lambda: astep(h1, kv, T)
                    context.add(impl)
                floor_ms = ((cost.evaluate(Bsz, T)["cache_bytes"] * Bsz
                             + 2 * cost.evaluate(1, 1)["params"]) / bw_peak * 1e3)
                for graph in (False, True):
                    group = []
                    for impl in list(fns) + [i for i in context if i not in fns]:
                        key = (impl, graph, T, Bsz, mixer.d_model, mixer.heads)
                        if impl not in fns:
                            group.append(dataclasses.replace(seen[key], layer=name,
                                                             kind=mixer.kind.value))
                            continue
                        ms, note = None, ""
                        try:
                            fn = fns[impl]
                            ms = wall_ms_per_call(cuda_graphed(fn) if graph else fn, rep)
                        except Exception as e:  # noqa: BLE001 - a baseline failing is a result
                            note = _failure(e)
                        torch.cuda.empty_cache()
                        ours = impl == "ratc (generated)"
                        group.append(Row(name, mixer.kind.value, T, Bsz, impl, ms, errs.get(impl),
                                         None, (100 * floor_ms / ms) if (ms and ours) else None,
                                         None, note, graph=graph))
                        if impl in context:
                            seen[key] = group[-1]
                    _set_speedups(group)
                    rows += group
                del layer, cache, fns, steps
                torch.cuda.empty_cache()
    return rows


# -------------------------------------------------------------------------------------------------
# generate: the whole model


GiB = 2**30


def prefill_bytes_per_token(ir: ModelIR, dtype_bytes: int = 2) -> int:
    """Activation bytes one prompt token needs while a block runs in prefill (an estimate with a
    2x margin): block input, normed input, in_proj output, mixer output, out_proj output, FFN
    hidden before and after the activation, block output."""
    F = max(m.in_features for m in ir.mixers)
    return 2 * dtype_bytes * (5 * ir.d_model + F + 2 * ir.ffn.hidden)


def choose_batch(free_bytes: int, cache_bytes_per_seq: int, extra_bytes_per_seq: int,
                 workspace_bytes: int, reserve_bytes: int, multiple: int = 8) -> int:
    """The largest batch whose decode caches and per-row buffers fit what is free once the
    prefill workspace and a reserve are set aside, rounded down to a multiple of `multiple` when
    it is at least that; 0 when not even one row fits.

    Example: choose_batch(80 * GiB, 50 * 2**20, 2**20, 8 * GiB, 2 * GiB) == 1400
    """
    room = free_bytes - workspace_bytes - reserve_bytes
    per_seq = cache_bytes_per_seq + extra_bytes_per_seq
    if room < per_seq:
        return 0
    b = room // per_seq
    return int(b // multiple * multiple if b >= multiple else b)


def micro_batch(workspace_bytes: int, prompt: int, bytes_per_token: int, batch: int) -> int:
    """Rows per prefill micro-batch so that prompt * bytes_per_token * rows <= workspace (>= 1)."""
    return int(max(1, min(batch, workspace_bytes // max(1, prompt * bytes_per_token))))


def generation_plan(ir: ModelIR, free_bytes: int, prompt: int, new: int,
                    batch: int | None = None) -> dict:
    """Batch (given, or chosen from free memory when None), prefill micro-batch and the memory
    arithmetic behind them, for generating `new` tokens after a `prompt`-token prompt."""
    from .cost import model_cost

    capacity = prompt + new - 1
    cache = int(model_cost(ir).total.evaluate(1, capacity)["cache_bytes"])
    extra = 8 * (prompt + new) + 8 * ir.vocab_size  # ids, new tokens, a row of logits
    reserve = max(2 * GiB, free_bytes // 25)
    workspace = min(8 * GiB, free_bytes // 8)
    per_token = prefill_bytes_per_token(ir)
    if batch is None:
        batch = choose_batch(free_bytes, cache, extra, workspace, reserve)
    return {"batch": batch, "micro_batch": micro_batch(workspace, prompt, per_token, max(1, batch)),
            "capacity": capacity, "cache_bytes_per_seq": cache, "free_bytes": free_bytes,
            "workspace_bytes": workspace, "reserve_bytes": reserve}


def run_generate(ir: ModelIR, prompt: int, new: int, batch: int | None, progress=None,
                 tuned: dict | None = None) -> dict:
    """Greedy Model.generate of `new` tokens after random `prompt`-token prompts (random-init
    weights, bf16, CUDA-graph steps), at `batch` rows or (None) the largest that fits, halving
    the batch on out-of-memory; the package built with the tuning records `tuned` (as in
    run_bench). Returns
    {device, torch, mode, tuned, rows: [one dict]} (tuned: tuned_here)."""
    import gc

    import torch

    if progress:
        progress(f"generate {ir.name}: building the package and the model")
    tuned = tuned or {}
    pkg = build_package(ir, tuned)
    torch.manual_seed(0)
    model = pkg.Model(device="cuda", dtype=torch.bfloat16).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    if progress:
        progress(f"generate {ir.name}: compiling (one row)")
    warm = torch.randint(0, ir.vocab_size, (1, prompt), device="cuda")
    model.generate(warm, 4, capacity=prompt + new - 1)  # compiles every kernel once
    del warm
    gc.collect()
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[0]
    plan = generation_plan(ir, free, prompt, new, batch)
    if progress:
        progress(f"generate {ir.name}: compiled; {free / GiB:.1f} GiB free, planned batch "
                 f"{plan['batch']} (micro-batch {plan['micro_batch']} for the prefill)")
    B, note = plan["batch"], ""
    if B < 1:
        raise RuntimeError(f"not even one row of {plan['cache_bytes_per_seq'] / GiB:.2f} GiB of "
                           f"cache fits in {free / GiB:.1f} GiB free")
    while True:
        if progress:
            progress(f"generate {ir.name}: batch {B}, prompt {prompt}, {new} new tokens")
        timings, ids = {}, None
        try:
            ids = torch.randint(0, ir.vocab_size, (B, prompt), device="cuda")
            torch.cuda.reset_peak_memory_stats()
            model.generate(ids, new, micro_batch=min(plan["micro_batch"], B),
                           capacity=plan["capacity"], timings=timings)
            break
        except torch.OutOfMemoryError:
            note = f"out of memory at batch {B}, halved"
            del ids
            gc.collect()
            torch.cuda.empty_cache()
            B //= 2
            if B < 1:
                raise
    peak = torch.cuda.max_memory_allocated()
    pre, dec = timings["prefill_s"], timings["decode_s"]
    row = {"spec": ir.name, "batch": B, "micro_batch": min(plan["micro_batch"], B),
           "prompt": prompt, "new": new, "prefill_s": pre, "decode_s": dec,
           "decode_tokens_per_s": B * (new - 1) / dec if dec > 0 else None,
           "tokens_per_s": B * new / (pre + dec),
           "prefill_tokens_per_s": B * prompt / pre,
           "weights_gib": weights / GiB,
           "cache_gib": B * plan["cache_bytes_per_seq"] / GiB,
           "peak_gib": peak / GiB, "batch_auto": batch is None, "note": note,
           "plan": plan}
    del model
    gc.collect()
    torch.cuda.empty_cache()
    device = torch.cuda.get_device_name()
    return {"device": device, "torch": torch.__version__, "mode": "generate",
            "tuned": tuned_here(tuned, device), "rows": [row]}


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(1, len(layers), figsize=(6 * len(layers), 4.5), squeeze=False)
    def label(r):
        g = r.get("graph")
        return r["impl"] + ("" if g is None else " (CUDA graph)" if g else " (eager)")

    for ax, layer in zip(axes[0], layers):
        for impl in dict.fromkeys(label(r) for r in rows if r["layer"] == layer):
            pts = [(r["seq"], r["ms"]) for r in rows
                   if r["layer"] == layer and label(r) == impl and r["ms"]]
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
