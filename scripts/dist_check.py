"""DDP and FSDP2 train a generated Model as one GPU does: NCCL, bf16 autocast, fp32 parameters.

    torchrun --nproc_per_node 2 scripts/dist_check.py                       # builds the spec
    torchrun --nproc_per_node 2 scripts/dist_check.py --package generated/small_rat_swa

Every rank first trains the model alone on the whole batch (the reference), then under DDP and
under FSDP2 (fully_shard per block, then the root) on its share of the batch, same seed and
batches. Per mode it prints the worst relative loss difference from the reference, the worst
relative parameter difference (per tensor, Frobenius norms) and whether every rank ends with the
same parameters, then PASS or FAIL; the exit status is 1 if any mode fails. --compile runs each
model through torch.compile (inductor) as well.
"""

import argparse
import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

ROOT = Path(__file__).resolve().parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default=str(ROOT / "specs/small_rat_swa.yaml"),
                   help="spec to build into a temporary folder (needs ratc importable)")
    p.add_argument("--package", help="an already built package folder instead of --spec")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=8, help="global batch, split over the ranks")
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--loss-tol", type=float, default=1e-2, help="relative, per step")
    p.add_argument("--param-tol", type=float, default=5e-2, help="relative norm, per tensor")
    p.add_argument("--compile", action="store_true", help="torch.compile every model")
    p.add_argument("--cpu", action="store_true",
                   help="dry run on a CPU machine: gloo, fp32, the package's PyTorch path")
    return p.parse_args()


def import_package(folder):
    """Import a built package from its folder (as ratc.build.import_built, without ratc)."""
    folder = Path(folder).resolve()
    name = f"dist_check_{folder.name}_{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def package_folder(args, rank):
    """args.package, or a fresh build of args.spec by rank 0 into a temporary folder."""
    if args.package:
        return args.package
    folder = [None]
    if rank == 0:
        sys.path.insert(0, str(ROOT))
        from ratc.build import build

        folder[0] = str(build(args.spec, tempfile.mkdtemp(prefix="dist_check_")).out_dir)
    dist.broadcast_object_list(folder, src=0)  # one host: the folder is every rank's
    return folder[0]


def batches(args, vocab, device):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocab, (args.batch, args.seq + 1), generator=g).to(device)
            for _ in range(args.steps)]


def train(model, forward, data, rows, lr, autocast=True):
    """AdamW steps on rows of each batch; per step the loss averaged over the ranks (equal shares,
    so the whole batch's mean) when the model is distributed, else this process's."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    losses = []
    for ids in data:
        ids = ids[rows]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = forward(ids[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = loss.detach()
        if rows != slice(None):
            dist.all_reduce(loss, op=dist.ReduceOp.AVG)
        losses.append(loss.item())
    return losses


def full_params(model):
    """{name: full fp32 tensor}; FSDP2's sharded DTensors are gathered."""
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().float()
            for n, p in model.named_parameters()}


def digest(params):
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(params[name].cpu().numpy().tobytes())
    return h.hexdigest()


def check(mode, losses, params, ref_losses, ref_params, seconds, args):
    loss_err = max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses))
    param_err, worst = max(
        (((params[n] - ref).norm() / ref.norm().clamp_min(1e-12)).item(), n)
        for n, ref in ref_params.items())
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest(params))
    in_sync = len(set(digests)) == 1
    ok = loss_err <= args.loss_tol and param_err <= args.param_tol and in_sync
    return dict(mode=mode, loss_err=loss_err, param_err=param_err, worst=worst, in_sync=in_sync,
                seconds=seconds, ok=ok, losses=losses)


def main():
    args = parse_args()
    dist.init_process_group("gloo" if args.cpu else "nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    if args.cpu:
        device = torch.device("cpu")
    else:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} does not split over {world} ranks")
    pkg = import_package(package_folder(args, rank))
    data = batches(args, pkg.SPEC["vocab_size"], device)
    rows = slice(rank * args.batch // world, (rank + 1) * args.batch // world)

    def make_model():
        torch.manual_seed(0)
        return pkg.Model(device=device, dtype=torch.float32)

    def compiled(module):
        return torch.compile(module) if args.compile else module

    t0 = time.perf_counter()
    model = make_model()
    ref_losses = train(model, compiled(model), data, slice(None), args.lr, not args.cpu)
    ref_params, ref_seconds = full_params(model), time.perf_counter() - t0
    del model

    results = []
    t0 = time.perf_counter()
    model = make_model()
    ddp = DistributedDataParallel(model, device_ids=None if args.cpu else [local])
    losses = train(model, compiled(ddp), data, rows, args.lr, not args.cpu)
    results.append(check("ddp", losses, full_params(model), ref_losses, ref_params,
                         time.perf_counter() - t0, args))
    del ddp, model

    t0 = time.perf_counter()
    model = make_model()
    for block in model.backbone.layers:
        fully_shard(block)
    fully_shard(model)
    losses = train(model, compiled(model), data, rows, args.lr, not args.cpu)
    results.append(check("fsdp2", losses, full_params(model), ref_losses, ref_params,
                         time.perf_counter() - t0, args))

    if rank == 0:
        where = "CPU" if args.cpu else torch.cuda.get_device_name(device)
        print(f"{pkg.SPEC['name']}: {world} x {where}, batch {args.batch} x {args.seq}, "
              f"{args.steps} AdamW steps, {'fp32' if args.cpu else 'bf16 autocast'}"
              f"{', torch.compile' if args.compile else ''}; one process took {ref_seconds:.1f} s")
        print(f"reference losses: {', '.join(f'{x:.4f}' for x in ref_losses)}")
        print(f"{'mode':<6} {'loss rel err':>12} {'param rel err':>13}  {'ranks in sync':<13} "
              f"{'time':>7}  result")
        for r in results:
            print(f"{r['mode']:<6} {r['loss_err']:>12.2e} {r['param_err']:>13.2e}  "
                  f"{'yes' if r['in_sync'] else 'NO':<13} {r['seconds']:>6.1f}s  "
                  f"{'PASS' if r['ok'] else 'FAIL'}")
            if not r["ok"]:
                print(f"  losses {', '.join(f'{x:.4f}' for x in r['losses'])}; worst parameter "
                      f"{r['worst']}")
    dist.destroy_process_group()
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
