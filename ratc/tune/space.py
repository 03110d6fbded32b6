"""Search spaces of the forward kernels, one per template, and static pruning.

A space is a comprehension over the launch parameters the template's launcher takes (`CONFIG`'s
keys); `keep(config, mixer)` drops configs that cannot run before anything compiles (shared memory
over the limit, blocks the kernel's static asserts reject).
"""

from __future__ import annotations

import itertools

from ..ir import LayerKind, MixerIR

SHARED_MEMORY_BYTES = 227 * 1024  # Hopper's per-block limit (232448 B); the strictest we target
ELEMENT_BYTES = 2  # bf16 operands


def _pow2_ceil(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def forward_space(m: MixerIR) -> list[dict]:
    """Every candidate launch config of mixer m's forward kernels, pruned by `keep`."""
    if m.kind is LayerKind.RAT:
        space = [
            dict(SCAN_BK=bk, SCAN_WARPS=sw, BT=bt, BC=bc, num_warps=w, num_stages=s)
            for bk, sw, bt, bc, w, s in itertools.product(
                (8, 16, 32), (2, 4), (32, 64, 128), (32, 64, 128), (4, 8), (2, 3, 4))
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


def shared_memory_estimate(c: dict, m: MixerIR) -> int:
    """Bytes of shared memory the pipelined key/value tiles need (the dominant term)."""
    d = _pow2_ceil(m.head_dim)
    if m.kind is LayerKind.RAT:
        return c["num_stages"] * 2 * c["BC"] * d * ELEMENT_BYTES + c["BT"] * d * ELEMENT_BYTES
    if m.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        return c["num_stages"] * 2 * c["BLOCK_N"] * d * ELEMENT_BYTES + c["BLOCK_M"] * d * ELEMENT_BYTES
    return 0


def keep(c: dict, m: MixerIR) -> bool:
    """False for configs that cannot run: over shared memory, or shapes the kernels reject."""
    if shared_memory_estimate(c, m) > SHARED_MEMORY_BYTES:
        return False
    if m.kind is LayerKind.RAT:
        return True
    if m.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
        return not (c["BLOCK_M"] == 128 and c["num_warps"] == 4)  # spills (measured on H100)
    # the RNN scan tiles BT tokens by BS and spreads BD channels over the warps' threads
    return c["BT"] % c["BS"] == 0 and c["BD"] % (32 * c["num_warps"]) == 0
