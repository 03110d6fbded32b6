"""Session 7 diagnostic: the RAT backward with dq^ by atomic adds in the dK/dV kernel
(DQ_ATOMIC=1) against the two-kernel backward, one GPU, do_bench medians (ms).

    python3 docs/diag_session7/diag_atomic.py generated.rat_swa.kernels.rat_rat
"""
import importlib
import sys

import torch
from torch.profiler import ProfilerActivity, profile
from triton.testing import do_bench

mod = importlib.import_module(sys.argv[1])
sizes = [(int(t), int(b)) for t, b in (s.split("x") for s in sys.argv[2:])] or \
    [(16384, 16), (131072, 2)]
VARIANTS = [
    {},  # the record (two kernels)
    {"DQ_ATOMIC": 1},
    {"DQ_ATOMIC": 1, "bwd_num_stages": 2},
    {"DQ_ATOMIC": 1, "BWD_BC": 64},
    {"DQ_ATOMIC": 1, "BWD_BC": 64, "bwd_num_stages": 2},
    {"DQ_ATOMIC": 1, "BWD_BT": 128, "BWD_BC": 64, "bwd_num_stages": 2},
    {"DQ_ATOMIC": 1, "BWD_BT": 32, "BWD_BC": 128},
    {"DQ_ATOMIC": 1, "BWD_BT": 32, "BWD_BC": 128, "bwd_num_warps": 4},
]


def kernels(fn):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ev = sorted((e for e in prof.key_averages() if e.device_time_total > 0),
                key=lambda e: -e.device_time_total)
    return ", ".join(f"{e.key[:28]} {e.device_time_total / 1e3:.2f}" for e in ev[:5])


torch.manual_seed(0)
print(torch.cuda.get_device_name())
for T, B in sizes:
    proj = torch.randn(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16)
    proj.requires_grad_()  # the train record
    bias = torch.randn(mod.D, device="cuda", dtype=torch.float32)
    lse = torch.empty(B, mod.H, T, device="cuda", dtype=torch.float32)
    with torch.no_grad():
        y = mod.rat_fwd(proj, bias, lse=lse, mode="train")
    dy = torch.randn_like(y)
    base = mod._launch_config(proj, mode="train")
    print(f"T={T} B={B} record: {base}", flush=True)
    ref = None
    for over in VARIANTS:
        cfg = dict(base, **over)
        run = lambda: mod.rat_bwd(proj.detach(), bias, y, lse, dy, config=cfg, mode="train")
        try:
            g = run()[0].float()
            if ref is None:
                ref = g
            err = ((g - ref).norm() / ref.norm()).item()
            ms = do_bench(run, warmup=5, rep=200)
            ks = kernels(run)
        except Exception as e:  # noqa: BLE001  (a config that does not compile: report, go on)
            print(f"  {over}: failed {type(e).__name__}: {str(e)[:160]}", flush=True)
            continue
        print(f"  T={T} B={B} {str(over):70s} {ms:8.2f} ms  rel diff {err:.1e}  [{ks}]",
              flush=True)
    del proj, y, dy, lse, ref
    torch.cuda.empty_cache()
