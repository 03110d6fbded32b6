"""Session 13: one train forward and backward of the RAT layer's kernel module at a size, for
Nsight Compute to profile the attention kernels (pipe utilisation, shared memory, stalls).

    ncu --clock-control none -k regex:"rat_attn_(fwd|bwd_dq|bwd_dkv)_kernel" -c 4 \
        --section SpeedOfLight --section ComputeWorkloadAnalysis ... \
        python3 docs/diag_session13/ncu_attn.py MODULE [--seq 131072 --batch 2]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diag_session10"))
from _common import load, train_inputs  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("module")
ap.add_argument("--seq", type=int, default=131072)
ap.add_argument("--batch", type=int, default=2)
a = ap.parse_args()
mod = load(a.module)
train_inputs(mod, a.seq, a.batch, "cuda", torch.bfloat16)
torch.cuda.synchronize()
print("done", torch.cuda.get_device_name())
