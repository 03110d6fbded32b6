"""Train a generated Model as a byte-level language model on the Python standard library's sources.

The corpus is on every machine: the `.py` files of the running Python's standard library, split
into training and validation by file (a stable hash of each path sends about 1 in 10 files to
validation), each file's bytes followed by a 0 byte. Batches are random windows of T + 1 bytes.

    ratc train specs/small_rat_swa.yaml --steps 2000 --batch 16 --seq 2048 --ckpt run/ckpt.pt
    ratc train specs/small_rat_swa.yaml --steps 4000 --ckpt run/ckpt.pt --resume   # continue

`train(...)` is the library entry point used by the command and the tests; `--reference` trains the
float64-capable reference modules (`ratc.reference.LM`) instead of the generated package.
"""

from __future__ import annotations

import json
import math
import sysconfig
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

VOCAB = 256  # bytes
SEPARATOR = 0  # between files
WARM_STEPS = 3  # first steps of a run left out of tokens/s (kernel compilation)


# -------------------------------------------------------------------------------------------------
# data


def stdlib_files(root: str | None = None) -> list[Path]:
    """Every .py file of the standard library (not site-packages), sorted for determinism."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    files = [p for p in base.rglob("*.py")
             if "site-packages" not in p.parts and "dist-packages" not in p.parts]
    return sorted(files, key=lambda p: str(p.relative_to(base)))


def is_validation(rel_path: str) -> bool:
    return zlib.crc32(rel_path.encode()) % 10 == 0


def load_corpus(root: str | None = None, max_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) uint8 tensors of concatenated file bytes."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    parts = {True: [], False: []}
    sizes = {True: 0, False: 0}
    for p in stdlib_files(root):
        val = is_validation(str(p.relative_to(base)))
        if max_bytes is not None and sizes[val] >= max_bytes:
            continue
        data = p.read_bytes() + bytes([SEPARATOR])
        parts[val].append(data)
        sizes[val] += len(data)
    if not parts[False] or not parts[True]:
        raise ValueError(f"no standard-library sources found under {base}")
    as_tensor = lambda chunks: torch.frombuffer(bytearray(b"".join(chunks)), dtype=torch.uint8)  # noqa: E731
    return as_tensor(parts[False]), as_tensor(parts[True])


def batch_of(data: torch.Tensor, batch: int, seq: int, gen: torch.Generator) -> torch.Tensor:
    """[batch, seq + 1] int64 windows starting at random offsets."""
    starts = torch.randint(0, data.numel() - seq - 1, (batch,), generator=gen)
    return torch.stack([data[s: s + seq + 1] for s in starts.tolist()]).long()


# -------------------------------------------------------------------------------------------------
# training


@dataclass
class TrainConfig:
    steps: int = 200
    schedule_steps: int | None = None  # length of the LR schedule (default: steps)
    batch: int = 8
    seq: int = 256
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.1
    eval_every: int = 50
    eval_batches: int = 4
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    ckpt: str | None = None
    resume: bool = False
    sample_tokens: int = 0
    max_corpus_bytes: int | None = None
    amp: bool = False  # bf16 autocast around forward and loss (fp32 weights and optimizer)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # training loss at every step
    val: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    tokens_per_s: float = 0.0  # training steps only (validation excluded)
    train_seconds: float = 0.0
    sample: bytes = b""
    model: torch.nn.Module | None = None


def make_model(ir, reference: bool, device: str, dtype: torch.dtype):
    """The generated package's Model (built into a temporary folder), or the reference LM."""
    if reference:
        from .reference import LM

        return LM(ir, device=device, dtype=dtype)
    from .build import import_built, write
    from .codegen.emit import emit

    folder = Path(tempfile.mkdtemp(prefix="ratc_train_")) / ir.name
    write(emit(ir), folder)
    return import_built(folder).Model(device=device, dtype=dtype)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    total = cfg.schedule_steps or cfg.steps
    frac = (step - cfg.warmup) / max(total - cfg.warmup, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def autocast(cfg: TrainConfig):
    """bf16 autocast when cfg.amp (on the config's device type), else a no-op context."""
    kind = torch.device(cfg.device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=cfg.amp)


def loss_of(model, xy, cfg: TrainConfig) -> torch.Tensor:
    with autocast(cfg):
        logits = model(xy[:, :-1])
    return F.cross_entropy(logits.float().reshape(-1, VOCAB), xy[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model, data, cfg: TrainConfig) -> float:
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # the same validation windows every time
    total = 0.0
    for _ in range(cfg.eval_batches):
        total += loss_of(model, batch_of(data, cfg.batch, cfg.seq, gen).to(cfg.device), cfg).item()
    return total / cfg.eval_batches


def train(ir, cfg: TrainConfig, reference: bool = False, model=None, progress=None,
          corpus=None) -> TrainResult:
    """Train and return the losses. `model` overrides the one built from `ir` (tests pass both
    implementations the same initial weights); `corpus` overrides the standard library."""
    if ir.vocab_size != VOCAB:
        raise ValueError(f"{ir.name}: a byte-level LM needs model.vocab_size = {VOCAB}, "
                         f"got {ir.vocab_size}")
    dtype = getattr(torch, cfg.dtype)
    torch.manual_seed(cfg.seed)
    model = model if model is not None else make_model(ir, reference, cfg.device, dtype)
    train_data, val_data = corpus if corpus is not None else load_corpus(
        max_bytes=cfg.max_corpus_bytes)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(cfg.seed)
    result, start = TrainResult(model=model), 0
    if cfg.resume:
        start = load_checkpoint(cfg.ckpt, ir, model, opt, gen, result)
    elapsed, tokens = 0.0, 0
    untimed = start + min(WARM_STEPS, cfg.steps - start - 1)  # compilation happens in these
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = loss_of(model, batch_of(train_data, cfg.batch, cfg.seq, gen).to(cfg.device), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        result.losses.append(loss.item())  # synchronises: the step's time is complete
        if step >= untimed:
            elapsed += time.perf_counter() - t0
            tokens += cfg.batch * cfg.seq
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            result.val.append((step + 1, evaluate(model, val_data, cfg)))
        if progress:
            progress(step + 1, result)
    result.tokens_per_s = tokens / max(elapsed, 1e-9)
    result.train_seconds = elapsed
    if cfg.ckpt:
        save_checkpoint(cfg.ckpt, ir, model, opt, gen, cfg.steps, result)
    if cfg.sample_tokens:
        prompt = torch.tensor([list(b"def ")], device=cfg.device)
        out = model.generate(prompt, cfg.sample_tokens, temperature=0.8, top_k=40,
                             generator=torch.Generator(device=cfg.device).manual_seed(cfg.seed))
        result.sample = b"def " + bytes(out[0].tolist())
    return result


def save_run(path, ir, cfg: TrainConfig, result: TrainResult, reference: bool) -> None:
    """The run as JSON: what was trained and how, every loss, tokens/s and the sample."""
    from dataclasses import asdict

    model = result.model
    record = {
        "spec": ir.name, "spec_sha256": ir.source_sha256,
        "implementation": "reference" if reference else "generated",
        "device": torch.cuda.get_device_name() if torch.device(cfg.device).type == "cuda" else "cpu",
        "parameters": sum(p.numel() for p in model.parameters()) if model is not None else None,
        "config": asdict(cfg), "tokens": cfg.steps * cfg.batch * cfg.seq,
        "losses": result.losses, "val": [list(v) for v in result.val],
        "val_bits_per_byte": [[s, v / math.log(2)] for s, v in result.val],
        "tokens_per_s": result.tokens_per_s, "train_seconds": result.train_seconds,
        "sample": result.sample.decode("utf-8", errors="replace"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")


def save_checkpoint(path, ir, model, opt, gen, step, result) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"spec_sha256": ir.source_sha256, "step": step, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "rng": gen.get_state(), "losses": result.losses,
                "val": result.val}, tmp)
    tmp.replace(path)  # a crash mid-save leaves the previous checkpoint


def load_checkpoint(path, ir, model, opt, gen, result) -> int:
    if not path or not Path(path).exists():
        raise ValueError(f"--resume: no checkpoint at {path}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if ck["spec_sha256"] != ir.source_sha256:
        raise ValueError(f"{path}: checkpoint was trained from a different spec "
                         f"(sha256 {ck['spec_sha256'][:12]}…, this spec {ir.source_sha256[:12]}…)")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    gen.set_state(ck["rng"])
    result.losses, result.val = list(ck["losses"]), [tuple(v) for v in ck["val"]]
    return ck["step"]
