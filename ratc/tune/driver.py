"""`ratc tune`: studies for every (layer, chunk candidate, length), workers, records, the table.

One worker process per GPU (`--gpus`) runs `python -m ratc.tune.worker` on the same study
through the shared storage — Optuna's own distributed mode: each worker asks the storage for its
next trial and reports back; nothing here schedules trials.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..cost import T, mixer_cost
from ..ir import LayerKind, ModelIR
from .records import device_file_name, save_record
from .study import Target, device_name, replace_chunk, run_study, storage_url, summarize


def gpu_list(gpus: str | None) -> list[str]:
    """'all' or '0,1' -> visible device ids; [] for in-process tuning."""
    if not gpus:
        return []
    import torch

    n = torch.cuda.device_count()
    if n == 0:
        raise ValueError("--gpus: no CUDA GPU on this machine")
    ids = [str(i) for i in range(n)] if gpus == "all" else [g.strip() for g in gpus.split(",")]
    bad = [g for g in ids if not g.isdigit() or int(g) >= n]
    if bad:
        raise ValueError(f"--gpus: no GPU {', '.join(bad)} (this machine has {n})")
    return ids


def worker_command(spec_path: str, layer: str, chunk: int | None, seq: int, batch: int,
                   trials: int, timeout: float | None, storage: str) -> list[str]:
    cmd = [sys.executable, "-m", "ratc.tune.worker", spec_path, "--layer", layer, "--seq",
           str(seq), "--batch", str(batch), "--trials", str(trials), "--storage", storage]
    if chunk is not None:
        cmd += ["--chunk", str(chunk)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    return cmd


def run_workers(cmds_env: list[tuple[list[str], dict]]) -> None:
    procs = [subprocess.Popen(cmd, env=env) for cmd, env in cmds_env]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"tuning workers exited with {codes}")


def tune_spec(ir: ModelIR, layers: list[str], mode: str, seqs: list[int], batch: int,
              trials: int, timeout: float | None, storage: str | None, gpus: str | None,
              records_dir: str, console, spec_path: str | None = None) -> list[dict]:
    device = device_name()
    url = storage_url(device, storage)
    ids = gpu_list(gpus)
    records = Path(records_dir) / device_file_name(device)
    rows, t_start = [], time.perf_counter()
    for name in layers:
        base = ir.mixer(name)
        chunks = base.chunk_candidates if base.kind is LayerKind.RAT else (None,)
        for chunk in chunks:
            mixer = replace_chunk(base, chunk) if chunk is not None else base
            for seq in seqs:
                target = Target(mixer, seq, batch, mode)
                t0 = time.perf_counter()
                if ids:
                    path = spec_path or ir.name
                    run_workers([(worker_command(path, name, chunk, seq, batch, trials, timeout, url),
                                  {**os.environ, "CUDA_VISIBLE_DEVICES": g}) for g in ids])
                    import optuna

                    from .study import open_storage

                    study = optuna.load_study(study_name=target.study_name, storage=open_storage(url))
                else:
                    with Progress(TextColumn(f"{name} L={chunk} T={seq} B={batch}"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total} trials"),
                                  TimeElapsedColumn(), console=console) as bar:
                        task = bar.add_task("tune", total=trials)
                        study = run_study(target, url, trials, timeout, callbacks=[
                            lambda s, t: bar.update(task, completed=len(
                                [x for x in s.trials if x.state.is_finished()]))])
                s = summarize(study)
                s.update(layer=name, chunk=chunk, seq=seq, batch=batch,
                         wall_s=time.perf_counter() - t0, signature=target.signature,
                         bucket=target.bucket,
                         cache_bytes=int(mixer_cost(mixer).cache_bytes.subs(T, seq)))
                rows.append(s)
                import triton

                from .. import __version__

                save_record(records, device, target.signature, mixer.kind.value, mode,
                            target.bucket, {"config": s["config"], "ms": s["ms"],
                                            "default_ms": s["default_ms"], "trials": s["complete"],
                                            "chunk": chunk, "ratc_version": __version__,
                                            "triton_version": triton.__version__})
    print_table(rows, device, time.perf_counter() - t_start, records, console)
    return rows


def print_table(rows, device, wall, records, console) -> None:
    t = Table(title=f"ratc tune on {device} ({wall:.0f} s); records in {records}")
    for c in ("layer", "L", "T x B", "default ms", "best ms", "speed-up", "trials (ok/fail/pruned)",
              "cache bytes/seq", "best config"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["layer"], str(r["chunk"] or "-"), f"{r['seq']} x {r['batch']}",
                  f"{r['default_ms']:.3f}" if r["default_ms"] else "-", f"{r['ms']:.3f}",
                  f"{r['speedup']:.2f}x" if r["speedup"] else "-",
                  f"{r['complete']}/{r['failed']}/{r['pruned']}", f"{r['cache_bytes']:,}",
                  ", ".join(f"{k}={v}" for k, v in r["config"].items()))
    console.print(t)
