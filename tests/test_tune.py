"""`ratc tune` on CPU: real Optuna studies over a tiny spec's kernels through the interpreter."""

import json
import subprocess
import sys

import optuna
import pytest
from click.testing import CliRunner

from ratc.cli import main
from ratc.lower import lower
from ratc.spec import load_spec
from ratc.tune.records import RecordError, bucket_of, load_records, nearest_bucket, save_record
from ratc.tune.space import SHARED_MEMORY_BYTES, forward_space, keep, shared_memory_estimate
from ratc.tune.study import Objective, Target, run_study, summarize

pytestmark = pytest.mark.interpreter
RNN = lower(load_spec("specs/tiny_rnn.yaml")).mixer("rnn")
RAT_SWA = lower(load_spec("specs/rat_swa.yaml"))


def finished(study):
    return [t for t in study.trials if t.state.is_finished()]


def test_space_is_pruned_by_shared_memory():
    rat = RAT_SWA.mixer("rat")
    space = forward_space(rat)
    assert space and all(shared_memory_estimate(c, rat) <= SHARED_MEMORY_BYTES for c in space)
    big = dict(SCAN_BK=8, SCAN_WARPS=2, BT=128, BC=128, num_warps=8, num_stages=4)
    assert shared_memory_estimate(big, rat) > SHARED_MEMORY_BYTES and not keep(big, rat)
    assert all(c["BT"] % c["BS"] == 0 for c in forward_space(RNN))


def test_whole_flow_through_the_cli(tmp_path):
    journal, records = tmp_path / "s.journal", tmp_path / "autotune"
    r = CliRunner().invoke(main, ["tune", "specs/tiny_rnn.yaml", "--seq", "8", "--batch", "1",
                                  "--trials", "3", "--storage", str(journal),
                                  "--records-dir", str(records)])
    assert r.exit_code == 0, r.output
    assert "best ms" in r.output and "speed-up" in r.output
    files = list(records.iterdir())
    assert len(files) == 1
    data = load_records(files[0])
    (rec,) = data["records"].values()
    assert rec["kind"] == "rnn" and set(rec["buckets"]) == {bucket_of(8, 1)}
    assert rec["buckets"]["T8xB1"]["trials"] >= 1


def test_resume_after_interruption_loses_no_trial(tmp_path):
    storage = str(tmp_path / "s.journal")
    target = Target(RNN, seq=8, batch=1)

    def interrupt(study, trial):
        raise KeyboardInterrupt  # as Ctrl-C after the first finished trial

    with pytest.raises(KeyboardInterrupt):
        run_study(target, storage, trials=5, timeout=None, callbacks=[interrupt], reps=1)
    before = finished(optuna.load_study(study_name=target.study_name,
                                        storage=__import__("ratc.tune.study", fromlist=["x"])
                                        .open_storage(storage)))
    assert len(before) == 1 and before[0].user_attrs.get("default")
    study = run_study(target, storage, trials=3, timeout=None, reps=1)
    after = finished(study)
    assert len(after) == 3
    assert after[0].params == before[0].params and after[0].value == before[0].value


def test_failures_are_failed_trials_not_a_crashed_study(tmp_path, monkeypatch):
    real = Objective.time_ms
    calls = []

    def flaky(self, cfg):
        calls.append(cfg)
        if len(calls) == 2:
            raise RuntimeError("out of resource: shared memory (simulated)")
        return real(self, cfg)

    monkeypatch.setattr(Objective, "time_ms", flaky)
    study = run_study(Target(RNN, 8, 1), str(tmp_path / "s.journal"), trials=4, timeout=None,
                      reps=1)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.FAIL in states
    assert summarize(study)["failed"] >= 1 and summarize(study)["complete"] >= 2


def test_a_wrong_config_fails_its_trial(tmp_path, monkeypatch):
    def wrong(self, proj, cfg):
        out = self.launch(proj, self.bias, config=cfg)
        return out if cfg is None else out * 1.5  # a kernel config that computes garbage

    monkeypatch.setattr(Objective, "_run", wrong)
    study = run_study(Target(RNN, 8, 1), str(tmp_path / "s.journal"), trials=2, timeout=None,
                      reps=1)
    assert all(t.state == optuna.trial.TrialState.FAIL for t in study.trials
               if t.state != optuna.trial.TrialState.PRUNED)


def test_two_workers_share_one_storage(tmp_path):
    storage = str(tmp_path / "shared.journal")
    cmd = [sys.executable, "-m", "ratc.tune.worker", "specs/tiny_rnn.yaml", "--layer", "rnn",
           "--seq", "8", "--batch", "1", "--trials", "4", "--storage", storage]
    procs = [subprocess.Popen(cmd) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    from ratc.tune.study import open_storage

    study = optuna.load_study(study_name=Target(RNN, 8, 1).study_name,
                              storage=open_storage(storage))
    workers = {t.user_attrs.get("worker") for t in finished(study)}
    assert len(finished(study)) >= 4
    assert len(workers - {None}) == 2, f"trials came from {workers}"


# -------------------------------------------------------------------------------------------------
# record files


def good_entry():
    return {"config": {"BT": 512, "BS": 8, "BD": 256, "num_warps": 1, "CARRY_BD": 128},
            "ms": 1.5, "default_ms": 2.0, "trials": 3}


def test_records_round_trip_and_nearest_bucket(tmp_path):
    p = tmp_path / "GPU.json"
    save_record(p, "GPU", "rnn-abc", "rnn", "prefill", "T1024xB2", good_entry())
    save_record(p, "GPU", "rnn-abc", "rnn", "prefill", "T131072xB2", good_entry())
    buckets = load_records(p)["records"]["rnn-abc"]["buckets"]
    assert nearest_bucket(buckets, 100000, 2) == "T131072xB2"
    assert nearest_bucket(buckets, 900, 1) == "T1024xB2"
    assert nearest_bucket({}, 10, 1) is None


@pytest.mark.parametrize("text,message", [
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "dev', "corrupt or truncated JSON at line 1, column 50: Unterminated string starting at", id="truncated"),
    pytest.param("[1, 2]", "not a ratc tuning-record file (top level is not an object)", id="not-object"),
    pytest.param('{"format": "other"}', "not a ratc tuning-record file (format is 'other')", id="foreign-format"),
    pytest.param('{"format": "ratc-autotune", "format_version": 7, "device": "G", "records": {}}', "record format version 7; this ratc reads version 1: re-run `ratc tune` to regenerate it", id="foreign-version"),
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "device": "G", "records": {"s": {"kind": "rnn", "buckets": {"T8xB1": {"config": {"BLOCK_Q": 4}, "ms": 1}}}}}', "records.s.buckets.T8xB1: unknown config keys ['BLOCK_Q'] for a rnn kernel", id="unknown-key"),
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "device": "G", "records": {"s": {"kind": "rnn", "buckets": {"T8xB1": {"config": {"BT": 4}, "ms": -1}}}}}', "records.s.buckets.T8xB1: 'ms' must be a positive number", id="bad-time"),
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "device": "G", "records": {"s": {"kind": "rnn", "buckets": {"big": {"config": {"BT": 4}, "ms": 1}}}}}', "records.s.buckets.big: bucket names look like T131072xB2", id="bad-bucket"),
])
def test_bad_record_files_are_clear_errors(tmp_path, text, message):
    p = tmp_path / "GPU.json"
    p.write_text(text)
    with pytest.raises(RecordError) as e:
        load_records(p)
    assert str(e.value).startswith(f"{p}: {message}")
    assert "\n" not in str(e.value)


def test_bad_file_is_never_half_applied(tmp_path):
    p = tmp_path / "GPU.json"
    p.write_text('{"format": "ratc-autotune", "format_version": 1, "device": "G", "records": {"s": '
                 '{"kind": "rnn", "buckets": {"T8xB1": {"config": {"BT": 4}, "ms": 1}, '
                 '"T16xB1": {"config": {"NOPE": 4}, "ms": 1}}}}}')
    before = p.read_text()
    with pytest.raises(RecordError):
        save_record(p, "G", "s", "rnn", "prefill", "T32xB1", good_entry())
    assert p.read_text() == before
    with pytest.raises(RecordError, match="holds records for 'G', not 'H'"):
        save_record(tmp_path / "ok.json", "G", "s", "rnn", "prefill", "T8xB1", good_entry()) or \
            save_record(tmp_path / "ok.json", "H", "s", "rnn", "prefill", "T8xB1", good_entry())
    json.loads((tmp_path / "ok.json").read_text())


# -------------------------------------------------------------------------------------------------
# records baked into builds


def test_build_bakes_matching_records_and_dispatches_on_device_and_bucket(tmp_path, monkeypatch):
    import triton

    from ratc.build import run_pipeline
    from ratc.codegen.render import load_module, render_kernel
    from ratc.tune.records import kernel_signature

    sig = kernel_signature("rnn", render_kernel(RNN), triton.__version__)
    fast = {"BT": 256, "BS": 4, "BD": 128, "num_warps": 1, "CARRY_BD": 256}
    save_record(tmp_path / "FakeGPU.json", "Fake GPU", sig, "rnn", "prefill", "T1024xB2",
                {"config": fast, "ms": 1.0, "default_ms": 2.0, "trials": 3})
    save_record(tmp_path / "FakeGPU.json", "Fake GPU", "rnn-0000000000000000", "rnn", "prefill",
                "T8xB1", {"config": {"BT": 4096}, "ms": 1.0})  # another kernel: not applied
    r = run_pipeline("specs/tiny_rnn.yaml", records_dir=tmp_path)
    assert json.loads(r.files["manifest.json"])["tuned_configs"] == {"rnn": {"Fake GPU": {"T1024xB2": fast}}}
    mod = load_module(r.files["kernels/rnn_rnn.py"], "baked_rnn")
    assert mod.TUNED == {"Fake GPU": {"T1024xB2": fast}}

    class FakeCuda:  # a CUDA tensor's shape and device, without a GPU
        is_cuda = True
        shape = (2, 900, 192)
        device = __import__("torch").device("cpu")

    monkeypatch.setattr(mod.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(mod.torch.cuda, "get_device_name", lambda i: "Fake GPU")
    assert mod._launch_config(FakeCuda()) == mod.CONFIG | fast
    assert mod._launch_config(FakeCuda(), {"BS": 8})["BS"] == 8  # an explicit config wins
    mod._DEVICE_NAMES.clear()
    monkeypatch.setattr(mod.torch.cuda, "get_device_name", lambda i: "Other GPU")
    assert mod._launch_config(FakeCuda()) == mod.CONFIG  # no record for this device: defaults
    # CPU tensors never consult the table
    assert mod._launch_config(__import__("torch").zeros(2, 900, 192)) == mod.CONFIG


def test_build_with_a_bad_record_file_fails_whole(tmp_path):
    from ratc.build import run_pipeline

    (tmp_path / "GPU.json").write_text('{"format": "ratc-autotune", "format_version": 2}')
    with pytest.raises(RecordError, match="record format version 2"):
        run_pipeline("specs/tiny_rnn.yaml", records_dir=tmp_path)
