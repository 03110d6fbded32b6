"""Session 7 diagnostic: the RAT train pieces one at a time, one GPU, do_bench medians (ms).

    python3 docs/diag_session7/diag_train.py NEW_MODULE OLD_MODULE [TxB ...]

- bwd: rat_bwd of both modules with the train record (NEW keeps its [B, T, D] intermediates in
  proj's dtype, OLD in fp32), with the relative difference of dproj and the top kernels;
- fwd: rat_fwd with lse (the train forward) at a few attention block shapes;
- dq: rat_bwd of NEW at a few dq block shapes.
"""
import importlib
import sys

import torch
from torch.profiler import ProfilerActivity, profile
from triton.testing import do_bench

new, old = (importlib.import_module(n) for n in sys.argv[1:3])
sizes = [(int(t), int(b)) for t, b in (s.split("x") for s in sys.argv[3:])] or \
    [(16384, 16), (131072, 2)]
FWD = [dict(BT=bt, BC=bc, num_warps=w, num_stages=s) for bt, bc, w, s in (
    (64, 64, 4, 3), (64, 128, 8, 3), (64, 128, 4, 3), (64, 64, 8, 3), (64, 64, 4, 2),
    (64, 32, 4, 3), (32, 128, 4, 3), (128, 64, 8, 3), (128, 64, 8, 2), (128, 128, 8, 2),
    (128, 32, 8, 3))]
DQ = [dict(DQ_BT=bt, DQ_BC=bc, dq_num_warps=w, dq_num_stages=s) for bt, bc, w, s in (
    (64, 64, 8, 3), (64, 128, 8, 3), (64, 128, 8, 2), (128, 64, 8, 3), (128, 128, 8, 2),
    (64, 64, 4, 3), (128, 32, 8, 3), (32, 128, 4, 3))]


def kernels(fn):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ev = sorted((e for e in prof.key_averages() if e.device_time_total > 0),
                key=lambda e: -e.device_time_total)
    return ", ".join(f"{e.key[:26]} {e.device_time_total / 1e3:.2f}" for e in ev[:6])


def bench(label, fn):
    try:
        ms = do_bench(fn, warmup=5, rep=200)
    except Exception as e:  # noqa: BLE001  (a config that does not compile: report, go on)
        print(f"  {label}: failed {type(e).__name__}: {str(e)[:160]}", flush=True)
        return None
    print(f"  {label:80s} {ms:8.3f} ms", flush=True)
    return ms


torch.manual_seed(0)
print(torch.cuda.get_device_name())
for T, B in sizes:
    proj = torch.randn(B, T, new.IN_FEATURES, device="cuda", dtype=torch.bfloat16)
    proj.requires_grad_()  # the train record
    bias = torch.randn(new.D, device="cuda", dtype=torch.float32)
    lse = torch.empty(B, new.H, T, device="cuda", dtype=torch.float32)
    with torch.no_grad():
        y = new.rat_fwd(proj, bias, lse=lse, mode="train")
    dy = torch.randn_like(y)
    p = proj.detach()
    cfg = new._launch_config(proj, mode="train")
    print(f"T={T} B={B} record: {cfg}", flush=True)
    ref = old.rat_bwd(p, bias, y, lse, dy, config=cfg)[0].float()
    for name, m in (("old", old), ("new", new)):
        run = lambda: m.rat_bwd(p, bias, y, lse, dy, config=cfg)
        err = ((run()[0].float() - ref).norm() / ref.norm()).item()
        bench(f"T={T} B={B} bwd {name} (rel diff to old {err:.1e}) [{kernels(run)}]", run)
    for over in FWD:
        c = dict(cfg, **over)
        bench(f"T={T} B={B} fwd {over}",
              lambda: new.rat_fwd(p, bias, lse=lse, config=c, mode="train"))
    for over in DQ:
        c = dict(cfg, **over)
        bench(f"T={T} B={B} bwd new {over}", lambda: new.rat_bwd(p, bias, y, lse, dy, config=c))
    del proj, p, y, dy, lse, ref
    torch.cuda.empty_cache()
