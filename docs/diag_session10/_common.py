"""Helpers of the session 10 diagnostics: a RAT kernel module loaded with text edits, kernel
times from torch.profiler, relative distance."""
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
