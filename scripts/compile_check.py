"""Compile every Triton kernel a generated package launches, for a GPU, on a machine without one.

    python3 scripts/compile_check.py generated.tiny_hybrid [--arch 90] [--seq 77] [--batch 2]

TRITON_INTERPRET=1 runs kernels as Python, so it misses what only the compiler rejects (a branch
that changes a variable's type, a layout the lowering cannot handle). Here the package's Triton
launchers run on CPU tensors while a stand-in driver answers for a CUDA device of compute
capability --arch, and each launch compiles its kernel (through ptxas, to a cubin) instead of
running it. Covered, in bf16 and fp32: every mixer's core_triton forward and backward (RAT's
forward, dq and dK/dV kernels also warp-specialised in Gluon, WS = DQ_WS = BWD_WS = 1, in
bf16), the RMSNorm forward and backward, and every decode module's prefill_cache and
step_triton (RAT's also from its fused projection). Prints one line per compiled kernel; exit
status 1 on the first failure. The outputs are garbage (nothing runs): this checks compilation
only.

    python3 scripts/compile_check.py generated.rat_swa --only rat_rat --dtypes bfloat16 \
        --ws-configs '[{"WS": 1, "BC": 128, "DQ_WS": 1, "BWD_WS": 1, "BWD_WS_BT": 64}]'

--ws-configs: the launch configs RAT's warp-specialised pass runs with (default: the one
above, at the template's other keys). ptxas -v reads every Gluon kernel's PTX once; its
performance notes (C75xx: "wgmma.mma_async instructions are serialized due to insufficient
register resources", ...) are printed as `ptxas` lines and fail the check, because a
serialised kernel computes the right thing at a fraction of its speed.
"""

import argparse
import importlib
import json
import pkgutil
import subprocess
import sys
import tempfile

import torch

DTYPES = (torch.bfloat16, torch.float32)
ARCH = [90]  # main's --arch
WS_CONFIGS = [{"WS": 1, "BC": 128, "DQ_WS": 1, "BWD_WS": 1}]  # main's --ws-configs


class CompileOnlyDriver:
    """What triton's JIT asks of the active driver, for a CUDA device that is not there."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")


def ptxas_verbose(ptx: str, arch: int) -> list[str]:
    """What ptxas -v prints on a kernel's PTX (registers, spills, performance notes), by line."""
    from triton.backends.nvidia.compiler import get_ptxas
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/k.ptx", "w") as f:
            f.write(ptx)
        out = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}a", f"{tmp}/k.ptx",
                              "-o", f"{tmp}/k.cubin"], capture_output=True, text=True)
    return [line.strip() for line in (out.stdout + out.stderr).splitlines()]


def ptxas_notes(ptx: str, arch: int) -> list[str]:
    """ptxas -v's performance notes (C75xx: wgmma serialised, ...) on a kernel's PTX."""
    return [line for line in ptxas_verbose(ptx, arch) if "(C75" in line]


def install(arch: int, compiled: list, notes: dict):
    """Make every JIT launch compile for `arch` and return without running; record (name, asm),
    and each Gluon kernel's ptxas notes in notes[(name, its cubin's hash)]."""
    from triton.runtime import driver
    from triton.runtime import jit

    driver.set_active(CompileOnlyDriver(arch))
    run = jit.JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        compiled.append((self.fn.__name__, sorted(kernel.asm)))
        if self.fn.__name__.endswith("_ws_kernel"):
            key = (self.fn.__name__, hash(kernel.asm["cubin"]))
            if key not in notes:
                notes[key] = ptxas_notes(kernel.asm["ptx"], arch)
        return kernel

    jit.JITFunction.run = compile_only


def check_mixer(mod, B, T, dtype):
    proj = torch.zeros(B, T, mod.IN_FEATURES, dtype=dtype, requires_grad=True)
    bias = torch.zeros(mod.D, requires_grad=True)
    y = mod.core_triton(proj, bias)
    y.backward(torch.zeros_like(y))
    if hasattr(mod, "_on_hopper") and ARCH[0] == 90:  # RAT: the WS kernels, as on Hopper
        mod._on_hopper = lambda t: True
        for config in WS_CONFIGS:
            y = mod.core_triton(proj, bias, config)
            y.backward(torch.zeros_like(y))


def check_rms_norm(mod, B, T, dtype):
    x = torch.zeros(B, T, 256, dtype=dtype, requires_grad=True)
    w = torch.ones(256, dtype=dtype, requires_grad=True)
    y = mod.rms_norm_triton(x, w, 1e-6)
    y.backward(torch.zeros_like(y))


def check_decode(mod, B, T, dtype):
    capacity = T + 8
    cache = mod.init_cache(B, capacity, device="cpu", dtype=dtype)
    bias = torch.zeros(mod.D)
    lengths = torch.full((B,), T, dtype=torch.long)
    mod.prefill_cache(cache, torch.zeros(B, T, mod.IN_FEATURES, dtype=dtype), bias, lengths)
    tensors = cache | mod.init_workspace(B, device="cpu")
    mod.step_triton(torch.zeros(B, mod.IN_FEATURES, dtype=dtype), bias, tensors, lengths)
    if hasattr(mod, "project"):  # RAT: the step from the fused norm + in_proj
        h = torch.zeros(B, mod.D, dtype=dtype)
        proj = mod.project(h, torch.ones(mod.D, dtype=dtype), 1e-6,
                           torch.zeros(mod.IN_FEATURES, mod.D, dtype=dtype))
        mod.step_triton(proj, bias, tensors, lengths, residual=h)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", help="a generated package, e.g. generated.tiny_hybrid")
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 [90]")
    ap.add_argument("--seq", type=int, default=77, help="tokens per row (ragged on purpose) [77]")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--only", help="one kernels module of the package, e.g. rat_rat")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--ws-configs", type=json.loads, default=WS_CONFIGS,
                    help="JSON list of RAT launch configs for the warp-specialised pass")
    a = ap.parse_args(argv)
    compiled, notes = [], {}
    ARCH[0] = a.arch
    WS_CONFIGS[:] = a.ws_configs
    install(a.arch, compiled, notes)
    kernels = importlib.import_module(f"{a.package}.kernels")
    names = sorted(info.name for info in pkgutil.iter_modules(kernels.__path__))
    if a.only:
        if a.only not in names:
            print(f"FAIL {a.package}.kernels has no module {a.only} (it has {', '.join(names)})")
            return 1
        names = [a.only]
    for name in names:
        mod = importlib.import_module(f"{a.package}.kernels.{name}")
        check = (check_rms_norm if name == "rms_norm" else
                 check_decode if name.startswith("decode_") else check_mixer)
        for dtype in (getattr(torch, t) for t in a.dtypes.split(",")):
            before = len(compiled)
            try:
                check(mod, a.batch, a.seq, dtype)
            except Exception as e:  # noqa: BLE001  (report which module and dtype, then stop)
                print(f"FAIL {a.package}.kernels.{name} {dtype}: {type(e).__name__}: {e}")
                return 1
            done = sorted({k for k, asm in compiled[before:] if "cubin" in asm})
            print(f"ok   {name} {str(dtype).removeprefix('torch.')}: {', '.join(done)}",
                  flush=True)
    serialised = [(kernel, line) for (kernel, _), lines in notes.items() for line in lines]
    for kernel, line in serialised:
        print(f"ptxas {kernel}: {line}")
    if serialised:
        print(f"FAIL ptxas notes on {len({k for k, _ in serialised})} Gluon kernel(s)")
        return 1
    print(f"{len(compiled)} kernel compilations for sm_{a.arch} ({len(notes)} Gluon, no ptxas "
          f"notes), none failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
