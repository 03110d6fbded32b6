"""The command line: exit codes, one-line errors, JSON output, help that teaches."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ratc.cli import main

SPECS = ["specs/attention.yaml", "specs/rat.yaml", "specs/rnn.yaml", "specs/attention_swa.yaml",
         "specs/rat_swa.yaml"]


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_check_every_spec_clean():
    import glob

    r = run("check", *sorted(glob.glob("specs/*.yaml")))
    assert r.exit_code == 0, r.output
    assert r.output.count("ok") == len(glob.glob("specs/*.yaml"))


def test_explain_json_reports_paper_parameter_count():
    r = run("explain", "specs/rat_swa.yaml", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["total"]["params"] == 1_351_739_392
    assert [x["name"] for x in data["layers"]] == ["rat", "swa", "ffn", "embedding+head"]
    assert data["ir"]["layers"] == ["rat", "swa"] * 12


def test_explain_tables_evaluate_at_batch_and_seq():
    r = run("explain", "specs/rat_swa.yaml", "--batch", "2", "--seq", "131072")
    assert r.exit_code == 0, r.output
    assert "1,351,739,392" in r.output and "B=2, T=131072" in r.output


def test_bad_spec_is_one_line_exit_2(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(open("specs/tiny_rat.yaml").read().replace("chunk: 8", "chunk: 12"))
    # a real process: no traceback may reach the user
    r = subprocess.run([sys.executable, "-m", "ratc", "check", str(p)], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"{p}:19:12: layers.rat.chunk: must be a power of two from 1 to "
                                "1024, got 12")
    assert "Traceback" not in r.stderr + r.stdout


def test_missing_file_exit_2():
    r = subprocess.run([sys.executable, "-m", "ratc", "explain", "specs/nope.yaml"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "specs/nope.yaml:1:1: cannot read: No such file or directory"


@pytest.mark.parametrize("cmd", [[], ["check"], ["explain"], ["build"]], ids=lambda c: c[0] if c else "ratc")
def test_help_teaches_by_example(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0
    assert "Example" in r.output or "Typical session" in r.output


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
def test_bench_without_gpu_says_so_exit_2():
    r = subprocess.run([sys.executable, "-m", "ratc", "bench", "specs/tiny_rat_swa.yaml"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("ratc bench: no CUDA GPU on this machine (torch.cuda.is_available() "
                                "is False); run it where the kernels can run")


def test_bench_bad_layer_and_sizes_exit_2():
    r = run("bench", "specs/tiny_rat_swa.yaml", "--layer", "nope")
    assert r.exit_code == 2 and "--layer nope: no such layer; the spec defines rat, swa" in r.output
    r = run("bench", "specs/tiny_rat_swa.yaml", "--seq", "16,32", "--batch", "1,2,3")
    assert r.exit_code == 2 and "give one value or one per --seq value (2), got 3" in r.output
    r = run("bench", "specs/tiny_rat_swa.yaml", "--seq", "16,x")
    assert r.exit_code == 2 and "expected comma-separated integers" in r.output
