"""Session 11: torch.compile of a DDP-wrapped generated Model (scripts/dist_check.py --compile
failed in AOTAutograd on 2 H100s: "output spec mismatch" in a DDPOptimizer submodule holding an
autograd.Function). One forward + backward per variant, each in a fresh process:

    torchrun --nproc_per_node N docs/diag_session11/ddp_compile.py [--package generated/small_rat_swa]
        [--backend inductor|aot_eager] [--autocast] [--no-optimize-ddp] [--cpu]

--no-optimize-ddp: torch._dynamo.config.optimize_ddp = False (one graph, no bucket splits).
--bare-first: compile and step the model without DDP first, as dist_check.py's reference does
(on the whole batch: the DDP step's half batch then compiles with a dynamic batch size).
--dynamic: torch.compile(..., dynamic=True) (symbolic sizes from the first compile on).
--cpu: gloo and TRITON_INTERPRET=1 (set it in the environment), fp32, tiny sequence.
"""
import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ratc.build import import_built  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--package", default="generated/small_rat_swa")
ap.add_argument("--backend", default="inductor")
ap.add_argument("--autocast", action="store_true")
ap.add_argument("--no-optimize-ddp", action="store_true")
ap.add_argument("--cpu", action="store_true")
ap.add_argument("--bare-first", action="store_true")
ap.add_argument("--dynamic", action="store_true")
a = ap.parse_args()
dist.init_process_group("gloo" if a.cpu else "nccl")
rank = dist.get_rank()
dev = torch.device("cpu") if a.cpu else torch.device("cuda", int(os.environ["LOCAL_RANK"]))
if not a.cpu:
    torch.cuda.set_device(dev)
if a.no_optimize_ddp:
    torch._dynamo.config.optimize_ddp = False
torch.manual_seed(0)
pkg = import_built(a.package)
model = pkg.Model(device=dev, dtype=torch.float32)
world = dist.get_world_size()  # the whole batch: 2 rows a rank (1 would be specialised)
ids = torch.randint(0, pkg.SPEC["vocab_size"], (2 * world, 10 if a.cpu else 257), device=dev)
tag = (f"{a.backend}, autocast {a.autocast}, optimize_ddp {not a.no_optimize_ddp}"
       f"{', bare model compiled first' if a.bare_first else ''}{', dynamic' if a.dynamic else ''}")


def steps(f, rows=slice(None)):
    for _ in range(2):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.autocast):
            out = f(ids[rows, :-1])
        out.float().square().mean().backward()


try:
    if a.bare_first:
        steps(torch.compile(model, backend=a.backend, dynamic=a.dynamic or None))
    steps(torch.compile(DistributedDataParallel(model, device_ids=None if a.cpu else [dev.index]),
                        backend=a.backend, dynamic=a.dynamic or None), slice(2 * rank, 2 * rank + 2))
    print(f"rank {rank}: {tag}: OK", flush=True)
except Exception as e:  # noqa: BLE001
    why = " ".join(line.strip() for line in str(e).splitlines()[:2])
    print(f"rank {rank}: {tag}: FAIL {type(e).__name__}: {why[:300]}", flush=True)
dist.destroy_process_group()
