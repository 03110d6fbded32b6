"""A generated Model trains under DDP and FSDP2 (fully_shard): two CPU processes on gloo, each with
half the batch, give the single-process losses on the whole batch and end with the same
parameters on both ranks.

The kernels run as the test session runs them (conftest: TRITON_INTERPRET=1 on a CPU machine, so
the Triton custom ops, in float32); a second case runs the emitted PyTorch path in float64, where
every difference is reduction order. scripts/dist_check.py is the same check on GPUs with NCCL.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ratc.build import import_built

SPEC = "generated/tiny_byte_rat_swa"  # RAT + sliding window, 2 layers, D = 32
WORLD = 2
BATCH, SEQ, STEPS = 2, 9, 2  # 9 tokens: two whole RAT chunks and a partial one
LR = 1e-2


def make_model(dtype):
    torch.manual_seed(0)
    return import_built(SPEC).Model(dtype=dtype)


def batches():
    g = torch.Generator().manual_seed(1)
    vocab = import_built(SPEC).SPEC["vocab_size"]
    return [torch.randint(0, vocab, (BATCH, SEQ + 1), generator=g) for _ in range(STEPS)]


def loss_of(model, ids):
    logits = model(ids[:, :-1])
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def train(model, rows):
    """STEPS AdamW steps on rows of each batch; the losses averaged over the ranks."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1)
    losses = []
    for ids in batches():
        loss = loss_of(model, ids[rows])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = loss.detach()
        if dist.is_initialized():  # equal shards: the mean of the means is the whole batch's
            dist.all_reduce(loss)
            loss /= dist.get_world_size()
        losses.append(loss.item())
    return losses


def full_state(model):
    """{name: full tensor}: FSDP2's sharded DTensors gathered, others as they are."""
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
            for n, p in model.named_parameters()}


def join_group(rank, init_file, interpret):
    """A spawned rank: the kernels' path (interpreter or PyTorch), one thread, the gloo group."""
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)


def worker(rank, init_file, out_dir, dtype, interpret):
    join_group(rank, init_file, interpret)
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    result = {}
    ddp = DistributedDataParallel(make_model(dtype))
    result["ddp"] = (train(ddp, rows), full_state(ddp.module))

    model = make_model(dtype)
    for block in model.backbone.layers:
        fully_shard(block)
    fully_shard(model)
    result["fsdp"] = (train(model, rows), full_state(model))
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("dtype, interpret, tol", [
    pytest.param(torch.float32, True, 1e-5, id="triton-interpreter-fp32"),
    pytest.param(torch.float64, False, 1e-10, id="pytorch-fp64"),
])
def test_ddp_and_fsdp2_match_one_process(tmp_path, monkeypatch, dtype, interpret, tol):
    if interpret and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the interpreter case is for CPU machines (conftest sets TRITON_INTERPRET)")
    if not interpret:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = make_model(dtype)
    ref_losses = train(model, slice(None))
    ref_state = full_state(model)

    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path), dtype, interpret),
             nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for mode in ("ddp", "fsdp"):
        losses, state = ranks[0][mode]
        assert losses == pytest.approx(ref_losses, rel=tol, abs=tol), (mode, losses, ref_losses)
        for name, ref in ref_state.items():
            for r in range(1, WORLD):  # in sync across ranks
                torch.testing.assert_close(ranks[r][mode][1][name], state[name], atol=0, rtol=0,
                                           msg=f"{mode}: {name} differs on rank {r}")
            torch.testing.assert_close(state[name], ref, atol=tol * 10, rtol=tol * 10,
                                       msg=lambda m: f"{mode}: {name} vs one process: {m}")


def compiled_ddp_worker(rank, init_file, out_dir):
    join_group(rank, init_file, interpret=True)
    from torch.nn.parallel import DistributedDataParallel

    # the tiny model in gradient buckets of about 17 KiB (its FFN weights are 16 KiB each), as a
    # real one is in DDP's 25 MB ones, so that torch.compile's DDPOptimizer splits the graph at
    # their boundaries, one of them inside a block (DDP and DDPOptimizer read this first-bucket
    # size when they start)
    dist._DEFAULT_FIRST_BUCKET_BYTES = 16 * 1024
    ddp = DistributedDataParallel(make_model(torch.float32), bucket_cap_mb=0.017)
    compiled = torch.compile(ddp, backend="aot_eager", dynamic=True)  # symbolic sizes
    # every rank the whole batch: a batch of one row would be specialised, not symbolic
    loss = loss_of(compiled, batches()[0])
    loss.backward()  # DDP averages the (equal) gradients over the ranks
    grads = {n: p.grad.detach().clone() for n, p in ddp.module.named_parameters()}
    torch.save((loss.detach(), grads), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_compiled_ddp_with_symbolic_sizes(tmp_path):
    """torch.compile of a DDP model (DDPOptimizer: one graph per gradient bucket) with symbolic
    sizes, as a second compile at another batch size gets them: every rank's loss and gradients
    as one process computes them eagerly. A block passing its input's torch.Size to its last op
    failed here: a Size crossing a split broke AOTAutograd ("output spec mismatch")."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the interpreter case is for CPU machines (conftest sets TRITON_INTERPRET)")
    model = make_model(torch.float32)
    want = loss_of(model, batches()[0])
    want.backward()
    mp.spawn(compiled_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD,
             join=True)
    for r in range(WORLD):
        loss, grads = torch.load(tmp_path / f"rank{r}.pt")
        torch.testing.assert_close(loss, want.detach(), rtol=1e-5, atol=1e-6)
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6,
                                       msg=lambda m: f"rank {r}: {name}: {m}")
