"""`ratc train`: the generated CPU path and the reference modules train alike; checkpoints round-trip."""

import pytest
import torch

from ratc.lower import lower
from ratc.spec import load_spec
from ratc.train import TrainConfig, is_validation, load_corpus, make_model, stdlib_files, train

IR = lower(load_spec("specs/tiny_byte_rat_swa.yaml"))
CORPUS = load_corpus(max_bytes=300_000)


def cfg(**kw):
    base = dict(steps=3, batch=2, seq=24, eval_every=2, eval_batches=1, dtype="float64", lr=1e-2,
                warmup=1)
    return TrainConfig(**(base | kw))


def test_corpus_is_the_standard_library_split_by_file():
    files = stdlib_files()
    assert len(files) > 100 and any(p.name == "os.py" for p in files)
    train_data, val_data = CORPUS
    assert train_data.dtype == torch.uint8 and train_data.numel() > 100_000
    assert 0 < val_data.numel() < train_data.numel()
    assert is_validation("os.py") == is_validation("os.py")  # stable, not random


def test_generated_cpu_path_and_reference_give_the_same_losses(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the emitted PyTorch path
    torch.manual_seed(0)
    ref = make_model(IR, reference=True, device="cpu", dtype=torch.float64)
    gen = make_model(IR, reference=False, device="cpu", dtype=torch.float64)
    gen.load_state_dict(ref.state_dict())
    a = train(IR, cfg(), model=ref, corpus=CORPUS)
    b = train(IR, cfg(), model=gen, corpus=CORPUS)
    assert len(a.losses) == 3 and a.losses[-1] < a.losses[0] + 1.0
    for x, y in zip(a.losses + [v for _, v in a.val], b.losses + [v for _, v in b.val]):
        assert abs(x - y) < 1e-9, (a.losses, b.losses)


def test_checkpoint_round_trips(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ck = str(tmp_path / "ck.pt")
    straight = train(IR, cfg(steps=4, schedule_steps=4))
    train(IR, cfg(steps=2, schedule_steps=4, ckpt=ck))
    resumed = train(IR, cfg(steps=4, schedule_steps=4, ckpt=ck, resume=True))
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-12)


def test_wrong_vocabulary_and_missing_checkpoint_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="a byte-level LM needs model.vocab_size = 256, got 97"):
        train(lower(load_spec("specs/tiny_rat.yaml")), cfg())
    with pytest.raises(ValueError, match="--resume: no checkpoint at"):
        train(IR, cfg(ckpt=str(tmp_path / "none.pt"), resume=True), corpus=CORPUS)


def test_cli_train_smoke(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ratc.cli import main

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    r = CliRunner().invoke(main, ["train", "specs/tiny_byte_rat_swa.yaml", "--steps", "2",
                                  "--batch", "2", "--seq", "16", "--eval-every", "1",
                                  "--sample", "8", "--ckpt", str(tmp_path / "c.pt")])
    assert r.exit_code == 0, r.output
    assert "bits per byte" in r.output and "sample: 'def " in r.output
    assert (tmp_path / "c.pt").exists()


def test_cli_train_writes_the_run_as_json(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from ratc.cli import main

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    path = tmp_path / "run.json"
    r = CliRunner().invoke(main, ["train", "specs/tiny_byte_rat_swa.yaml", "--steps", "3",
                                  "--batch", "2", "--seq", "16", "--eval-every", "2",
                                  "--sample", "0", "--amp", "--json", str(path)])
    assert r.exit_code == 0, r.output
    run = json.loads(path.read_text())
    assert run["spec"] == "tiny_byte_rat_swa" and run["implementation"] == "generated"
    assert len(run["losses"]) == 3 and [s for s, _ in run["val"]] == [2, 3]
    assert run["tokens"] == 3 * 2 * 16 and run["tokens_per_s"] > 0 and run["config"]["amp"]
    assert run["val_bits_per_byte"][0][1] == pytest.approx(run["val"][0][1] / 0.6931471805599453)
