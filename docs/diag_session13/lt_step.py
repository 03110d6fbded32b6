"""Session 13: the RAT block's residual add by cuBLASLt with C != D (lt.py) instead of the norm
writing a copy of h for addmm_ to add into. Not used by ratc.

    python3 docs/diag_session13/lt_step.py [--sizes 16384x16,131072x2] [--rounds 4]

1. lt.residual_linear against torch.addmm (bf16, fp16; the block's shapes and odd ones).
2. Alone: the out GEMM (addmm_ into r / Lt into a new tensor), the norm's forward with and
   without the copy.
3. The block's train step as `ratc bench --mode train` times it (grads None, fn(h).backward(dy),
   do_bench median), built (A) and with the Lt form (B, forward patched): the norm returns h
   itself as r (an alias: its gradient still reaches the norm's backward launch, which adds it
   into dx), and the out GEMM reads r as C and writes a new tensor. Rounds alternate A and B;
   out and every gradient of B against A.
"""
import argparse
import statistics
import sys
from pathlib import Path

import torch
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lt import CublasLt  # noqa: E402

import generated.rat_swa as pkg  # noqa: E402
from generated.rat_swa.kernels import rms_norm as rn  # noqa: E402
from generated.rat_swa.kernels import rat_rat  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="16384x16,131072x2")
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--rep", type=int, default=1000)
a = ap.parse_args()
print(torch.cuda.get_device_name(), flush=True)
lt = CublasLt()


def rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm()).item()


# 1. correctness
for M, N, K in ((262144, 2048, 2048), (77, 256, 96), (4096, 2048, 8192)):
    for dt in (torch.bfloat16, torch.float16):
        g = torch.Generator(device="cuda").manual_seed(M)
        r = torch.randn(M, N, device="cuda", dtype=dt, generator=g)
        y = torch.randn(M, K, device="cuda", dtype=dt, generator=g)
        w = torch.randn(N, K, device="cuda", dtype=dt, generator=g) / K ** 0.5
        ref = torch.addmm(r, y, w.t())
        out = lt.residual_linear(r, y, w)
        r64 = r.double() + y.double() @ w.double().t()
        print(f"Lt {M}x{N}x{K} {dt}: against addmm {rel(out, ref):.1e}, against float64 "
              f"{rel(out, r64):.1e} (addmm's {rel(ref, r64):.1e})", flush=True)

# 2. alone, at the bench's token count
M, D = 262144, 2048
h = torch.randn(M, D, device="cuda", dtype=torch.bfloat16)
y = torch.randn(M, D, device="cuda", dtype=torch.bfloat16)
w = torch.randn(D, D, device="cuda", dtype=torch.bfloat16) / D ** 0.5
nw = torch.ones(D, device="cuda", dtype=torch.bfloat16)
r = h.clone()
t = {
    "addmm_ into r": do_bench(lambda: r.addmm_(y, w.t()), rep=300),
    "Lt, C = h, D new": do_bench(lambda: lt.residual_linear(h, y, w), rep=300),
    "norm fwd with the copy": do_bench(lambda: rn.rms_norm_fwd(h, nw, 1e-6, residual=True), rep=300),
    "norm fwd without": do_bench(lambda: rn.rms_norm_fwd(h, nw, 1e-6), rep=300),
}
for k, v in t.items():
    print(f"alone: {k}: {v:.3f} ms", flush=True)
del h, y, r


# 3. the block's train step
class NormAlias(torch.autograd.Function):
    """(rms_norm(x), x itself): the gradient of the second output is the norm backward's dr."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        y, rstd, _ = rn.rms_norm_fwd(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y, x.view_as(x)

    @staticmethod
    def backward(ctx, dy, dr):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = rn.rms_norm_bwd(x, weight, rstd, dy, dr=dr)
        return dx, dw.to(weight.dtype), None


class ResidualLt(torch.autograd.Function):
    """r + y w^T by cuBLASLt (C = r, D new)."""

    @staticmethod
    def forward(ctx, r, y, w):
        ctx.save_for_backward(y, w)
        return lt.residual_linear(r, y, w)

    @staticmethod
    def backward(ctx, g):
        y, w = ctx.saved_tensors
        return g, g @ w, g.t() @ y


def forward_lt(self, h):
    x, r = NormAlias.apply(h, self.input_norm.weight, self.input_norm.eps)
    y = rat_rat.core(self.in_proj(x), self.gate_bias)
    y2 = y.reshape(-1, y.shape[-1])
    return ResidualLt.apply(r.reshape(-1, r.shape[-1]), y2, self.out_proj.weight).view(h.shape)


for size in a.sizes.split(","):
    T, B = map(int, size.split("x"))
    torch.manual_seed(0)
    layer = pkg.MIXERS["rat"](device="cuda", dtype=torch.bfloat16)
    h = torch.randn(B, T, layer.d_model, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn_like(h)
    params = [h, *layer.parameters()]
    fns = {"A built": layer.forward, "B Lt": lambda x: forward_lt(layer, x)}

    def step(fn):
        for p in params:
            p.grad = None
        fn(h).backward(dy)

    res = {}
    for name, fn in fns.items():
        step(fn)
        res[name] = (fn(h).detach(), [p.grad.clone() for p in params])
    (oa, ga), (ob, gb) = res["A built"], res["B Lt"]
    print(f"T={T} B={B}: B against A: out {rel(ob, oa):.1e}, grads "
          + " ".join(f"{rel(x, r):.1e}" for x, r in zip(gb, ga)), flush=True)
    del res, oa, ob, ga, gb
    times = {n: [] for n in fns}
    for i in range(a.rounds):
        for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
            ms = do_bench(lambda: step(fns[name]), warmup=25, rep=a.rep, return_mode="median")
            times[name].append(ms)
            print(f"T={T} B={B} round {i} {name}: {ms:.2f} ms", flush=True)
    for name, ts in times.items():
        print(f"T={T} B={B} median {name}: {statistics.median(ts):.2f} ms", flush=True)
    del layer, h, dy, params
    torch.cuda.empty_cache()
