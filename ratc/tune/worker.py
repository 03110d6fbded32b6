"""A tuning worker: joins one study through shared storage and runs trials until it is full.

    python -m ratc.tune.worker SPEC --layer NAME --seq T --batch B --trials N --storage URL
        [--chunk L] [--mode prefill|train|decode]

`ratc tune --gpus` starts one per GPU with CUDA_VISIBLE_DEVICES set; each asks the storage for
trials, so the study fills from all workers at once (Optuna's distributed mode).
"""

from __future__ import annotations

import argparse
import os

from ..lower import lower
from ..spec import load_spec
from .study import Target, replace_chunk, run_study


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m ratc.tune.worker", description=__doc__.splitlines()[0])
    p.add_argument("spec")
    p.add_argument("--layer", required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--trials", type=int, required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--mode", choices=("prefill", "train", "decode"), default="prefill")
    a = p.parse_args(argv)
    mixer = lower(load_spec(a.spec)).mixer(a.layer)
    if a.chunk is not None:
        mixer = replace_chunk(mixer, a.chunk)
    tag = f"worker-{os.getpid()}"
    run_study(Target(mixer, a.seq, a.batch, a.mode), a.storage, a.trials, a.timeout, worker=tag)


if __name__ == "__main__":
    main()
