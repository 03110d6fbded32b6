"""Train one spec twice from the same initial weights: the generated package (Triton kernels on
CUDA) and ratc's reference modules (plain PyTorch), and save both runs as JSON.

    python scripts/compare_reference.py specs/small_rat_swa.yaml --steps 300 --out runs/

Both run in float32 (bf16 autocast with --amp) with the same batches; the curves should lie on
top of each other up to the kernels' rounding (issue: end to end). Progress prints at every
validation.
"""

import argparse
from pathlib import Path

import torch

from ratc.lower import lower
from ratc.spec import load_spec
from ratc.train import TrainConfig, load_corpus, make_model, save_run, train


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="runs")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for both (default: fp32)")
    args = ap.parse_args()
    ir = lower(load_spec(args.spec))
    cfg = TrainConfig(steps=args.steps, batch=args.batch, seq=args.seq, device=args.device,
                      eval_every=max(args.steps // 6, 1), warmup=min(100, args.steps // 10),
                      amp=args.amp)
    corpus = load_corpus()
    torch.manual_seed(0)
    reference = make_model(ir, reference=True, device=args.device, dtype=torch.float32)
    generated = make_model(ir, reference=False, device=args.device, dtype=torch.float32)
    generated.load_state_dict(reference.state_dict())
    for model, is_reference in ((generated, False), (reference, True)):
        tag = "reference" if is_reference else "generated"

        def progress(step, result):
            if result.val and result.val[-1][0] == step:
                print(f"{tag} step {step}: loss {result.losses[-1]:.4f}, val {result.val[-1][1]:.4f}",
                      flush=True)

        result = train(ir, cfg, model=model, corpus=corpus, progress=progress)
        name = f"{ir.name}.{tag}.json"
        save_run(Path(args.out) / name, ir, cfg, result, is_reference)
        print(f"{name}: final loss {result.losses[-1]:.4f}, val {result.val[-1][1]:.4f}, "
              f"{result.tokens_per_s:,.0f} tokens/s")


if __name__ == "__main__":
    main()
