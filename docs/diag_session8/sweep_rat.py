"""Session 8: per-kernel block-shape sweeps of the RAT train step (forward, dq, dK/dV), and new
H100 records from them.

`ratc tune --mode train` searches the forward's and both backward kernels' keys jointly (about
750,000 configs) with a few dozen Optuna trials. The three attention kernels are independent
launches, so here each one's keys are swept alone, the others held at the record, each kernel
timed by torch.profiler (the scan keys: both scans of the backward together).

    # compile every config first, in parallel (Triton's cache keeps them), then time:
    for i in $(seq 0 13); do python3 sweep_rat.py MODULE --compile-slice $i/14 & done; wait
    python3 sweep_rat.py MODULE [--records autotune/NVIDIA_H100_80GB_HBM3.json --spec specs/rat_swa.yaml]

With --records, the winners replace the train and prefill records of SIZES: each record's ms
and default_ms come from ratc's tune objective (the whole layer core, forward + backward for
train), timed here for the new config, the old record and the template default; a bucket is
rewritten only if its new config is faster than its old record.
"""
import argparse
import importlib.util
import itertools
import tempfile

import torch

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--compile-slice")
ap.add_argument("--records")
ap.add_argument("--spec")
ap.add_argument("--parts", default="fwd,dq,dkv,scan", help="which kernels to sweep")
ap.add_argument("--dkv-one-loop", action="store_true",
                help="also time a variant of the dK/dV kernel with one masked query loop instead "
                     "of three (text-edited; never written to the records)")
ap.add_argument("--dry", action="store_true",
                help="CPU, TRITON_INTERPRET=1, fp32, one tiny size, two configs a kernel: "
                     "checks this script (times are 0)")
a = ap.parse_args()
SRC = open(a.module).read()
SIZES = [(80, 1)] if a.dry else [(16384, 16), (131072, 2)]
DEV, DT = ("cpu", torch.float32) if a.dry else ("cuda", torch.bfloat16)

VARIANTS = {"as built": []}
if a.dkv_one_loop:
    _first = "row_q, row0, o_k, t_first, t_open, T, qk_scale, L, BT, True,"
    _rest = SRC[SRC.index(_first):SRC.index("    o_cache = (i_bh * NCP + o_k[:, None]) * BLOCK_D"
                                            " + o_d[None, :]\n    m = (o_k < NC)")]
    VARIANTS["dkv one loop"] = [(_rest, "row_q, row0, o_k, t_first, T, T, qk_scale, L, BT, True,\n"
                                        "                                    PRECISION)\n")]

GRID = list(itertools.product((64, 128), (32, 64, 128), (4, 8), (2, 3)))
PARTS = {  # part: (kernels, keys, configs)
    "fwd": (("rat_attn_fwd_kernel",), ("BT", "BC", "num_warps", "num_stages"),
            list(itertools.product((64, 128), (32, 64, 128), (4, 8), (2, 3, 4)))),
    "dq": (("rat_attn_bwd_dq_kernel",), ("DQ_BT", "DQ_BC", "dq_num_warps", "dq_num_stages"), GRID),
    "dkv": (("rat_attn_bwd_dkv_kernel",), ("BWD_BT", "BWD_BC", "bwd_num_warps", "bwd_num_stages"),
            GRID),
    "scan": (("rat_scan_fwd_kernel", "rat_scan_bwd_kernel"), ("SCAN_BK", "SCAN_WARPS"),
             list(itertools.product((8, 16, 32), (2, 4)))),
}
PARTS = {k: v for k, v in PARTS.items() if k in a.parts.split(",")}
if a.dry:
    PARTS = {k: (n, keys, [s for s in shapes if s[0] <= 64 and s[1] <= 64][:2])
             for k, (n, keys, shapes) in PARTS.items()}


def load(name, edits):
    src = SRC
    for old, new in edits:
        assert old in src, old
        src = src.replace(old, new)
    f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    f.write(src)
    f.close()
    spec = importlib.util.spec_from_file_location(f"variant_{abs(hash(name))}", f.name)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def kernel_ms(fn, names, reps=5):
    if a.dry:
        fn()
        return 0.0
    from torch.profiler import ProfilerActivity, profile
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    times = {e.key: e.device_time_total / 1e3 / reps for e in prof.key_averages()}
    return sum(times.get(n, float("nan")) for n in names)


def rel(x, ref):
    x, ref = x.float(), ref.float()
    return ((x - ref).norm() / ref.norm()).item()


class Case:
    """One size's inputs and the record's outputs."""

    def __init__(self, mod, T, B):
        g = torch.Generator(device=DEV).manual_seed(T)
        self.p = torch.randn(B, T, mod.IN_FEATURES, device=DEV, dtype=DT, generator=g)
        self.bias = torch.randn(mod.D, device=DEV, generator=g)
        req = self.p.clone().requires_grad_()
        self.train = mod._launch_config(req, mode="train")
        self.prefill = mod._launch_config(self.p, mode="prefill")
        self.lse = torch.empty(B, mod.H, T, device=DEV)
        self.y = mod.rat_fwd(self.p, self.bias, lse=self.lse, config=self.train, mode="train")
        self.y_pre = mod.rat_fwd(self.p, self.bias, config=self.prefill, mode="prefill")
        self.dy = torch.randn(self.y.shape, device=DEV, dtype=self.y.dtype, generator=g)
        self.dproj = mod.rat_bwd(self.p, self.bias, self.y, self.lse, self.dy,
                                 config=self.train)[0]


def run(mod, case, part, cfg, mode="train"):
    if part == "fwd" and mode == "prefill":
        return mod.rat_fwd(case.p, case.bias, config=cfg, mode="prefill")
    if part == "fwd":
        return mod.rat_fwd(case.p, case.bias, lse=case.lse, config=cfg, mode="train")
    return mod.rat_bwd(case.p, case.bias, case.y, case.lse, case.dy, config=cfg)[0]


def jobs():
    """(variant, part, mode, shape) in a fixed order."""
    for part, (_, _, shapes) in PARTS.items():
        for variant in (VARIANTS if part == "dkv" else ["as built"]):
            for mode in (("train", "prefill") if part == "fwd" else ("train",)):
                for shape in shapes:
                    yield variant, part, mode, shape


mods = {name: load(name, edits) for name, edits in VARIANTS.items()}

if a.compile_slice:  # launch each config once at a small size: its kernels compile into the cache
    i, n = map(int, a.compile_slice.split("/"))
    case = Case(mods["as built"], 2048, 1)  # T: divisible by 16, like SIZES
    for j, (variant, part, mode, shape) in enumerate(jobs()):
        if j % n == i:
            base = case.prefill if mode == "prefill" else case.train
            try:
                run(mods[variant], case, part, base | dict(zip(PARTS[part][1], shape)), mode)
            except Exception as e:  # noqa: BLE001  (out of resources: reported when timed)
                print(f"compile {variant} {part} {mode} {shape}: {type(e).__name__}", flush=True)
    torch.cuda.synchronize()
    raise SystemExit(0)

print("dry run (CPU)" if a.dry else torch.cuda.get_device_name(), flush=True)
best = {}
for T, B in SIZES:
    case = Case(mods["as built"], T, B)
    print(f"T={T} B={B} train record {case.train}\n  prefill record {case.prefill}", flush=True)
    for variant, part, mode, shape in jobs():
        kernels, keys, _ = PARTS[part]
        base = case.prefill if mode == "prefill" else case.train
        cfg = base | dict(zip(keys, shape))
        ref = case.y_pre if mode == "prefill" else case.y if part == "fwd" else case.dproj
        try:
            err = rel(run(mods[variant], case, part, cfg, mode), ref)
            ms = kernel_ms(lambda: run(mods[variant], case, part, cfg, mode), kernels)
        except Exception as e:  # noqa: BLE001
            print(f"  T={T} B={B} {part:3s} {mode:7s} {variant:12s} {shape} FAIL "
                  f"{type(e).__name__}: {str(e)[:120]}", flush=True)
            continue
        is_record = all(base[k] == v for k, v in zip(keys, shape))
        ok = err <= 1e-2
        print(f"  T={T} B={B} {part:3s} {mode:7s} {variant:12s} {str(shape):18s} {ms:8.3f} ms "
              f"rel.err {err:.1e}{' (record)' if is_record else ''}{'' if ok else ' WRONG'}",
              flush=True)
        key = (T, B, part, mode, variant)
        if ok and (key not in best or ms < best[key][1]):
            best[key] = (shape, ms)
    del case
    if not a.dry:
        torch.cuda.empty_cache()

print("best per kernel:")
for (T, B, part, mode, variant), (shape, ms) in sorted(best.items()):
    print(f"  T={T} B={B} {part:3s} {mode:7s} {variant:12s} {shape} {ms:.3f} ms")

if a.records:
    import triton

    from ratc import __version__
    from ratc.spec import load_spec
    from ratc.lower import lower
    from ratc.tune.records import bucket_of, device_file_name, load_records, save_record
    from ratc.tune.study import Objective, Target, default_config, replace_chunk

    ir = lower(load_spec(a.spec))
    device = "dry" if a.dry else torch.cuda.get_device_name()
    assert a.dry or a.records.endswith(device_file_name(device)), (a.records, device)
    old = load_records(a.records)["records"] if not a.dry else {}
    for T, B in SIZES:
        for mode in ("train", "prefill"):
            swept = [p for p in PARTS if mode == "train" or p == "fwd"]
            if not swept:  # prefill runs the forward only
                continue
            mixer = replace_chunk(ir.mixer("rat"), mods["as built"].CHUNK)
            target = Target(mixer, T, B, mode)
            entry = old.get(target.signature, {}).get("modes", {}).get(mode, {}).get(
                bucket_of(T, B)) or {"config": default_config(mixer, mode), "trials": 0,
                                     "chunk": mods["as built"].CHUNK}
            new = dict(entry["config"])
            for part in swept:
                keys = PARTS[part][1]
                if (T, B, part, mode, "as built") in best:
                    new.update(zip(keys, best[(T, B, part, mode, "as built")][0]))
            obj = Objective(target)
            obj.check(new)
            t_new, t_old = obj.time_ms(new), obj.time_ms(entry["config"])
            t_def = obj.time_ms(default_config(mixer, mode))
            print(f"records T={T} B={B} {mode}: new {t_new:.3f} ms, old record {t_old:.3f}, "
                  f"default {t_def:.3f}; new config {new}", flush=True)
            if t_new < t_old:
                save_record(a.records, device, target.signature, mixer.kind.value, mode,
                            bucket_of(T, B),
                            {"config": new, "ms": t_new, "default_ms": t_def,
                             "trials": sum(len(PARTS[p][2]) for p in swept),
                             "chunk": entry["chunk"],
                             "ratc_version": __version__, "triton_version": triton.__version__})
                print("  written", flush=True)
