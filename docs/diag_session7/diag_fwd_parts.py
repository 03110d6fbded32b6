"""Session 7 diagnostic: where the RAT train forward's attention kernel spends its time at short
sequences. Variants of the generated module, made by replacing text in the attention kernel (the
results of most are wrong; only the kernel time counts), timed by torch.profiler (ms per call).

    python3 docs/diag_session7/diag_fwd_parts.py generated/rat_swa/kernels/rat_rat.py [TxB ...]
"""
import importlib.util
import sys
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

SRC = open(sys.argv[1]).read()
sizes = [(int(t), int(b)) for t, b in (s.split("x") for s in sys.argv[2:])] or \
    [(16384, 16), (131072, 2)]
ROPE = "b_cos, b_sin = _rope_cos_sin(o_ct, o_f, d, LOG2_BASE)"
VARIANTS = {
    "as built": [],
    "no RoPE on q (cos 1, sin 0)": [(ROPE, "b_cos, b_sin = o_f[None, :] * 0.0 + 1.0, "
                                           "o_ct[:, None] * 0.0")],
    "no masked loop": [("c_mid, c_end, qk_scale, BC, True", "c_mid, c_mid, qk_scale, BC, True")],
    "masked loop unmasked": [("c_mid, c_end, qk_scale, BC, True",
                              "c_mid, c_end, qk_scale, BC, False")],
    "no loops (prologue + epilogue)": [
        ("0, c_mid, qk_scale, BC, False", "0, 0, qk_scale, BC, False"),
        ("c_mid, c_end, qk_scale, BC, True", "c_mid, c_mid, qk_scale, BC, True")],
    "no loops, no RoPE": [
        (ROPE, "b_cos, b_sin = o_f[None, :] * 0.0 + 1.0, o_ct[:, None] * 0.0"),
        ("0, c_mid, qk_scale, BC, False", "0, 0, qk_scale, BC, False"),
        ("c_mid, c_end, qk_scale, BC, True", "c_mid, c_mid, qk_scale, BC, True")],
}


def load(name, edits):
    src = SRC
    for a, b in edits:
        assert a in src, a
        src = src.replace(a, b)
    f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    f.write(src)
    f.close()
    spec = importlib.util.spec_from_file_location(f"variant_{abs(hash(name))}", f.name)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def kernel_ms(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / 1e3 / reps for e in prof.key_averages()
            if e.device_time_total > 0}


mods = {name: load(name, edits) for name, edits in VARIANTS.items()}
print(torch.cuda.get_device_name())
for T, B in sizes:
    base = mods["as built"]
    proj = torch.randn(B, T, base.IN_FEATURES, device="cuda", dtype=torch.bfloat16)
    proj.requires_grad_()
    cfg = base._launch_config(proj, mode="train")
    p = proj.detach()
    bias = torch.randn(base.D, device="cuda", dtype=torch.float32)
    lse = torch.empty(B, base.H, T, device="cuda", dtype=torch.float32)
    print(f"T={T} B={B} forward config: { {k: cfg[k] for k in ('BT', 'BC', 'num_warps', 'num_stages')} }")
    for name, m in mods.items():
        ks = kernel_ms(lambda: m.rat_fwd(p, bias, lse=lse, config=cfg, mode="train"))
        print(f"  T={T} B={B} {name:34s} attention {ks.get('rat_attn_fwd_kernel', float('nan')):7.3f} ms"
              f"  scan {ks.get('rat_scan_fwd_kernel', float('nan')):6.3f} ms", flush=True)
    del proj, p, lse
    torch.cuda.empty_cache()
