"""Session 9: text-edited variants of the generated RAT kernels (generated/rat_swa/kernels/
rat_rat.py), for sweep_rat.py and pipe_ptx.py. Each variant is a list of (old, new) edits.

"fwd pipelined": the forward's chunk loop issues the next block's scores q.K~^T before the
softmax of the current block, so the tensor cores can work on them while the softmax runs
(software pipelining by hand, FlashAttention-3's intra-warpgroup overlap). Each loop computes one
block of scores past its end and drops it.
"""

FWD_OLD = '''    for k0 in range(lo, hi, BC):
        b_kc = desc_k.load([row0 + k0, 0])  # [BC, BLOCK_D]
        b_sc = tl.dot(b_q, tl.trans(b_kc), input_precision=PRECISION)  # [BT, BC], unscaled
        if MASKED:'''
FWD_NEW = '''    b_kc = desc_k.load([row0 + lo, 0])  # [BC, BLOCK_D]
    b_sn = tl.dot(b_q, tl.trans(b_kc), input_precision=PRECISION)  # [BT, BC], unscaled
    for k0 in range(lo, hi, BC):
        b_sc = b_sn
        b_kn = desc_k.load([row0 + k0 + BC, 0])  # the next block (past hi: dropped)
        b_sn = tl.dot(b_q, tl.trans(b_kn), input_precision=PRECISION)
        if MASKED:'''

VARIANTS = {
    "as built": [],
    "fwd pipelined": [(FWD_OLD, FWD_NEW)],
}


def edited(src, name):
    """src with variant `name`'s edits applied (each must match exactly once)."""
    for old, new in VARIANTS[name]:
        assert src.count(old) == 1, (name, old)
        src = src.replace(old, new)
    return src
