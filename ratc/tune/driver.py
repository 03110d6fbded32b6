"""`ratc tune`: studies for every (layer, chunk candidate, length) of one mode, workers,
records, the tables, and (--sweep) the exhaustive comparison.

One worker process per GPU (`--gpus`) runs `python -m ratc.tune.worker` on the same study
through the shared storage — Optuna's own distributed mode: each worker asks the storage for its
next trial and reports back; nothing here schedules trials.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..cost import T, mixer_cost
from ..ir import LayerKind, ModelIR
from .records import device_file_name, load_records, save_record
from .study import (Target, device_name, replace_chunk, run_study, staged_search, storage_url,
                    study_best, study_trials, summarize, sweep, sweep_report)


def gpu_list(gpus: str | None) -> list[str]:
    """'all' or '0,1' (indices among the visible devices) -> the CUDA_VISIBLE_DEVICES value each
    worker gets (under CUDA_VISIBLE_DEVICES=2,3, index 1 is device 3); [] for in-process tuning."""
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
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        names = [v.strip() for v in visible.split(",")]
        return [names[int(g)] for g in ids]
    return ids


def worker_command(spec_path: str, layer: str, chunk: int | None, seq: int, batch: int,
                   trials: int, timeout: float | None, storage: str,
                   mode: str = "prefill") -> list[str]:
    cmd = [sys.executable, "-m", "ratc.tune.worker", spec_path, "--layer", layer, "--seq",
           str(seq), "--batch", str(batch), "--trials", str(trials), "--storage", storage,
           "--mode", mode]
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


def current_config(records: Path, target: Target) -> dict | None:
    """The config the device file records for the target's signature, mode and bucket, if any."""
    if not records.exists():
        return None
    entry = (load_records(records)["records"].get(target.signature, {}).get("modes", {})
             .get(target.mode, {}).get(target.bucket))
    return entry["config"] if entry else None


def tune_spec(ir: ModelIR, layers: list[str], mode: str, seqs: list[int], batch: int,
              trials: int, timeout: float | None, storage: str | None, gpus: str | None,
              records_dir: str, console, spec_path: str | None = None, do_sweep: bool = False,
              json_path: str | None = None, staged: bool = False, jobs: int = 1) -> list[dict]:
    """Tune every layer in `layers` at every length in `seqs` in `mode`; save records; print the
    tables (and with do_sweep the sweep comparison); write every row to json_path if given.
    staged: staged_search() in this process instead of an Optuna study (trials, storage and
    gpus do not apply; the CLI refuses them together), compiling ahead in `jobs` processes;
    timeout then stops each search and keeps its best config so far.
    Returns the rows (one per study: summarize()'s keys plus layer, chunk, seq, batch, mode,
    wall_s, signature, bucket, cache_bytes, and "sweep" with sweep_report()'s keys)."""
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
                if staged:
                    label = f"staged {mode} {name} L={chunk} T={seq} B={batch}"
                    with Progress(TextColumn(label), BarColumn(),
                                  TextColumn("{task.completed}/{task.total} configs"),
                                  TimeElapsedColumn(), console=console) as bar:
                        task = bar.add_task("staged", total=None)
                        s = staged_search(target, jobs=jobs, start=current_config(
                            records, target), progress=lambda i, n: bar.update(
                            task, completed=i, total=n), timeout=timeout,
                            on_group=_group_line(console, label, t0))
                    if s["stopped"]:
                        console.print(f"{label}: stopped by --timeout ({timeout:g} s) after "
                                      f"{len(s['groups'])} of the launch groups; the record "
                                      f"holds the best config so far")
                elif ids:
                    path = spec_path or ir.name
                    run_workers([(worker_command(path, name, chunk, seq, batch, trials, timeout,
                                                 url, mode),
                                  {**os.environ, "CUDA_VISIBLE_DEVICES": g}) for g in ids])
                    import optuna

                    from .study import open_storage

                    study = optuna.load_study(study_name=target.study_name,
                                              storage=open_storage(url))
                else:
                    with Progress(TextColumn(f"{mode} {name} L={chunk} T={seq} B={batch}"),
                                  BarColumn(),
                                  TextColumn("{task.completed}/{task.total} trials"),
                                  TimeElapsedColumn(), console=console) as bar:
                        task = bar.add_task("tune", total=trials)
                        study = run_study(target, url, trials, timeout, callbacks=[
                            lambda s, t: bar.update(task, completed=len(
                                [x for x in s.trials if x.state.is_finished()]))])
                if not staged:
                    s = summarize(study)
                s.update(layer=name, chunk=chunk, seq=seq, batch=batch, mode=mode,
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
                if do_sweep:
                    s["sweep"] = run_sweep(target, study, console)
    print_table(rows, device, time.perf_counter() - t_start, records, console)
    print_chunk_table(rows, console)
    if do_sweep:
        print_sweep_table(rows, console)
    if json_path:
        save_json(rows, device, mode, json_path)
    return rows


def _group_line(console, label: str, t0: float):
    """staged_search's on_group: off a terminal (a log file, where the progress bar shows
    nothing until the end), one line per launch group searched; on one, None."""
    if console.is_terminal:
        return None

    def line(keys, cfg, ms, n):
        values = ", ".join(f"{k}={cfg[k]}" for k in keys)
        console.print(f"{label}: ({', '.join(keys)}) best {values}, {ms:.3f} ms; configs "
                      f"timed: {n}; {time.perf_counter() - t0:.0f} s", soft_wrap=True)
    return line


def run_sweep(target: Target, study, console) -> dict:
    """Time the target's whole pruned space, then compare the study with it (sweep_report)."""
    t0 = time.perf_counter()
    with Progress(TextColumn(f"sweep {target.mode} {target.mixer.name} T={target.seq} "
                             f"B={target.batch}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} configs"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("sweep", total=None)
        trials = study_trials(study)
        best = study_best(trials)
        swept = sweep(target, progress=lambda i, n: bar.update(task, completed=i, total=n),
                      recheck=[best] if best else [])
    report = sweep_report(swept, trials)
    report["wall_s"] = time.perf_counter() - t0
    return report


def save_json(rows: list[dict], device: str, mode: str, path: str) -> None:
    """The study summaries (and sweeps) as JSON; inf times become null."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(clean({"device": device, "mode": mode, "rows": rows}),
                                     indent=2) + "\n")


def print_table(rows, device, wall, records, console) -> None:
    t = Table(title=f"ratc tune on {device} ({wall:.0f} s); records in {records}")
    for c in ("layer", "mode", "L", "T x B", "default ms", "best ms", "speed-up",
              "trials (ok/fail/pruned)", "cache bytes/seq", "best config"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["layer"], r["mode"], str(r["chunk"] or "-"), f"{r['seq']} x {r['batch']}",
                  f"{r['default_ms']:.3f}" if r["default_ms"] else "-", f"{r['ms']:.3f}",
                  f"{r['speedup']:.2f}x" if r["speedup"] else "-",
                  f"{r['complete']}/{r['failed']}/{r['pruned']}", f"{r['cache_bytes']:,}",
                  ", ".join(f"{k}={v}" for k, v in r["config"].items()))
    console.print(t)


def print_chunk_table(rows, console) -> None:
    """When a RAT layer's spec lists several chunk lengths: each candidate's best time and cache
    size side by side, per (layer, length), the fastest marked."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["chunk"] is not None:
            groups.setdefault((r["layer"], r["seq"], r["batch"]), []).append(r)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return
    t = Table(title="chunk length candidates (best tuned time each)")
    for c in ("layer", "T x B", "L", "best ms", "vs fastest", "cache bytes/seq", ""):
        t.add_column(c)
    for (layer, seq, batch), rs in groups.items():
        fastest = min(r["ms"] for r in rs)
        for r in rs:
            t.add_row(layer, f"{seq} x {batch}", str(r["chunk"]), f"{r['ms']:.3f}",
                      f"{r['ms'] / fastest:.2f}x", f"{r['cache_bytes']:,}",
                      "fastest" if r["ms"] == fastest else "")
    console.print(t)


def print_sweep_table(rows, console) -> None:
    t = Table(title="Optuna against an exhaustive sweep (all times from the sweep)")
    for c in ("layer", "mode", "L", "T x B", "configs (ok)", "sweep best ms", "Optuna best ms",
              "gap", "trials to within 2%", "trials", "sweep s"):
        t.add_column(c)
    for r in rows:
        w = r.get("sweep")
        if not w:
            continue
        t.add_row(r["layer"], r["mode"], str(r["chunk"] or "-"), f"{r['seq']} x {r['batch']}",
                  f"{w['configs']} ({w['configs_ok']})", f"{w['sweep_best_ms']:.4f}",
                  f"{w['optuna_best_ms']:.4f}",
                  f"{w['gap_pct']:+.1f}%" if w["gap_pct"] is not None else "-",
                  str(w["first_within"] or "not reached"), str(w["trials"]),
                  f"{w['wall_s']:.0f}")
    console.print(t)
