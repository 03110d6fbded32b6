"""Session 10: does Gluon (triton.experimental.gluon, Triton 3.6) give Hopper's asynchronous
wgmma with explicit waits, and does it compile on a machine without a GPU?

    python3 docs/diag_session10/gluon_probe.py

Compiles (sm_90, scripts/compile_check.py's stand-in driver; nothing runs) a kernel that waits
for a first product, issues a second one asynchronously, runs exp2 on the first while the
second is in flight, then waits; prints the PTX's wgmma and ex2 instructions in order (runs of
one kind counted). Triton's tl.dot kernels here compile to `wgmma.wait_group 0` right after
each product (docs/performance.md, sessions 9 and 10).
"""
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from compile_check import CompileOnlyDriver
from triton.runtime import driver
driver.set_active(CompileOnlyDriver(90))

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from triton.experimental.gluon.language.nvidia.hopper import (
    tma, mbarrier, fence_async_shared, warpgroup_mma, warpgroup_mma_wait)


@gluon.jit
def two_dots(a_desc, b_desc, c_desc, num_warps: gl.constexpr):
    # s = a b^T, then p = exp2(s) kept while the second product runs in flight
    BM: gl.constexpr = a_desc.block_type.shape[0]
    BK: gl.constexpr = a_desc.block_type.shape[1]
    BN: gl.constexpr = b_desc.block_type.shape[0]
    bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    mbarrier.init(bar, count=1)
    a_s = gl.allocate_shared_memory(a_desc.dtype, a_desc.block_type.shape, a_desc.layout)
    b_s = gl.allocate_shared_memory(b_desc.dtype, b_desc.block_type.shape, b_desc.layout)
    mbarrier.expect(bar, a_desc.block_type.nbytes + b_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(a_desc, [0, 0], bar, a_s)
    tma.async_copy_global_to_shared(b_desc, [0, 0], bar, b_s)
    mbarrier.wait(bar, phase=0)
    mbarrier.invalidate(bar)
    layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                     instr_shape=[16, BN, 16])
    s = gl.zeros((BM, BN), dtype=gl.float32, layout=layout)
    s = warpgroup_mma(a_s, b_s.permute((1, 0)), s, use_acc=False, is_async=True)
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s, ))
    t = gl.zeros((BM, BN), dtype=gl.float32, layout=layout)
    t = warpgroup_mma(a_s, b_s.permute((1, 0)), t, use_acc=False, is_async=True)
    p = gl.exp2(s)  # while the second product runs
    t = warpgroup_mma_wait(num_outstanding=0, deps=(t, ))
    c_s = gl.allocate_shared_memory(c_desc.dtype, c_desc.block_type.shape, c_desc.layout)
    c_s.store(p + t)
    fence_async_shared()
    tma.async_copy_shared_to_global(c_desc, [0, 0], c_s)
    tma.store_wait(pendings=0)


A = torch.zeros(64, 128, dtype=torch.bfloat16)
B = torch.zeros(64, 128, dtype=torch.bfloat16)
C = torch.zeros(64, 64, dtype=torch.float32)
lay = lambda shape, dt: gl.NVMMASharedLayout.get_default_for(shape, dt)
a_d = TensorDescriptor(A, list(A.shape), list(A.stride()), [64, 128], lay([64, 128], gl.bfloat16))
b_d = TensorDescriptor(B, list(B.shape), list(B.stride()), [64, 128], lay([64, 128], gl.bfloat16))
c_d = TensorDescriptor(C, list(C.shape), list(C.stride()), [64, 64], lay([64, 64], gl.float32))
k = two_dots.warmup(a_d, b_d, c_d, num_warps=4, grid=(1,))
ptx = k.asm["ptx"]
ops = [line.split()[0] + (" " + line.split()[1] if "wait_group" in line else "")
       for line in map(str.strip, ptx.splitlines()) if line.startswith(("wgmma", "ex2"))]
print(" ".join(f"{op} x{len(list(run))}" for op, run in itertools.groupby(ops)))
