"""Helpers of the session 10 (and 11) diagnostics: a RAT kernel module loaded with text edits,
the train step's inputs at a size, kernel times from torch.profiler, relative distance."""
import importlib.util
import tempfile

import torch


def load(path, edits=()):
    """The module at `path` with each (old, new) edit applied (each old text must occur once)."""
    src = open(path).read()
    for old, new in edits:
        assert src.count(old) == 1, old
        src = src.replace(old, new)
    f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    f.write(src)
    f.close()
    spec = importlib.util.spec_from_file_location(f"variant_{abs(hash((path, str(edits))))}",
                                                  f.name)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def train_inputs(mod, T, B, dev, dt):
    """Random proj, gate bias and dy for RAT kernel module `mod` at T x B, with its train record
    and what its forward keeps: (p, bias, rec, lse, y, scan, dy, ref), ref = dproj at rec."""
    g = torch.Generator(device=dev).manual_seed(T)
    p = torch.randn(B, T, mod.IN_FEATURES, device=dev, dtype=dt, generator=g)
    bias = torch.randn(mod.D, device=dev, generator=g)
    rec = mod._launch_config(p.clone().requires_grad_(), mode="train")
    lse = torch.empty(B, mod.H, T, device=dev)
    y, scan = mod.rat_fwd(p, bias, lse=lse, config=rec, mode="train", keep=True)
    dy = torch.randn(y.shape, device=dev, dtype=y.dtype, generator=g)
    ref = mod.rat_bwd(p, bias, y, lse, dy, config=rec, mode="train", scan=scan)[0]
    return p, bias, rec, lse, y, scan, dy, ref


def kernel_ms(fn, dry=False, reps=5):
    """{kernel name: ms per call of fn} (two warm-up calls, then `reps` profiled); dry: call fn
    once, no timing ({})."""
    if dry:
        fn()
        return {}
    from torch.profiler import ProfilerActivity, profile
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / 1e3 / reps for e in prof.key_averages()}


def rel(x, ref):
    """||x - ref|| / ||ref|| in fp32."""
    x, ref = x.float(), ref.float()
    return ((x - ref).norm() / ref.norm()).item()
