"""Session 13: the command line and GPU comparison the Gluon prototypes share.

script_args() parses `MODULE | --compile [--configs ...] [--sizes ...]` and, with --compile,
installs scripts/compile_check.py's stand-in driver (sm_90), so kernels compile on a CPU
machine; forward_case() and triton_forward() give a generated RAT kernel module's kept scan
outputs and its Triton forward attention launch (the fixed-reference one, train record);
run_variant() checks and times one prototype configuration against it."""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diag_session10"))
from _common import load, rel  # noqa: E402  (also imported from here by the scripts)


def script_args(config_help):
    ap = argparse.ArgumentParser()
    ap.add_argument("module", nargs="?")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--configs", default=None, help=f"{config_help};... (default: CONFIGS)")
    ap.add_argument("--sizes", default="16384x16,131072x2", help="TxB,... (GPU)")
    a = ap.parse_args()
    if not a.compile and not a.module:
        ap.error("give --compile (CPU) or a generated RAT kernel module to compare with (GPU)")
    if a.compile:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
        from compile_check import CompileOnlyDriver
        from triton.runtime import driver
        driver.set_active(CompileOnlyDriver(90))
    return a


def compile_layer():
    """For --compile: a stand-in for a RAT kernel module (4 heads of 128, 2 groups, chunks of 16)
    and CPU tensors of one forward at T = 4096 (only their shapes and dtypes matter):
    (mod, dict(proj, v, s, kc, vc, qh, kmax, y, lse))."""
    import types
    mod = types.SimpleNamespace(H=4, GROUPS=2, HEAD_DIM=128, CHUNK=16, BLOCK_D=128, OFF_Z=0,
                                IN_FEATURES=1024, SM_SCALE=128 ** -0.5, LOG2E=1.4426950408889634)
    B, T, BD, NCP = 1, 4096, 128, 4096 // 16
    bf = dict(dtype=torch.bfloat16)
    return mod, dict(proj=torch.zeros(B, T, 1024, **bf), v=torch.zeros(B, T, 512, **bf),
                     s=torch.zeros(B, 4, T), kc=torch.zeros(B * 4 * NCP, BD, **bf),
                     vc=torch.zeros(B * 4 * NCP, BD, **bf), qh=torch.zeros(B, 2, T, BD, **bf),
                     kmax=torch.zeros(B * 4), y=torch.zeros(B, T, 512, **bf),
                     lse=torch.zeros(B, 4, T))


def configs(a, default):
    """--configs as tuples of ints, else `default`."""
    if not a.configs:
        return default
    return tuple(tuple(int(x) for x in c.split(",")) for c in a.configs.split(";"))


def sizes(a):
    return [tuple(map(int, s.split("x"))) for s in a.sizes.split(",")]


def forward_case(mod, T, B):
    """Random proj and gate bias at T x B (seeded by T), MODULE's train record, and the scan's
    kept outputs: dict(proj, bias, cfg, v, s, kc, vc, NCP, qh, kmax)."""
    g = torch.Generator(device="cuda").manual_seed(T)
    proj = torch.randn(B, T, mod.IN_FEATURES, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(mod.D, device="cuda", generator=g)
    cfg = mod._launch_config(proj.clone().requires_grad_(), mode="train")
    v = torch.empty(B, T, mod.D, device="cuda", dtype=torch.bfloat16)
    s, kc, vc, NCP, qh, kmax = mod._rat_scan(proj, bias, cfg, v, None, rows=mod.MAX_BC)
    return dict(proj=proj, bias=bias, cfg=cfg, v=v, s=s, kc=kc, vc=vc, NCP=NCP, qh=qh,
                kmax=kmax)


def triton_forward(mod, c):
    """A function launching MODULE's forward attention (FIXED, the record's shape) on case c,
    returning (y, lse, flag)."""
    import triton
    proj, cfg = c["proj"], c["cfg"]
    B, T, _ = proj.shape
    # FALLBACK_BLOCKS: a named constant the kernel takes since 6a24b52
    extra = {"FALLBACK_BLOCKS": mod.FALLBACK_BLOCKS} if hasattr(mod, "FALLBACK_BLOCKS") else {}

    def launch():
        y = torch.empty(B, T, mod.D, device="cuda", dtype=torch.bfloat16)
        lse = torch.empty(B, mod.H, T, device="cuda")
        flag = torch.empty(B * mod.H * triton.cdiv(T, cfg["BT"]), device="cuda",
                           dtype=torch.int8)
        desc_k, desc_v = mod._descriptors(c["kc"], c["vc"], cfg["BC"])
        mod.rat_attn_fwd_kernel[(triton.cdiv(T, cfg["BT"]), B * mod.H)](
            p_proj=proj, p_qh=c["qh"], p_v=c["v"], p_s=c["s"], desc_k=desc_k, desc_v=desc_v,
            p_y=y, p_lse=lse, p_kmax=c["kmax"], p_flag=flag, STORE_LSE=True, T=T,
            BH=B * mod.H, NCP=c["NCP"], **mod._strides_shape(proj),
            qk_scale=mod.SM_SCALE * mod.LOG2E, OFF_Z=mod.OFF_Z, OFF_Q=mod.OFF_Q,
            BLOCK_D=mod.BLOCK_D, BT=cfg["BT"], BC=cfg["BC"], PRECISION="tf32",
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], FIXED=True, **extra)
        return y, lse, flag
    return launch


def forward_reference(mod, T, B):
    """forward_case at T x B with MODULE's Triton forward attention run (must flag nothing) and
    timed: (case, y, lse, ms)."""
    c = forward_case(mod, T, B)
    cfg = c["cfg"]
    (y, lse, flag), ms = time_reference(
        f"T={T} B={B} Triton forward attention (record BT {cfg['BT']}, BC {cfg['BC']}, "
        f"{cfg['num_warps']} warps, {cfg['num_stages']} stages)", triton_forward(mod, c))
    assert int(flag.sum()) == 0, "random inputs flagged a block"
    return c, y, lse, ms


def forward_sweep(a, configs, flags, launch, label):
    """At each size, every config's forward against MODULE's Triton forward attention on the
    same scan outputs: launch(mod, case, y, lse, flag, config) writes y, lse and the flags
    (flags(mod, T, B, config) of them, zeroed); label(config) names the line."""
    mod = load(a.module)
    print(torch.cuda.get_device_name(), flush=True)
    for T, B in sizes(a):
        c, y0, l0, t_ref = forward_reference(mod, T, B)
        for cf in configs:
            y, lse = torch.empty_like(y0), torch.empty_like(l0)
            flag = torch.zeros(flags(mod, T, B, cf), device="cuda", dtype=torch.int8)

            def check(y=y, lse=lse, flag=flag):
                return (f"y rel. err {rel(y, y0):.1e}, lse max diff "
                        f"{(lse - l0).abs().max().item():.1e}, flags {int(flag.sum())}")
            run_variant(label(cf), lambda y=y, lse=lse, flag=flag, cf=cf: launch(
                mod, c, y, lse, flag, cf), check, t_ref)
        del c, y0, l0
        torch.cuda.empty_cache()


def time_reference(name, fn, rep=300):
    """Run fn once (its outputs are the reference), time it, print one line; returns (out, ms)."""
    from triton.testing import do_bench
    out = fn()
    ms = do_bench(fn, rep=rep)
    print(f"{name}: {ms:.3f} ms", flush=True)
    return out, ms


def run_variant(name, fn, check, t_ref, rep=300):
    """Run fn, then check() (-> text), time fn, print one line with the speed-up over t_ref;
    a failure prints instead of raising."""
    from triton.testing import do_bench
    try:
        fn()
        torch.cuda.synchronize()
        text = check()
        ms = do_bench(fn, rep=rep)
    except Exception as e:  # noqa: BLE001 - a configuration failing is a result
        print(f"  {name}: FAIL {type(e).__name__}: {str(e)[:200]}", flush=True)
        return
    print(f"  {name}: {ms:.3f} ms ({t_ref / ms:.3f}x), {text}", flush=True)
