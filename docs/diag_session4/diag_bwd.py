"""Session 4 diagnostic: RAT backward variants and dq configs, one H100, do_bench medians (ms)."""
import importlib.util, sys, torch, triton
from triton.testing import do_bench

def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

here = sys.argv[1]
mods = {n: load(f"{here}/rat_{n}.py", f"rat_{n}") for n in ("old", "new", "allmask")}
torch.manual_seed(0)
for T, B in ((131072, 2), (16384, 16)):
    new = mods["new"]
    proj = torch.randn(B, T, new.IN_FEATURES, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(new.D, device="cuda", dtype=torch.bfloat16)
    lse = torch.empty(B, new.H, T, device="cuda", dtype=torch.float32)
    y = new.rat_fwd(proj, bias, lse=lse, mode="prefill")
    dy = torch.randn_like(y)
    base = {k: v for k, v in new.CONFIG.items()}
    ref = None
    for name, m in mods.items():
        cfg = {k: v for k, v in base.items() if k in m.CONFIG}
        g = m.rat_bwd(proj, bias, y, lse, dy, config=cfg)[0]
        if ref is None: ref = g
        err = ((g.float() - ref.float()).norm() / ref.float().norm()).item()
        ms = do_bench(lambda: m.rat_bwd(proj, bias, y, lse, dy, config=cfg), warmup=3, rep=300)
        print(f"T={T} B={B} variant {name:8s} default cfg: {ms:8.2f} ms  (rel diff vs new {err:.1e})", flush=True)
    for over in ({"BWD_BT": 128, "BWD_BC": 32, "bwd_num_stages": 3},
                 {"BWD_BC": 128}, {"BWD_BT": 32, "BWD_BC": 128, "bwd_num_warps": 4, "bwd_num_stages": 3},
                 {"BWD_BT": 64, "BWD_BC": 128, "bwd_num_stages": 3},
                 {"DQ_BT": 128, "DQ_BC": 64, "dq_num_stages": 3},
                 {"DQ_BT": 64, "DQ_BC": 64, "dq_num_stages": 3},
                 {"DQ_BT": 128, "DQ_BC": 128, "dq_num_stages": 2}):
        for name in ("old", "new"):
            m = mods[name]
            cfg = dict({k: v for k, v in base.items() if k in m.CONFIG}, **over)
            try:
                ms = do_bench(lambda: m.rat_bwd(proj, bias, y, lse, dy, config=cfg), warmup=3, rep=300)
            except Exception as e:  # noqa
                ms = float("nan"); print("  fail", type(e).__name__, str(e)[:100])
            print(f"T={T} B={B} variant {name:8s} {over}: {ms:8.2f} ms", flush=True)
    del proj, y, dy, lse, ref
    torch.cuda.empty_cache()
