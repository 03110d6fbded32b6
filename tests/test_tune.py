"""`ratc tune` on CPU: real Optuna studies over a tiny spec's kernels through the interpreter."""

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from ratc.cli import main
from ratc.lower import lower
from ratc.spec import load_spec
from ratc.tune.records import RecordError, bucket_of, load_records, nearest_bucket, save_record
from ratc.tune.space import (SHARED_MEMORY_BYTES, WS_CONSUMER_WORDS, backward_space, decode_space,
                             forward_space, keep, key_groups, shared_memory_estimate, space_of,
                             ws_consumer_words)
from ratc.tune.study import (Objective, Target, decode_length, open_storage, precompile, retime,
                             run_study, staged_search, summarize, sweep_report)

pytestmark = pytest.mark.interpreter
RNN = lower(load_spec("specs/tiny_rnn.yaml")).mixer("rnn")
RAT_SWA = lower(load_spec("specs/rat_swa.yaml"))
TINY_RAT = lower(load_spec("specs/tiny_rat_swa.yaml")).mixer("rat")


def finished(study):
    return [t for t in study.trials if t.state.is_finished()]


def test_space_is_pruned_by_shared_memory():
    rat = RAT_SWA.mixer("rat")
    space = forward_space(rat)
    assert space and all(shared_memory_estimate(c, rat) <= SHARED_MEMORY_BYTES for c in space)
    big = dict(SCAN_BK=8, SCAN_WARPS=2, BT=128, BC=128, num_warps=8, num_stages=4)
    assert shared_memory_estimate(big, rat) > SHARED_MEMORY_BYTES and not keep(big, rat)
    # the warp-specialised forward: 2 + 4 stages of 128 keys and 128 queries fit, 3 + 4 do not
    ws = [c for c in space if c["WS"] == 1]
    assert {(c["BC"], c["WS_KS"], c["WS_VS"]) for c in ws} >= {(64, 3, 4), (128, 2, 4)}
    assert (128, 3, 4) not in {(c["BC"], c["WS_KS"], c["WS_VS"]) for c in ws}
    assert all(set(c) == set(space[0]) for c in space)  # Optuna suggests each key of space[0]
    assert all(c["BT"] % c["BS"] == 0 for c in forward_space(RNN))


def test_spaces_per_mode():
    rat, swa = RAT_SWA.mixer("rat"), RAT_SWA.mixer("swa")
    assert space_of(RNN, "train") == forward_space(RNN)  # its backward reads the forward's keys
    train = space_of(swa, "train")
    assert {"BWD_BLOCK_M1", "bwd_num_stages", "BLOCK_M"} <= set(train[0])
    assert all(shared_memory_estimate(c, swa) <= SHARED_MEMORY_BYTES for c in train)
    train = space_of(rat, "train")
    assert {"BWD_BT", "BWD_BC", "bwd_num_warps", "bwd_num_stages", "DQ_BT", "DQ_BC",
            "dq_num_warps", "dq_num_stages", "BT", "BC"} <= set(train[0])
    assert all(shared_memory_estimate(c, rat) <= SHARED_MEMORY_BYTES for c in train)
    small = dict(BWD_BT=64, BWD_BC=64, bwd_num_warps=8, bwd_num_stages=2, DQ_BT=64, DQ_BC=64,
                 dq_num_warps=8, dq_num_stages=2)
    base = forward_space(rat)[0] | small
    assert keep(base, rat)
    big = base | dict(BWD_BT=128, BWD_BC=128, bwd_num_stages=3)
    assert not keep(big, rat)  # dK/dV: K, V and three stages of q^, do: 256 KiB
    assert not keep(base | dict(DQ_BT=128, DQ_BC=128, dq_num_stages=4), rat)  # dq: 4 stages
    # the warp-specialised backward kernels' shapes (one pass over the train configs): every
    # dK/dV shape fits; dq's 128-key blocks do not at d = 128 (their consumers' dq, S, dP and
    # dS operand take 224 words a thread: ptxas serialises the products)
    ws = {(c["BWD_WS"], c["BWD_WS_BT"], c["BWD_WS_QS"], c["DQ_WS"], c["DQ_BC"], c["DQ_WS_KS"],
           c["DQ_WS_VS"]) for c in train}
    assert {w[1:3] for w in ws if w[0]} == {(bt, qs) for bt in (32, 64) for qs in (2, 3, 4)}
    assert {w[4:] for w in ws if w[3]} == {(64, 2, 2), (64, 2, 3), (64, 3, 2), (64, 3, 3)}
    assert ws_consumer_words(dict(DQ_WS=1, DQ_BC=128), 128) > WS_CONSUMER_WORDS
    # d = 64 fits (scripts/compile_check.py generated.small_rat: no ptxas notes at DQ_BC 128)
    assert ws_consumer_words(dict(DQ_WS=1, DQ_BC=128), 64) <= WS_CONSUMER_WORDS
    assert ws_consumer_words(dict(WS=1, BC=128, BWD_WS=1, BWD_WS_BT=64), 128) <= WS_CONSUMER_WORDS
    # Optuna suggests each key of space[0]: a train config is a forward and a backward part
    for part in (forward_space(rat), backward_space(rat)):
        assert all(set(c) == set(part[0]) for c in part)
    split = {"DECODE_WARPS", "DECODE_STAGES", "DECODE_SPLIT_ROWS"}
    assert set(decode_space(rat)[0]) == {"DECODE_BC"} | split
    assert set(decode_space(swa)[0]) == {"DECODE_BN"} | split
    assert all(c["DECODE_BD"] >= 32 * c["DECODE_WARPS"] for c in decode_space(RNN))
    assert not keep(dict(DECODE_BC=128, DECODE_WARPS=4, DECODE_STAGES=4), rat)  # 256 KiB
    # split-K rows: auto (0) or whole row blocks; the space stays small enough to sweep
    assert not keep(dict(DECODE_BC=128, DECODE_WARPS=4, DECODE_STAGES=2, DECODE_SPLIT_ROWS=64), rat)
    assert keep(dict(DECODE_BN=32, DECODE_WARPS=4, DECODE_STAGES=2, DECODE_SPLIT_ROWS=0), swa)
    for m in (rat, swa):
        space = decode_space(m)
        assert len(space) <= 150 and {c["DECODE_SPLIT_ROWS"] for c in space} >= {0, 64, 1024}
    # decode buckets key on what the host knows: chunk rows * L, ring slots, nothing for the RNN
    assert decode_length(rat, 131072) == 131072 and decode_length(rat, 131080) == 131072
    assert decode_length(swa, 131072) == 1025 and decode_length(RNN, 131072) == 1
    assert Target(swa, 131072, 2, "decode").bucket == "T2048xB2"


def test_train_study_checks_gradients_and_times_forward_and_backward(tmp_path):
    target = Target(RNN, seq=8, batch=1, mode="train")
    study = run_study(target, str(tmp_path / "s.journal"), trials=2, timeout=None, reps=1)
    s = summarize(study)
    assert s["complete"] >= 1 and s["default_ms"] > 0
    assert target.study_name.endswith("/T8xB1/train")
    objective = Objective(target, reps=1)
    assert len(objective.want) == 3  # y, dproj, dgate_bias: each compared
    assert objective.check(dict(s["config"])) <= 1e-4


def test_decode_study_on_a_random_cache(tmp_path):
    target = Target(TINY_RAT, seq=20, batch=2, mode="decode")
    study = run_study(target, str(tmp_path / "s.journal"), trials=3, timeout=None, reps=1)
    s = summarize(study)
    assert s["complete"] >= 2, [t.state for t in study.trials]
    assert set(s["config"]) == {"DECODE_BC", "DECODE_WARPS", "DECODE_STAGES", "DECODE_SPLIT_ROWS"}
    assert target.bucket == "T16xB2" and target.signature != Target(TINY_RAT, 20, 2).signature
    objective = Objective(target, reps=1)
    assert len(objective.want) == 5  # y and the four cache tensors
    objective.time_ms(s["config"])  # timing steps update a working copy of the cache
    assert objective.check(s["config"]) <= 1e-4  # checks still start from the same cache


def test_sweep_report_from_fake_timings():
    def c(i):
        return {"BT": i}

    swept = [(c(1), 10.0), (c(2), 5.0), (c(3), 5.05), (c(4), float("inf")), (c(5), 7.0)]
    trials = [(c(1), 9.0), (None, None), (c(5), 6.5), (c(3), 4.9), (c(2), 5.2)]
    r = sweep_report(swept, trials)
    assert r["configs"] == 5 and r["configs_ok"] == 4
    assert r["sweep_best_ms"] == 5.0 and r["sweep_best_config"] == c(2)
    # the study's own best (4.9) was config 3, which the sweep times at 5.05: 1% above its best
    assert r["optuna_best_config"] == c(3) and r["optuna_best_ms"] == 5.05
    assert r["gap_pct"] == pytest.approx(1.0)
    assert r["first_within"] == 4 and r["trials"] == 5  # the failed trial counts as spent
    assert sweep_report(swept, trials[:3])["first_within"] is None
    assert sweep_report(swept, [(None, None)])["gap_pct"] is None


def test_retime_takes_the_median_for_the_fastest_and_the_rechecked():
    def c(i):
        return {"BT": i}

    swept = [(c(1), 1.0), (c(2), 5.0), (c(3), float("inf")), (c(4), 9.0), (c(5), 3.0)]
    again = {1: [4.0, 4.2], 4: [2.0, 2.5], 5: [3.1, 2.9]}  # config 1's first sample was noise
    calls = []

    def measure(cfg):
        calls.append(cfg["BT"])
        return again[cfg["BT"]][calls.count(cfg["BT"]) - 1]

    out = dict((cfg["BT"], ms) for cfg, ms in retime(measure, swept, recheck=[c(4)], top=2))
    assert sorted(set(calls)) == [1, 4, 5] and len(calls) == 6  # top 2 (1, 5) and the recheck
    assert out == {1: 4.0, 2: 5.0, 3: float("inf"), 4: 2.5, 5: 3.0}
    assert [c["BT"] for c, _ in retime(measure, swept, top=0)] == [1, 2, 3, 4, 5]  # order kept


def test_decode_sweep_and_json_through_the_cli(tmp_path, monkeypatch):
    import ratc.tune.study as study_mod

    small = [dict(DECODE_BD=bd, DECODE_WARPS=1) for bd in (64, 128, 256)]
    monkeypatch.setattr(study_mod, "space_of", lambda m, mode: small)
    out = tmp_path / "tune.json"
    r = CliRunner().invoke(main, ["tune", "specs/tiny_rnn.yaml", "--mode", "decode", "--seq",
                                  "64", "--batch", "2", "--trials", "3", "--storage",
                                  str(tmp_path / "s.journal"), "--records-dir",
                                  str(tmp_path / "autotune"), "--sweep", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "Optuna against an exhaustive sweep" in r.output and "trials to within 2%" in r.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["mode"] == "decode" and row["bucket"] == "T1xB2"
    w = row["sweep"]
    assert w["configs"] == 3 and w["configs_ok"] == 3 and w["trials"] == 3
    assert w["sweep_best_config"] in small and w["first_within"] in (1, 2, 3, None)
    (data,) = [load_records(p) for p in (tmp_path / "autotune").iterdir()]
    (rec,) = data["records"].values()
    assert set(rec["modes"]) == {"decode"}


def test_chunk_candidates_table_shows_time_and_cache_of_each():
    from rich.console import Console

    from ratc.tune.driver import print_chunk_table

    rows = [dict(layer="rat", seq=1024, batch=2, chunk=L, ms=ms, cache_bytes=cb)
            for L, ms, cb in ((16, 2.0, 4096), (32, 1.5, 2048))]
    console = Console(record=True, width=200)
    print_chunk_table(rows, console)
    text = console.export_text()
    assert "chunk length candidates" in text and "fastest" in text
    assert "4,096" in text and "2,048" in text and "1.33x" in text
    console = Console(record=True, width=200)
    print_chunk_table(rows[:1], console)  # one candidate: no table
    assert console.export_text() == ""


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
    assert rec["kind"] == "rnn" and set(rec["modes"]) == {"prefill"}
    assert set(rec["modes"]["prefill"]) == {bucket_of(8, 1)}
    assert rec["modes"]["prefill"]["T8xB1"]["trials"] >= 1


def test_key_groups_put_every_key_of_a_space_in_one_launch_group():
    rat, swa = RAT_SWA.mixer("rat"), RAT_SWA.mixer("swa")
    train = key_groups(rat, space_of(rat, "train")[0])
    assert train == [("BT", "BC", "num_warps", "num_stages", "WS", "WS_KS", "WS_VS"),
                     ("DQ_BT", "DQ_BC", "dq_num_warps", "dq_num_stages", "DQ_WS", "DQ_WS_KS",
                      "DQ_WS_VS"),
                     ("BWD_BT", "BWD_BC", "bwd_num_warps", "bwd_num_stages", "BWD_WS",
                      "BWD_WS_BT", "BWD_WS_QS"),
                     ("BWD_SCAN_BK", "bwd_scan_num_warps", "bwd_scan_num_stages"),
                     ("SCAN_BK", "SCAN_WARPS")]
    assert key_groups(rat, forward_space(rat)[0]) == [train[0], train[4]]
    fwd, bwd = key_groups(swa, space_of(swa, "train")[0])  # forward, then the backward's keys
    assert "BLOCK_M" in fwd and all(k.upper().startswith("BWD") for k in bwd)
    for m, mode in ((rat, "decode"), (swa, "decode"), (RNN, "train"), (RNN, "prefill")):
        keys = list(space_of(m, mode)[0])
        assert key_groups(m, keys) == [tuple(keys)]  # one launch: one exhaustive group


def _fake_rat_prefill(monkeypatch, fail=(), prune=()):
    """TINY_RAT's prefill objective over a 2 x 2 x 2 space with a separable fake time."""
    import ratc.tune.study as study_mod

    space = [dict(BT=bt, BC=bc, num_warps=4, num_stages=2, SCAN_BK=bk, SCAN_WARPS=2)
             for bt in (16, 32) for bc in (16, 32) for bk in (8, 16)]
    monkeypatch.setattr(study_mod, "space_of", lambda m, mode: space)
    monkeypatch.setattr(study_mod, "keep", lambda c, m: (c["BT"], c["BC"]) not in prune)
    timed = []

    def fake_measure(self, cfg):
        timed.append(cfg)
        if (cfg["BT"], cfg["BC"]) in fail:
            return float("inf")
        outside = cfg["BT"] not in (16, 32) or cfg["BC"] not in (16, 32)  # the default's shape
        return (1.0 + 3.0 * outside + (cfg["BT"] == 32) + 2.0 * (cfg["BC"] == 16)
                + 0.5 * (cfg["SCAN_BK"] == 8) + 0.25 * (cfg["SCAN_WARPS"] != 2))

    monkeypatch.setattr(Objective, "measure", fake_measure)
    return timed


def test_staged_search_sweeps_one_launch_group_at_a_time(monkeypatch):
    timed = _fake_rat_prefill(monkeypatch, fail={(16, 16)})
    s = staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1)
    assert s["config"] == dict(BT=16, BC=32, num_warps=4, num_stages=2, SCAN_BK=16, SCAN_WARPS=2)
    assert s["ms"] == 1.0 and s["default_ms"] > s["ms"] and s["speedup"] == s["default_ms"]
    # the default, then 4 forward shapes (one of them the start when its values are in the
    # space), then the other SCAN_BK: every distinct config timed once, retimes not counted
    firsts = {tuple(sorted(c.items())) for c in timed}
    assert s["trials"] == len(firsts) and s["failed"] == 1 and s["complete"] == len(firsts) - 1
    assert [g for g, _ in s["groups"]] == [("BT", "BC", "num_warps", "num_stages"),
                                           ("SCAN_BK", "SCAN_WARPS")]
    assert s["groups"][0][1]["BC"] == 32 and s["groups"][0][1]["BT"] == 16


def test_staged_search_starts_from_the_record_when_it_is_faster(monkeypatch):
    timed = _fake_rat_prefill(monkeypatch)
    record = dict(BT=16, BC=32, num_warps=4, num_stages=2, SCAN_BK=16, SCAN_WARPS=2, extra=1)
    s = staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1, start=record)
    assert s["start"] == "record" and s["ms"] == 1.0
    assert {k: v for k, v in record.items() if k != "extra"} in timed[:2]  # keys of the space only
    slow = dict(record, BT=32, BC=16, SCAN_BK=8)  # slower than the default: not the start
    s = staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1, start=slow)
    assert s["start"] == "default" and s["ms"] == 1.0


def test_staged_search_skips_pruned_configs_and_fails_when_nothing_runs(monkeypatch):
    timed = _fake_rat_prefill(monkeypatch, prune={(16, 32)})
    s = staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1)
    assert s["pruned"] >= 1 and all((c["BT"], c["BC"]) != (16, 32) for c in timed)
    assert s["config"]["BC"] == 32 and s["config"]["BT"] == 32  # the best left
    everything = {(bt, bc) for bt in (16, 32) for bc in (16, 32)} | {(64, 128), (64, 64)}
    _fake_rat_prefill(monkeypatch, fail=everything | {(c["BT"], c["BC"]) for c in timed})
    with pytest.raises(RuntimeError, match="no config completed"):
        staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1)


def test_staged_search_stops_at_its_timeout_with_the_best_so_far(monkeypatch):
    import ratc.tune.study as study_mod

    timed = _fake_rat_prefill(monkeypatch)
    clock = [0.0]
    measure = Objective.measure

    def tick(self, cfg):  # every measurement takes a second
        clock[0] += 1.0
        return measure(self, cfg)

    monkeypatch.setattr(Objective, "measure", tick)
    monkeypatch.setattr(study_mod.time, "monotonic", lambda: clock[0])
    groups = []
    s = staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1, timeout=2.5,
                      on_group=lambda *a: groups.append(a))
    # the default at t = 1, two forward shapes at 2 and 3, then no more (and no retimes)
    assert len(timed) == 3 and s["stopped"] and s["trials"] == 3
    assert [g for g, _ in s["groups"]] == [("BT", "BC", "num_warps", "num_stages")]
    assert len(groups) == 1 and groups[0][0] == s["groups"][0][0] and groups[0][3] == 2
    first3 = list(timed)
    ms = {i: measure(None, c) for i, c in enumerate(first3)}  # (appends to timed: copied first)
    i_best = min(ms, key=ms.get)
    assert s["config"] == first3[i_best] and s["ms"] == groups[0][2] == ms[i_best]
    timed.clear()
    s = staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1, timeout=1e9)
    assert not s["stopped"] and len(s["groups"]) == 2 and s["ms"] == 1.0


def test_staged_search_compiles_each_group_ahead_when_given_jobs(monkeypatch):
    import ratc.tune.study as study_mod

    timed = _fake_rat_prefill(monkeypatch)
    calls = []
    monkeypatch.setattr(study_mod, "precompile",
                        lambda target, configs, jobs, deadline: calls.append((target, configs,
                                                                               jobs)))
    s = staged_search(Target(TINY_RAT, seq=16, batch=1), top=1, rounds=1, jobs=3)
    assert [len(c) for _, c, _ in calls] == [4, 2] and all(j == 3 for *_, j in calls)
    ahead = [tuple(sorted(c.items())) for _, configs, _ in calls for c in configs]
    first_timed = list(dict.fromkeys(tuple(sorted(c.items())) for c in timed))
    assert first_timed[1:] == ahead  # after the default: the configs compiled ahead, in order
    assert s["trials"] == 1 + len(ahead)


def test_precompile_runs_each_config_once_in_worker_processes():
    target = Target(RNN, seq=8, batch=1, mode="train")
    good = [dict(BT=bt, BS=8, BD=256, num_warps=1, CARRY_BD=128) for bt in (256, 512)]
    bad = dict(BT=100, BS=8, BD=256, num_warps=1, CARRY_BD=128)  # BT % BS: a static assert
    assert precompile(target, good + [bad], jobs=2) == 2
    assert precompile(target, [], jobs=2) == 0  # a group with nothing left to try
    # past the deadline (--timeout): the workers are terminated and nothing counts as compiled
    assert precompile(target, good, jobs=2, deadline=time.monotonic() - 1.0) == 0
    assert precompile(target, good, jobs=2, deadline=time.monotonic() + 600.0) == 2


def test_staged_through_the_cli_writes_a_record_and_refuses_study_options(tmp_path,
                                                                          monkeypatch):
    import ratc.tune.study as study_mod

    small = [dict(BT=bt, BS=8, BD=256, num_warps=1, CARRY_BD=128) for bt in (256, 512)]
    monkeypatch.setattr(study_mod, "space_of", lambda m, mode: small)
    records, out = tmp_path / "autotune", tmp_path / "t.json"
    args = ["tune", "specs/tiny_rnn.yaml", "--seq", "8", "--batch", "1", "--mode", "train",
            "--records-dir", str(records), "--json", str(out), "--staged"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "best ms" in r.output
    assert "staged train rnn L=None T=8 B=1: (BT, " in r.output  # off a terminal: a line a group
    assert "configs timed: 1;" in r.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["config"] in small and row["complete"] >= 1 and row["mode"] == "train"
    (data,) = [load_records(p) for p in records.iterdir()]
    (rec,) = data["records"].values()
    assert rec["modes"]["train"]["T8xB1"]["trials"] == row["complete"]
    starts = []  # a second run starts from that record
    real = study_mod.staged_search
    monkeypatch.setattr(study_mod, "staged_search",
                        lambda target, **kw: starts.append(kw["start"]) or real(target, **kw))
    import ratc.tune.driver as driver_mod
    monkeypatch.setattr(driver_mod, "staged_search", study_mod.staged_search)
    assert CliRunner().invoke(main, args + ["--timeout", "1000"]).exit_code == 0  # --timeout: ok
    assert starts == [rec["modes"]["train"]["T8xB1"]["config"]]
    for extra in (["--trials", "5"], ["--gpus", "all"], ["--sweep"], ["--storage", "x.db"]):
        r = CliRunner().invoke(main, args + extra)
        assert r.exit_code == 2 and "--staged" in r.output and extra[0] in r.output, r.output
    r = CliRunner().invoke(main, [a for a in args if a != "--staged"] + ["--jobs", "4"])
    assert r.exit_code == 2 and "--jobs" in r.output and "--staged" in r.output, r.output


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
    buckets = load_records(p)["records"]["rnn-abc"]["modes"]["prefill"]
    assert nearest_bucket(buckets, 100000, 2) == "T131072xB2"
    assert nearest_bucket(buckets, 900, 1) == "T1024xB2"
    assert nearest_bucket({}, 10, 1) is None


@pytest.mark.parametrize("text,message", [
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "dev', "corrupt or truncated JSON at line 1, column 50: Unterminated string starting at", id="truncated"),
    pytest.param("[1, 2]", "not a ratc tuning-record file (top level is not an object)", id="not-object"),
    pytest.param('{"format": "other"}', "not a ratc tuning-record file (format is 'other')", id="foreign-format"),
    pytest.param('{"format": "ratc-autotune", "format_version": 7, "device": "G", "records": {}}', "record format version 7; this ratc reads versions 1, 2: re-run `ratc tune` to regenerate it", id="foreign-version"),
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "device": "G", "records": {"s": {"kind": "rnn", "buckets": {"T8xB1": {"config": {"BLOCK_Q": 4}, "ms": 1}}}}}', "records.s.modes.prefill.T8xB1: unknown config keys ['BLOCK_Q'] for a rnn prefill kernel", id="unknown-key"),
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "device": "G", "records": {"s": {"kind": "rnn", "buckets": {"T8xB1": {"config": {"BT": 4}, "ms": -1}}}}}', "records.s.modes.prefill.T8xB1: 'ms' must be a positive number", id="bad-time"),
    pytest.param('{"format": "ratc-autotune", "format_version": 1, "device": "G", "records": {"s": {"kind": "rnn", "buckets": {"big": {"config": {"BT": 4}, "ms": 1}}}}}', "records.s.modes.prefill.big: bucket names look like T131072xB2", id="bad-bucket"),
    pytest.param('{"format": "ratc-autotune", "format_version": 2, "device": "G", "records": {"s": {"kind": "rnn", "modes": {"infer": {}}}}}', "records.s.modes.infer: mode must be one of prefill, train, decode", id="bad-mode"),
    pytest.param('{"format": "ratc-autotune", "format_version": 2, "device": "G", "records": {"s": {"kind": "rnn", "modes": {"train": {"T8xB1": {"config": {"DECODE_BD": 4}, "ms": 1}}}}}}', "records.s.modes.train.T8xB1: unknown config keys ['DECODE_BD'] for a rnn train kernel", id="decode-key-in-train"),
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


class FakeCuda:
    """A CUDA tensor's shape, device and requires_grad, without a GPU."""

    is_cuda = True
    device = __import__("torch").device("cpu")

    def __init__(self, shape, requires_grad=False):
        self.shape, self.requires_grad = shape, requires_grad


def test_build_bakes_mode_specific_records_and_dispatches_on_mode_device_and_bucket(
        tmp_path, monkeypatch):
    from ratc.build import run_pipeline
    from ratc.codegen.render import load_module, signature_of

    sig, tsig, dsig = (signature_of(RNN, mode) for mode in ("prefill", "train", "decode"))
    assert len({sig, tsig, dsig}) == 3
    fast = {"BT": 256, "BS": 4, "BD": 128, "num_warps": 1, "CARRY_BD": 256}
    train = {"BT": 1024, "BS": 16, "BD": 512, "num_warps": 2, "CARRY_BD": 128}
    step = {"DECODE_BD": 128, "DECODE_WARPS": 1}
    f = tmp_path / "FakeGPU.json"
    save_record(f, "Fake GPU", sig, "rnn", "prefill", "T1024xB2",
                {"config": fast, "ms": 1.0, "default_ms": 2.0, "trials": 3})
    save_record(f, "Fake GPU", tsig, "rnn", "train", "T1024xB2", {"config": train, "ms": 3.0})
    save_record(f, "Fake GPU", sig, "rnn", "train", "T4096xB2",
                {"config": fast, "ms": 1.0})  # a train record under the prefill key: not applied
    save_record(f, "Fake GPU", dsig, "rnn", "decode", "T1xB2", {"config": step, "ms": 0.01})
    save_record(f, "Fake GPU", "rnn-0000000000000000", "rnn", "prefill",
                "T8xB1", {"config": {"BT": 4096}, "ms": 1.0})  # another kernel: not applied
    r = run_pipeline("specs/tiny_rnn.yaml", records_dir=tmp_path)
    assert json.loads(r.files["manifest.json"])["tuned_configs"] == {"rnn": {"Fake GPU": {
        "prefill": {"T1024xB2": fast}, "train": {"T1024xB2": train}, "decode": {"T1xB2": step}}}}
    mod = load_module(r.files["kernels/rnn_rnn.py"], "baked_rnn")
    dec = load_module(r.files["kernels/decode_rnn_rnn.py"], "baked_decode_rnn")
    assert mod.TUNED == {"Fake GPU": {"prefill": {"T1024xB2": fast}, "train": {"T1024xB2": train}}}
    assert dec.TUNED == {"Fake GPU": {"decode": {"T1xB2": step}}}

    for m in (mod, dec):
        monkeypatch.setattr(m.torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(m.torch.cuda, "get_device_name", lambda i: "Fake GPU")
    assert mod._launch_config(FakeCuda((2, 900, 192))) == mod.CONFIG | fast  # inference
    assert mod._launch_config(FakeCuda((2, 900, 192), True)) == mod.CONFIG | train  # training
    assert mod._launch_config(FakeCuda((2, 900, 192)), {"BS": 8})["BS"] == 8  # explicit wins
    assert dec._launch_config(FakeCuda((2, 192)), mode="decode", T=1) == dec.CONFIG | step
    mod._DEVICE_NAMES.clear()
    monkeypatch.setattr(mod.torch.cuda, "get_device_name", lambda i: "Other GPU")
    assert mod._launch_config(FakeCuda((2, 900, 192))) == mod.CONFIG  # no record for this device
    # CPU tensors never consult the table
    assert mod._launch_config(__import__("torch").zeros(2, 900, 192)) == mod.CONFIG


def test_prefill_records_are_keyed_by_the_forward_alone():
    """An edit to the backward must not orphan prefill records: their key hashes the forward
    module rendered without its backward; train records hash the whole module."""
    from ratc.codegen.render import forward_signature_text, render_kernel, signature_of

    for m in (RAT_SWA.mixer("rat"), RAT_SWA.mixer("swa")):
        forward, whole = forward_signature_text(m), render_kernel(m)
        bwd = "def rat_bwd(" if m.kind.value == "rat" else "def swa_bwd("
        assert bwd in whole and bwd not in forward
        fwd = "def rat_fwd(" if m.kind.value == "rat" else "def swa_fwd("
        assert fwd in forward and "CONFIG = {" in forward
        assert "BWD_BLOCK_M1" not in forward and "BWD_BT" not in forward  # backward keys too
        assert signature_of(m, "prefill") != signature_of(m, "train")


def test_train_falls_back_to_the_prefill_record(tmp_path, monkeypatch):
    from ratc.build import run_pipeline
    from ratc.codegen.render import load_module, signature_of

    fast = {"BT": 256, "BS": 4, "BD": 128, "num_warps": 1, "CARRY_BD": 256}
    save_record(tmp_path / "G.json", "Fake GPU", signature_of(RNN), "rnn", "prefill", "T8xB1",
                {"config": fast, "ms": 1.0})
    mod = load_module(run_pipeline("specs/tiny_rnn.yaml", records_dir=tmp_path)
                      .files["kernels/rnn_rnn.py"], "baked_rnn_fallback")
    monkeypatch.setattr(mod.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(mod.torch.cuda, "get_device_name", lambda i: "Fake GPU")
    assert mod._launch_config(FakeCuda((1, 8, 192), True)) == mod.CONFIG | fast
    # the custom ops name the mode (under torch.compile they cannot see requires_grad)
    assert mod._launch_config(FakeCuda((1, 8, 192)), mode="train") == mod.CONFIG | fast


def test_records_are_keyed_by_mode_and_version_1_files_are_upgraded(tmp_path):
    p = tmp_path / "GPU.json"
    train = dict(good_entry(), config={"BT": 1024, "BS": 8, "BD": 256, "num_warps": 2,
                                       "CARRY_BD": 128})
    save_record(p, "GPU", "rnn-abc", "rnn", "prefill", "T1024xB2", good_entry())
    save_record(p, "GPU", "rnn-abc", "rnn", "train", "T1024xB2", train)
    save_record(p, "GPU", "rnn-abc", "rnn", "prefill", "T1024xB2", good_entry())  # re-tune
    modes = load_records(p)["records"]["rnn-abc"]["modes"]
    assert modes == {"prefill": {"T1024xB2": good_entry()}, "train": {"T1024xB2": train}}
    assert json.loads(p.read_text())["format_version"] == 2

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "ratc-autotune", "format_version": 1, "device": "GPU",
                               "records": {"rnn-abc": {"kind": "rnn", "mode": "prefill",
                                                       "buckets": {"T8xB1": good_entry()}}}}))
    assert load_records(old)["records"]["rnn-abc"] == {
        "kind": "rnn", "modes": {"prefill": {"T8xB1": good_entry()}}}
    save_record(old, "GPU", "rnn-abc", "rnn", "train", "T8xB1", train)  # written back as v2
    data = json.loads(old.read_text())
    assert data["format_version"] == 2
    assert set(data["records"]["rnn-abc"]["modes"]) == {"prefill", "train"}


def test_build_with_a_bad_record_file_fails_whole(tmp_path):
    from ratc.build import run_pipeline

    (tmp_path / "GPU.json").write_text('{"format": "ratc-autotune", "format_version": 3}')
    with pytest.raises(RecordError, match="record format version 3"):
        run_pipeline("specs/tiny_rnn.yaml", records_dir=tmp_path)


def test_gpu_list_maps_indices_through_cuda_visible_devices(monkeypatch):
    import torch

    from ratc.tune.driver import gpu_list

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_list("all") == ["0", "1"] and gpu_list(None) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_list("all") == ["2", "3"] and gpu_list("1") == ["3"]
    with pytest.raises(ValueError, match="--gpus: no GPU 2 \\(this machine has 2\\)"):
        gpu_list("0,2")


def test_rekey_records_moves_one_mode_unchanged(tmp_path, capsys):
    """scripts/rekey_records.py: the layer's decode records under an old signature move, config
    and time unchanged, to the current signature (buckets already there win); the old
    signature keeps its other modes; other kinds and modes stay put; twice is a no-op."""
    sys.path.insert(0, "scripts")
    try:
        import rekey_records
    finally:
        sys.path.remove("scripts")
    from ratc.codegen.render import signature_of

    m = lower(load_spec("specs/tiny_rat.yaml")).mixer("rat")
    new = signature_of(m, "decode")
    entry = {"config": {"DECODE_BC": 16, "DECODE_WARPS": 2, "DECODE_STAGES": 2,
                        "DECODE_SPLIT_ROWS": 0}, "ms": 0.5}
    p = tmp_path / "GPU.json"
    save_record(p, "GPU", "rat-old", "rat", "decode", "T1024xB2", entry)
    save_record(p, "GPU", "rat-old", "rat", "decode", "T2048xB2", entry)
    save_record(p, "GPU", "rat-old", "rat", "prefill", "T1024xB2",
                {"config": {"BT": 64}, "ms": 1.0})
    save_record(p, "GPU", new, "rat", "decode", "T2048xB2", entry | {"ms": 0.25})
    save_record(p, "GPU", "rnn-x", "rnn", "prefill", "T8xB1", good_entry())
    before = load_records(p)["records"]
    for _ in range(2):
        rekey_records.main(["specs/tiny_rat.yaml", "--layer", "rat", "--mode", "decode",
                            "--dir", str(tmp_path)])
    after = load_records(p)["records"]
    assert after[new]["modes"]["decode"] == {"T1024xB2": entry, "T2048xB2": entry | {"ms": 0.25}}
    assert after["rat-old"]["modes"] == {"prefill": before["rat-old"]["modes"]["prefill"]}
    assert after["rnn-x"] == before["rnn-x"]
    assert capsys.readouterr().out == f"GPU.json: decode rat-old -> {new}: T1024xB2, T2048xB2\n"
    with pytest.raises(SystemExit, match="no layer 'nope'"):
        rekey_records.main(["specs/tiny_rat.yaml", "--layer", "nope", "--mode", "decode",
                            "--dir", str(tmp_path)])


def test_committed_records_match_the_templates():
    """Every record under autotune/ is keyed by the current signature of the paper's layers
    (specs/rat_swa.yaml) in its mode: a template edit that changes a mode's text must re-key
    its records (scripts/rekey_records.py) or re-tune them, else `ratc build` silently bakes
    in none and the layer runs the template defaults."""
    from ratc.codegen.render import signature_of

    current = {(m.kind.value, mode): signature_of(m, mode)
               for m in RAT_SWA.mixers for mode in ("prefill", "train", "decode")}
    files = sorted((Path(__file__).resolve().parents[1] / "autotune").glob("*.json"))
    assert files
    for path in files:
        for sig, rec in load_records(path)["records"].items():
            for mode in rec["modes"]:
                assert current[(rec["kind"], mode)] == sig, f"{path.name}: {sig} {mode} is orphaned"
