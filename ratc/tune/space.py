"""Search spaces per mode, one per template, and static pruning.

A space is a comprehension over the launch parameters the template's launchers take (`CONFIG`'s
keys); `keep(config, mixer)` drops configs that cannot run before anything compiles (shared memory
over the limit, blocks the kernel's static asserts reject).

    prefill  forward_space: the forward launchers' keys
    train    forward_space, times backward_space where the backward reads keys of its own
             (attention's and RAT's BWD_*, bwd_num_*); the RNN's backward launchers read the
             forward keys, so its train space is the forward space (timed forward + backward)
    decode   decode_space: the step kernels' keys (DECODE_*: row block, warps, stages, split)

`key_groups` splits a space's keys by the launch that reads them, for `ratc tune --staged`.
"""

from __future__ import annotations

import itertools

from ..ir import LayerKind, MixerIR

SHARED_MEMORY_BYTES = 227 * 1024  # Hopper's per-block limit (232448 B); the strictest we target
ELEMENT_BYTES = 2  # bf16 operands
DECODE_SPLIT_ROWS = (0, 64, 128, 256, 512, 1024)  # cached rows per split-K program; 0 = auto


def _pow2_ceil(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def forward_space(m: MixerIR) -> list[dict]:
    """Every candidate launch config of mixer m's forward kernels, pruned by `keep`."""
    if m.kind is LayerKind.RAT:
        space = [
            dict(SCAN_BK=bk, SCAN_WARPS=sw, BT=bt, BC=bc, num_warps=w, num_stages=s, WS=0,
                 WS_KS=2, WS_VS=3)
            for bk, sw, bt, bc, w, s in itertools.product(
                (8, 16, 32), (2, 4), (32, 64, 128), (32, 64, 128), (4, 8), (2, 3, 4))
        ]
        # the warp-specialised forward (Hopper, bf16; elsewhere these launch the Triton kernel):
        # 128 queries a program, BC keys a block through its key and value stages; the FALLBACK
        # launch for flagged rows runs at BT = 64 with 4 warps and 2 stages
        space += [
            dict(SCAN_BK=bk, SCAN_WARPS=sw, BT=64, BC=bc, num_warps=4, num_stages=2, WS=1,
                 WS_KS=ks, WS_VS=vs)
            for bk, sw, bc, ks, vs in itertools.product(
                (8, 16, 32), (2, 4), (64, 128), (2, 3), (2, 3, 4))
        ]
    elif m.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        space = [
            dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s, TMA=tma)
            for bm, bn, w, s, tma in itertools.product(
                (64, 128), (32, 64, 128), (4, 8), (2, 3), (True, False))
        ]
    else:
        space = [
            dict(BT=bt, BS=bs, BD=bd, num_warps=w, CARRY_BD=cbd)
            for bt, bs, bd, w, cbd in itertools.product(
                (256, 512, 1024, 2048), (4, 8, 16), (128, 256, 512), (1, 2, 4), (128, 256))
        ]
    return [c for c in space if keep(c, m)]


def backward_space(m: MixerIR) -> list[dict]:
    """Keys only the backward launchers read (attention, RAT); [{}] where the backward shares
    the forward's keys."""
    if m.kind is LayerKind.RAT:  # dK/dV's keys, then dq's, then the scan backward's
        blocks = list(itertools.product((64, 128), (32, 64, 128), (4, 8), (2, 3)))
        # the Triton kernels' shapes (the WS keys at their defaults), then the warp-specialised
        # kernels' (Hopper, bf16; elsewhere they launch the Triton kernels at the other keys)
        dkv = [dict(BWD_BT=bt, BWD_BC=bc, bwd_num_warps=w, bwd_num_stages=s, BWD_WS=0,
                    BWD_WS_BT=64, BWD_WS_QS=3) for bt, bc, w, s in blocks]
        dkv += [dict(BWD_BT=64, BWD_BC=128, bwd_num_warps=8, bwd_num_stages=3, BWD_WS=1,
                     BWD_WS_BT=bt, BWD_WS_QS=qs)
                for bt, qs in itertools.product((32, 64), (2, 3, 4))]
        dq = [dict(DQ_BT=qt, DQ_BC=qc, dq_num_warps=qw, dq_num_stages=qs, DQ_WS=0, DQ_WS_KS=2,
                   DQ_WS_VS=2) for qt, qc, qw, qs in blocks]
        dq += [dict(DQ_BT=64, DQ_BC=qc, dq_num_warps=8, dq_num_stages=2, DQ_WS=1, DQ_WS_KS=ks,
                    DQ_WS_VS=vs) for qc, ks, vs in itertools.product((64, 128), (2, 3), (2, 3))]
        # the scan backward: chunks a program, warps, and stages of its token loop's loads
        return [k | q | dict(BWD_SCAN_BK=sk, bwd_scan_num_warps=sw, bwd_scan_num_stages=ss)
                for k, q, sk, sw, ss in itertools.product(dkv, dq, (1, 2, 4), (1, 2, 4),
                                                          (1, 2, 3))]
    if m.kind not in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        return [{}]
    return [
        dict(BWD_BLOCK_M1=m1, BWD_BLOCK_N1=n1, BWD_BLOCK_M2=m2, BWD_BLOCK_N2=n2,
             bwd_num_warps=w, bwd_num_stages=s)
        for m1, n1, m2, n2, w, s in itertools.product(
            (16, 32, 64), (64, 128), (64, 128), (16, 32, 64), (4, 8), (1, 2, 3))
    ]


def decode_space(m: MixerIR) -> list[dict]:
    """Every candidate launch config of mixer m's decode step kernel, pruned by `keep`."""
    if m.kind is LayerKind.RNN:
        space = [dict(DECODE_BD=bd, DECODE_WARPS=w)
                 for bd, w in itertools.product((128, 256, 512, 1024, 2048), (1, 2, 4, 8))]
    else:  # split-K: SPLIT_ROWS 0 is the launcher's auto split (SPLIT_WAVES programs per SM)
        block = "DECODE_BC" if m.kind is LayerKind.RAT else "DECODE_BN"
        space = [{block: b, "DECODE_WARPS": w, "DECODE_STAGES": s, "DECODE_SPLIT_ROWS": r}
                 for b, w, s, r in itertools.product((16, 32, 64, 128), (2, 4, 8), (2, 3),
                                                     DECODE_SPLIT_ROWS)]
    return [c for c in space if keep(c, m)]


def space_of(m: MixerIR, mode: str) -> list[dict]:
    """The pruned search space of `mode` (prefill, train, decode) for mixer m."""
    if mode == "decode":
        return decode_space(m)
    fwd = forward_space(m)
    if mode == "train":
        # keep() of a train config is keep() of its forward part (forward_space applied it) and
        # its backward launches' shared memory and consumer registers (each a max over
        # launches): prune the backward part once, not each of the millions of pairs
        bwd = [b for b in backward_space(m) if _fits(b, m)]
        return [f | b for f in fwd for b in bwd]
    return fwd


def shared_memory_estimate(c: dict, m: MixerIR) -> int:
    """Bytes of shared memory the pipelined key/value tiles need (the dominant term)."""
    d = _pow2_ceil(m.head_dim)
    if any(k.startswith("DECODE") for k in c):
        # a partial program streams [B*, d] key and value rows, as if pipelined through shared
        # memory (the split does not change a program's tiles; the merge holds none).
        # An upper bound: Triton 3.6 keeps these tiles in registers (sm_90 compile: 2-4 KB of
        # reduction scratch), so it prunes nothing in decode_space
        rows = c.get("DECODE_BC", c.get("DECODE_BN", 0))
        return c.get("DECODE_STAGES", 1) * 2 * rows * d * ELEMENT_BYTES
    if "BWD_BLOCK_M1" in c:  # dK/dV: K, V tiles resident, q and do pipelined; dQ: the converse
        s = c["bwd_num_stages"]
        dkdv = (2 * c["BWD_BLOCK_N1"] + s * 2 * c["BWD_BLOCK_M1"]) * d * ELEMENT_BYTES
        dq = (2 * c["BWD_BLOCK_M2"] + s * 2 * c["BWD_BLOCK_N2"]) * d * ELEMENT_BYTES
        fwd = {k: v for k, v in c.items() if not k.upper().startswith("BWD")}
        return max(dkdv, dq, shared_memory_estimate(fwd, m) if fwd else 0)
    if "BWD_BT" in c:  # RAT: dK/dV holds K, V tiles and pipelines q^, do; dq pipelines K, V
        dkv = (2 * c["BWD_BC"] + c["bwd_num_stages"] * 2 * c["BWD_BT"]) * d * ELEMENT_BYTES
        if c.get("BWD_WS"):  # 128 keys of K~, V~ and the q^, do stages
            dkv = (2 * 128 + c["BWD_WS_QS"] * 2 * c["BWD_WS_BT"]) * d * ELEMENT_BYTES
        # counted like the forward (stages of K and V, one query tile): DQ_BC = 128 with 3 stages
        # at d = 128 ran on an H100 (the forward formula's 208 KiB)
        dq = (c["dq_num_stages"] * 2 * c["DQ_BC"] + c["DQ_BT"]) * d * ELEMENT_BYTES
        if c.get("DQ_WS"):  # 128 rows of q^ and of do, the key and value stages
            dq = (2 * 128 + (c["DQ_WS_KS"] + c["DQ_WS_VS"]) * c["DQ_BC"]) * d * ELEMENT_BYTES
        fwd = {k: v for k, v in c.items()
               if not k.upper().startswith(("BWD", "DQ"))}
        return max(dkv, dq, shared_memory_estimate(fwd, m) if fwd else 0)
    if m.kind is LayerKind.RAT:
        tiles = (c["num_stages"] * 2 * c["BC"] + c["BT"]) * d * ELEMENT_BYTES
        if c.get("WS"):  # its rings and 128 rows of q^ (the Triton kernel's: the FALLBACK's)
            return max(tiles, ((c["WS_KS"] + c["WS_VS"]) * c["BC"] + 128) * d * ELEMENT_BYTES)
        return tiles
    if m.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        return c["num_stages"] * 2 * c["BLOCK_N"] * d * ELEMENT_BYTES + c["BLOCK_M"] * d * ELEMENT_BYTES
    return 0


# the warp-specialised RAT kernels' consumers (a warpgroup, 64 rows, 240 registers a thread):
# what their accumulators and register operands take, 4-byte words a thread, must leave ptxas
# this much for addresses, masks and loop state; past it ptxas serialises every wgmma (C7512:
# dq with 128-key blocks at d = 128, 224 words, runs at half speed; scripts/compile_check.py
# fails on the note)
WS_CONSUMER_WORDS = 200


def ws_consumer_words(c: dict, d: int) -> int:
    """Words a thread of a warp-specialised consumer holds across its products (0 if none):
    the forward's O (64 x d fp32), S and P's bf16 operand; dq's dq, S, dP and dS's operand;
    dK/dV's dK, dV, S^T and dP^T (P^T's and dS^T's operands, half of S^T and dP^T, are
    never live with them: dV's and dK's products retire before the scores' are issued)."""
    words = [0]
    if c.get("WS"):
        words.append(d // 2 + c["BC"] // 2 + c["BC"] // 4)
    if c.get("DQ_WS"):
        words.append(d // 2 + c["DQ_BC"] + c["DQ_BC"] // 4)
    if c.get("BWD_WS"):
        words.append(d + c["BWD_WS_BT"])
    return max(words)


def _fits(c: dict, m: MixerIR) -> bool:
    """Within shared memory and the warp-specialised consumers' registers (both maxima over the
    launches, so a train config fits where its forward and backward parts each do)."""
    return (shared_memory_estimate(c, m) <= SHARED_MEMORY_BYTES
            and ws_consumer_words(c, _pow2_ceil(m.head_dim)) <= WS_CONSUMER_WORDS)


def keep(c: dict, m: MixerIR) -> bool:
    """False for configs that cannot run, or run serialised: over shared memory, shapes the
    kernels reject, warp-specialised consumers past their registers."""
    if not _fits(c, m):
        return False
    if any(k.startswith("DECODE") for k in c):
        if m.kind is LayerKind.RNN:  # one element per thread at least
            return c["DECODE_BD"] >= 32 * c["DECODE_WARPS"]
        # an explicit split is whole row blocks (the launcher would round it up: a duplicate)
        rows, block = c.get("DECODE_SPLIT_ROWS", 0), c.get("DECODE_BC", c.get("DECODE_BN", 1))
        return rows % block == 0
    if m.kind is LayerKind.RAT:
        return True
    if m.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        return not (c["BLOCK_M"] == 128 and c["num_warps"] == 4)  # spills (measured on H100)
    # the RNN scan tiles BT tokens by BS and spreads BD channels over the warps' threads
    return c["BT"] % c["BS"] == 0 and c["BD"] % (32 * c["num_warps"]) == 0


# the keys each launch reads alone, in the order a staged search takes them (ratc tune --staged):
# a launch's keys change only that launch's time, so each group can be searched with the others
# held (the RAT backward with RECOMPUTE_SCAN also runs the forward scan, at SCAN_*)
LAUNCH_KEYS = {
    LayerKind.RAT: (("BT", "BC", "num_warps", "num_stages", "WS", "WS_KS", "WS_VS"),
                    ("DQ_BT", "DQ_BC", "dq_num_warps", "dq_num_stages", "DQ_WS", "DQ_WS_KS",
                     "DQ_WS_VS"),
                    ("BWD_BT", "BWD_BC", "bwd_num_warps", "bwd_num_stages", "BWD_WS", "BWD_WS_BT",
                     "BWD_WS_QS"),
                    ("BWD_SCAN_BK", "bwd_scan_num_warps", "bwd_scan_num_stages"),
                    ("SCAN_BK", "SCAN_WARPS")),
    LayerKind.SLIDING_WINDOW: (("BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "TMA"),),
    LayerKind.ATTENTION: (("BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "TMA"),),
}


def key_groups(m: MixerIR, keys) -> list[tuple[str, ...]]:
    """The keys of a space (`keys`) in groups searched one at a time: LAUNCH_KEYS's groups, each
    cut to the keys present and dropped if none is, then every other key in one last group (the
    attention backward's, the RNN's, every decode space's). Every key lands in exactly one group."""
    keys = list(keys)
    groups = [tuple(k for k in g if k in keys) for g in LAUNCH_KEYS.get(m.kind, ())]
    groups = [g for g in groups if g]
    rest = tuple(k for k in keys if not any(k in g for g in groups))
    return groups + ([rest] if rest else [])
