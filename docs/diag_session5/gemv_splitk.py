"""Session 5 diagnostic: can a split-K Triton GEMV beat cuBLAS on in_proj in the decode step?

in_proj of the paper's RAT layer: x [2, 2048] (and [16, 2048]) times W [6656, 2048]^T, bf16. In the
step the weights come from DRAM (the cache stream has just swept L2), where cuBLAS reaches about
2.3 TB/s. Here each op runs after a 256 MB read (L2 full of clean lines, as after the cache stream)
in a CUDA graph of 10 such pairs, its time the pair's less the read's alone. The split-K kernels
write fp32 partial sums [SK, M, N] (a consumer would add them: the decode kernel could)."""
import itertools
import sys

import torch
import triton
import triton.language as tl
from triton.testing import do_bench


@triton.jit
def splitk_dot(p_x, p_w, p_part, M, N, K, KS, BM: tl.constexpr, BN: tl.constexpr,
               BK: tl.constexpr):
    i_n, i_k = tl.program_id(0), tl.program_id(1)
    o_m = tl.arange(0, BM)
    o_n = i_n * BN + tl.arange(0, BN)
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(i_k * KS, i_k * KS + KS, BK):
        o_k = k0 + tl.arange(0, BK)
        x = tl.load(p_x + o_m[:, None] * K + o_k[None, :], mask=(o_m < M)[:, None], other=0.0)
        w = tl.load(p_w + o_n[:, None].to(tl.int64) * K + o_k[None, :])
        acc = tl.dot(x, tl.trans(w), acc)
    tl.store(p_part + (i_k * M + o_m[:, None]) * N + o_n[None, :], acc, mask=(o_m < M)[:, None])


@triton.jit
def splitk_fma(p_x, p_w, p_part, M, N, K, KS, BM: tl.constexpr, BN: tl.constexpr,
               BK: tl.constexpr):
    i_n, i_k = tl.program_id(0), tl.program_id(1)
    o_m = tl.arange(0, BM)
    o_n = i_n * BN + tl.arange(0, BN)
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(i_k * KS, i_k * KS + KS, BK):
        o_k = k0 + tl.arange(0, BK)
        w = tl.load(p_w + o_n[:, None].to(tl.int64) * K + o_k[None, :]).to(tl.float32)
        x = tl.load(p_x + o_m[:, None] * K + o_k[None, :], mask=(o_m < M)[:, None],
                    other=0.0).to(tl.float32)
        acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
    tl.store(p_part + (i_k * M + o_m[:, None]) * N + o_n[None, :], acc, mask=(o_m < M)[:, None])


def timed(fn, flush, n=10):
    def graph(f):
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                f()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(n):
                f()
        return do_bench(g.replay, warmup=10, rep=150) * 1e3 / n
    return graph(lambda: (flush(), fn())) - graph(flush)


def main():
    torch.manual_seed(0)
    big = torch.randn(1 << 27, device="cuda", dtype=torch.bfloat16)  # 256 MB
    flush = lambda: big.sum(dtype=torch.float32)
    N, K = 6656, 2048
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02
    for M in (2, 16):
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        ref = x.float() @ w.float().T
        us = timed(lambda: torch.nn.functional.linear(x, w), flush)
        print(f"M={M} cuBLAS F.linear {us:6.2f} us {N*K*2/us/1e6:5.2f} TB/s", flush=True)
        best = []
        cands = [("dot", BN, SK, BK, wp, st) for BN, SK, BK, wp, st in itertools.product(
            (32, 64, 128), (2, 4, 8), (64, 128), (4,), (2, 4))]
        if M == 2:
            cands += [("fma", BN, SK, BK, wp, 1) for BN, SK, BK, wp in itertools.product(
                (8, 16, 32), (4, 8, 16), (128, 256), (2, 4))]
        for kind, BN, SK, BK, wp, st in cands:
            KS = K // SK
            if KS % BK:
                continue
            part = torch.empty(SK, M, N, device="cuda", dtype=torch.float32)
            BM = max(16, triton.next_power_of_2(M)) if kind == "dot" else triton.next_power_of_2(M)
            kern = splitk_dot if kind == "dot" else splitk_fma
            fn = lambda: kern[(N // BN, SK)](x, w, part, M, N, K, KS, BM=BM, BN=BN, BK=BK,
                                             num_warps=wp, num_stages=st)
            try:
                fn()
                torch.cuda.synchronize()
                err = ((part.sum(0) - ref).norm() / ref.norm()).item()
                if err > 1e-2:
                    print(f"  {kind} {BN} {SK} {BK} {wp} {st}: wrong ({err:.1e})")
                    continue
                us = timed(fn, flush)
            except Exception as e:  # noqa: BLE001
                print(f"  {kind} {BN} {SK} {BK} {wp} {st}: {type(e).__name__}")
                continue
            best.append((us, kind, BN, SK, BK, wp, st))
        best.sort()
        for us, *cfg in best[:5]:
            print(f"M={M} split-K {cfg} (kind, BN, SK, BK, warps, stages): {us:6.2f} us "
                  f"{N*K*2/us/1e6:5.2f} TB/s", flush=True)
    print(torch.cuda.get_device_name(), file=sys.stderr)


if __name__ == "__main__":
    main()
