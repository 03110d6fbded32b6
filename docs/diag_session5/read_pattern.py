"""Session 5 diagnostic: does the RAT decode partial kernel's access pattern cost bandwidth?

The step reads chunk rows [B, R, D] of K~ and V~ (bf16, D = H*d = 2048). The partial kernel gives
each program one head's 256-byte slice of SPAN consecutive rows (rows 4 KB apart); a program could
instead read whole rows (all heads, 4 KB contiguous). Both are timed here as plain reductions over
the same 134 MB (B = 2, R = 8196), against a torch copy of the same bytes."""
import itertools

import torch
import triton
import triton.language as tl
from triton.testing import do_bench


@triton.jit
def per_head(p_k, p_v, p_out, R, SPAN, D: tl.constexpr, d: tl.constexpr, H: tl.constexpr,
             BC: tl.constexpr):
    i_bh, i_s = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_r = tl.arange(0, BC)
    o_c = i_h * d + tl.arange(0, d)
    base = i_b.to(tl.int64) * R * D
    acc = tl.zeros([d], dtype=tl.float32)
    r_hi = tl.minimum(i_s * SPAN + SPAN, R)
    for r0 in range(i_s * SPAN, r_hi, BC):
        o = (r0 + o_r)[:, None] * D + o_c[None, :]
        m = (r0 + o_r < r_hi)[:, None]
        k = tl.load(p_k + base + o, mask=m, other=0.0).to(tl.float32)
        v = tl.load(p_v + base + o, mask=m, other=0.0).to(tl.float32)
        acc += tl.sum(k + v, axis=0)
    tl.store(p_out + (i_bh * tl.num_programs(1) + i_s) * d + tl.arange(0, d), acc)


@triton.jit
def whole_rows(p_k, p_v, p_out, R, SPAN, D: tl.constexpr, BC: tl.constexpr):
    i_b, i_s = tl.program_id(0), tl.program_id(1)
    o_r = tl.arange(0, BC)
    o_c = tl.arange(0, D)
    base = i_b.to(tl.int64) * R * D
    acc = tl.zeros([D], dtype=tl.float32)
    r_hi = tl.minimum(i_s * SPAN + SPAN, R)
    for r0 in range(i_s * SPAN, r_hi, BC):
        o = (r0 + o_r)[:, None] * D + o_c[None, :]
        m = (r0 + o_r < r_hi)[:, None]
        k = tl.load(p_k + base + o, mask=m, other=0.0).to(tl.float32)
        v = tl.load(p_v + base + o, mask=m, other=0.0).to(tl.float32)
        acc += tl.sum(k + v, axis=0)
    tl.store(p_out + (i_b * tl.num_programs(1) + i_s) * D + o_c, acc)


def main():
    B, R, H, d = 2, 8196, 16, 128
    D = H * d
    k = torch.randn(B, R, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    out = torch.empty(B * H * 4096 * d, device="cuda")
    nbytes = 2 * k.numel() * 2
    kk = torch.empty_like(k)
    us = do_bench(lambda: kk.copy_(k), warmup=20, rep=200) * 1e3
    print(f"torch copy of K~ (read {k.numel()*2/1e6:.0f} MB + write): {us:.1f} us, "
          f"{2*k.numel()*2/us/1e6:.2f} TB/s (read+write)")
    us = do_bench(lambda: k.sum(), warmup=20, rep=200) * 1e3
    print(f"torch sum of K~ ({k.numel()*2/1e6:.0f} MB): {us:.1f} us, {k.numel()*2/us/1e6:.2f} TB/s")
    best = {}
    for span, BC, warps, stages in itertools.product((128, 256, 512), (16, 32, 64), (2, 4),
                                                     (1, 2, 3)):
        splits = -(-R // span)
        fn = lambda: per_head[(B * H, splits)](k, v, out, R, span, D=D, d=d, H=H, BC=BC,
                                              num_warps=warps, num_stages=stages)
        us = do_bench(fn, warmup=10, rep=100) * 1e3
        if "per_head" not in best or us < best["per_head"][0]:
            best["per_head"] = (us, (span, BC, warps, stages))
    for span, BC, warps, stages in itertools.product((16, 32, 64, 128), (2, 4, 8), (4, 8),
                                                     (1, 2, 3)):
        splits = -(-R // span)
        fn = lambda: whole_rows[(B, splits)](k, v, out, R, span, D=D, BC=BC,
                                            num_warps=warps, num_stages=stages)
        us = do_bench(fn, warmup=10, rep=100) * 1e3
        if "whole_rows" not in best or us < best["whole_rows"][0]:
            best["whole_rows"] = (us, (span, BC, warps, stages))
    for name, (us, cfg) in best.items():
        print(f"{name:10s} best {us:6.1f} us {nbytes/us/1e6:5.2f} TB/s  span,BC,warps,stages={cfg}")


if __name__ == "__main__":
    main()
