"""One Optuna study per (kernel signature, shape bucket, mode): the objective, storage, workers.

Every config is checked against the default config's output at the tuned shape (which the kernel
tests hold to the float64 reference) before it is timed; a compile failure or out-of-resources is
a failed trial (Optuna's `catch`), never a crashed study. Studies persist in a journal file by
default, so Ctrl-C or a crash loses no finished trial, and several worker processes (one per GPU)
can share one study through `--storage`.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..codegen.render import load_kernel, signature_of
from ..ir import LayerKind, MixerIR
from .records import bucket_of
from .space import forward_space, keep

DEFAULT_STORAGE_DIR = Path(".ratc") / "studies"
TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 1e-2, torch.float32: 1e-4}
LAUNCHER = {LayerKind.RAT: "rat_fwd", LayerKind.RNN: "rnn_fwd",
            LayerKind.SLIDING_WINDOW: "swa_fwd", LayerKind.ATTENTION: "attention_fwd"}


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu-interpreter" if os.environ.get("TRITON_INTERPRET") == "1" else "cpu"


def storage_url(device: str, explicit: str | None) -> str:
    """The study storage: `explicit` as given (an Optuna database or journal URL), else a journal
    file under .ratc/studies/ named after the device."""
    if explicit:
        return explicit
    DEFAULT_STORAGE_DIR.mkdir(parents=True, exist_ok=True)
    return str(DEFAULT_STORAGE_DIR / (device.replace(" ", "_") + ".journal"))


def open_storage(url: str):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:  # sqlite:///..., postgresql://..., mysql://...
        return optuna.storages.RDBStorage(url)
    return JournalStorage(JournalFileBackend(url))


@dataclass
class Target:
    """What one study tunes: a mixer's forward kernels at one shape."""

    mixer: MixerIR
    seq: int
    batch: int
    mode: str = "prefill"

    @property
    def signature(self) -> str:
        return signature_of(self.mixer)

    @property
    def bucket(self) -> str:
        return bucket_of(self.seq, self.batch)

    @property
    def study_name(self) -> str:
        return f"{self.signature}/{self.bucket}/{self.mode}"


class Objective:
    """Callable for study.optimize: suggest a config, prune statically, verify, time."""

    def __init__(self, target: Target, reps: int = 3, rotate: int = 3, worker: str = "main"):
        self.t = target
        self.worker = worker
        self.space = forward_space(target.mixer)
        self.values = {k: sorted({c[k] for c in self.space}, key=str) for k in self.space[0]}
        self.cuda = torch.cuda.is_available()
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        dev = "cuda" if self.cuda else "cpu"
        m = target.mixer
        g = torch.Generator(device="cpu").manual_seed(0)
        self.inputs = [
            torch.randn(target.batch, target.seq, m.in_features, generator=g).to(dev, self.dtype)
            for _ in range(rotate)
        ]  # rotating inputs: repeated runs do not time a warm cache
        self.bias = (torch.randn(m.d_model, generator=g).to(dev, self.dtype)
                     if m.has_gate_bias else None)
        self.reps = reps
        self.mod = load_kernel(m)
        self.launch = getattr(self.mod, LAUNCHER[m.kind])
        self.want = self._run(self.inputs[0], None)  # the default config's output

    def _run(self, proj, cfg):
        if self.t.mixer.kind in (LayerKind.SLIDING_WINDOW, LayerKind.ATTENTION):
            return self.launch(proj, config=cfg)
        return self.launch(proj, self.bias, config=cfg)

    def suggest(self, trial) -> dict:
        return {k: trial.suggest_categorical(k, v) for k, v in self.values.items()}

    def time_ms(self, cfg) -> float:
        if self.cuda:
            from triton.testing import do_bench

            i = iter(range(1 << 62))
            return do_bench(lambda: self._run(self.inputs[next(i) % len(self.inputs)], cfg),
                            warmup=25, rep=100, return_mode="median")
        times = []
        for r in range(self.reps):
            t0 = time.perf_counter()
            self._run(self.inputs[r % len(self.inputs)], cfg)
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def check(self, cfg) -> float:
        got = self._run(self.inputs[0], cfg)
        err = ((got.float() - self.want.float()).norm() / self.want.float().norm()).item()
        if not err <= TOLERANCE[self.dtype]:  # NaN fails too
            raise ValueError(f"config {cfg} gives a different result: relative error {err:.2e}")
        return err

    def __call__(self, trial) -> float:
        import optuna

        cfg = self.suggest(trial)
        trial.set_user_attr("worker", self.worker)
        if not keep(cfg, self.t.mixer):
            raise optuna.TrialPruned("over a static limit (shared memory or shape)")
        trial.set_user_attr("rel_err", self.check(cfg))
        return self.time_ms(cfg)


def default_config(mixer: MixerIR) -> dict:
    """The launch config the template renders when no record applies."""
    mod = load_kernel(mixer)
    return {k: v for k, v in mod.CONFIG.items() if not k.lower().startswith("bwd")}


def run_study(target: Target, storage: str, trials: int, timeout: float | None,
              callbacks=(), worker: str = "main", reps: int = 3) -> "optuna.Study":  # noqa: F821
    """Run (or resume) the study until it holds `trials` finished trials (counted over every
    worker sharing the storage) or `timeout` passes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=target.study_name, storage=open_storage(storage), direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=None), load_if_exists=True)
    objective = Objective(target, reps=reps, worker=worker)
    done = [t for t in study.trials if t.state.is_finished()]
    if not done:
        default = {k: v for k, v in default_config(target.mixer).items() if k in objective.values}
        study.enqueue_trial(default, user_attrs={"default": True}, skip_if_exists=True)
    remaining = max(trials - len(done), 0)
    if remaining:
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                    optuna.trial.TrialState.PRUNED)
        stop = optuna.study.MaxTrialsCallback(trials, states=finished)  # all workers together
        study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(Exception,),
                       callbacks=[stop, *callbacks])
    return study


def summarize(study) -> dict:
    """Best against default: configs, times, speed-up, counts."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study.study_name}: no trial completed (see failed trials)")
    best = min(complete, key=lambda t: t.value)
    default = next((t for t in complete if t.user_attrs.get("default")), None)
    states = [t.state for t in study.trials]
    return {
        "config": dict(best.params),
        "ms": best.value,
        "default_ms": default.value if default else None,
        "speedup": (default.value / best.value) if default else None,
        "trials": len(study.trials),
        "complete": len(complete),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
    }


def replace_chunk(m: MixerIR, chunk: int) -> MixerIR:
    return dataclasses.replace(m, chunk=chunk)
