"""The `ratc` command line: check, explain, build, bench (and tune, where present).

Every user mistake (a bad spec, a missing file, an impossible size) prints one line per problem
to stderr and exits with status 2; nothing a user can cause ends in a traceback.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .build import STAGES
from .cost import model_cost
from .ir import ModelIR, to_jsonable
from .lower import lower
from .spec import SpecError, load_spec

out = Console(highlight=False)
if not out.is_terminal:  # pipes and CI logs: wide enough that tables do not wrap numbers
    out = Console(highlight=False, width=160)
err = Console(stderr=True, highlight=False, width=400, soft_wrap=True)


class UserError(click.ClickException):
    """A mistake in the user's input: one line, exit status 2."""

    exit_code = 2

    def show(self, file=None):
        err.print(self.message, markup=False, soft_wrap=True)


def load_ir(path: str) -> ModelIR:
    """Spec file -> IR, or exit 2 with every problem listed."""
    try:
        return lower(load_spec(path))
    except SpecError as e:
        raise UserError(str(e)) from None


def layer_names(spec: str, ir: ModelIR, layers: tuple[str, ...]) -> list[str]:
    """--layer values checked against the spec (default: every layer definition)."""
    defined = [m.name for m in ir.mixers]
    for n in layers:
        if n not in defined:
            raise UserError(f"{spec}: --layer {n}: no such layer; the spec defines "
                            f"{', '.join(defined)}")
    return list(layers) or defined


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ratc")
def main():
    """ratc compiles a YAML model spec into fused Triton kernels and PyTorch modules.

    \b
    Typical session:
      ratc check specs/*.yaml                       # validate specs
      ratc explain specs/rat_swa.yaml --seq 16384   # sizes, FLOPs, bytes, cache per layer
      ratc build specs/rat_swa.yaml                 # write generated/rat_swa/
      ratc bench specs/rat_swa.yaml --layer rat --mode prefill --seq 131072 --batch 2
    """


# -------------------------------------------------------------------------------------------------
# check


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(specs):
    """Validate SPEC files; print every problem as file:line:col: field: message.

    \b
    Examples:
      ratc check specs/rat_swa.yaml
      ratc check specs/*.yaml
    Exit status: 0 when every file is valid, 2 otherwise.
    """
    problems = []
    for path in specs:
        try:
            ir = lower(load_spec(path))
            out.print(f"[green]ok[/]  {path}: {ir.n_layers} layers, "
                      f"{', '.join(f'{m.name} ({m.kind.value})' for m in ir.mixers)}")
        except SpecError as e:
            problems.append(str(e))
    if problems:
        raise UserError("\n".join(problems))


# -------------------------------------------------------------------------------------------------
# explain


def _fmt(n) -> str:
    n = float(n)
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return f"{n:g}"


def explain_data(ir: ModelIR, batch: int, seq: int, dtype_bytes: int = 2) -> dict:
    mc = model_cost(ir, dtype_bytes)
    rows, seen = [], set()
    for i, (m, f) in enumerate(mc.blocks):
        if m.name not in seen:
            seen.add(m.name)
            count = ir.layers.count(m.name)
            rows.append((m.name, ir.mixer(m.name).kind.value, count, m))
    rows.append(("ffn", "ffn", ir.n_layers, mc.blocks[0][1]))
    rows.append(("embedding+head", "embedding", 1, mc.embedding))

    def entry(name, kind, count, c):
        keys = ("params", "fwd_flops", "train_flops", "bytes_moved", "cache_bytes")
        return {
            "name": name, "kind": kind, "count": count,
            "symbolic": {k: str(sympy_simplify(getattr(c, k))) for k in keys},
            "per_layer": {k: c.evaluate(batch, seq)[k] for k in keys},
        }

    return {
        "spec": ir.name,
        "batch": batch,
        "seq": seq,
        "dtype_bytes": dtype_bytes,
        "ir": to_jsonable(ir),
        "layers": [entry(*r) for r in rows],
        "total": {**mc.total.evaluate(batch, seq),
                  "symbolic": {k: str(sympy_simplify(getattr(mc.total, k)))
                               for k in ("fwd_flops", "cache_bytes")}},
    }


def sympy_simplify(e):
    import sympy

    return sympy.simplify(e) if len(str(e)) < 400 else e


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--batch", "-b", type=click.IntRange(1, 1 << 20), default=1, show_default=True,
              help="Batch size B to evaluate the cost formulas at.")
@click.option("--seq", "-t", type=click.IntRange(1, 1 << 26), default=None,
              help="Sequence length T (default: the spec's max_seq_len).")
@click.option("--dtype-bytes", type=click.Choice(["1", "2", "4"]), default="2", show_default=True,
              help="Bytes per stored element (2 = bf16).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
def explain(spec, batch, seq, dtype_bytes, as_json):
    """Print the resolved model and its cost table (symbolic in B, T and evaluated).

    \b
    Examples:
      ratc explain specs/rat_swa.yaml
      ratc explain specs/rat_swa.yaml --batch 2 --seq 131072
      ratc explain specs/rat_swa.yaml --json | python -c "import json,sys; print(json.load(sys.stdin)['total']['params'])"
    FLOPs count matrix products only; see ratc/cost.py for every convention.
    """
    ir = load_ir(spec)
    seq = seq or ir.max_seq_len
    data = explain_data(ir, batch, seq, int(dtype_bytes))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    t = Table(title=f"{ir.name}: {ir.n_layers} layers, D={ir.d_model}, vocab {ir.vocab_size}, "
                    f"{'tied' if ir.tie_embeddings else 'untied'} embeddings")
    for c in ("layer", "kind", "heads x dim", "G", "chunk / window", "gate", "position"):
        t.add_column(c)
    for m in ir.mixers:
        cw = (f"L={m.chunk}" + (f" of {list(m.chunk_candidates)}" if len(m.chunk_candidates) > 1 else "")
              if m.chunk else (f"W={m.window}" if m.window else "-"))
        gate = m.forget_gate.source if m.forget_gate else "-"
        if m.forget_gate:
            gate += f", in {m.input_scale.value}" + (", out sigmoid" if m.output_gate else "")
        t.add_row(m.name, m.kind.value, f"{m.heads}x{m.head_dim}", str(m.groups or "-"), cw, gate,
                  m.position.value)
    out.print(t)
    out.print("pattern: " + " ".join(ir.layers))
    c = Table(title=f"costs at B={batch}, T={seq} ({dtype_bytes}-byte elements), per layer")
    for col in ("layer", "x", "params", "fwd FLOPs", "train FLOPs", "bytes moved", "cache bytes/seq"):
        c.add_column(col, justify="right" if col != "layer" else "left")
    for row in data["layers"]:
        v = row["per_layer"]
        c.add_row(row["name"], str(row["count"]), f"{v['params']:,}", _fmt(v["fwd_flops"]),
                  _fmt(v["train_flops"]), _fmt(v["bytes_moved"]), _fmt(v["cache_bytes"]))
    tot = data["total"]
    c.add_row("[bold]total", "", f"[bold]{tot['params']:,}", _fmt(tot["fwd_flops"]),
              _fmt(tot["train_flops"]), _fmt(tot["bytes_moved"]), _fmt(tot["cache_bytes"]))
    out.print(c)
    s = Table(title="symbolic, per layer (B batch, T length)")
    s.add_column("layer")
    s.add_column("fwd FLOPs")
    s.add_column("cache bytes/seq")
    for row in data["layers"]:
        s.add_row(row["name"], row["symbolic"]["fwd_flops"], row["symbolic"]["cache_bytes"])
    out.print(s)


# -------------------------------------------------------------------------------------------------
# build


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: generated/<spec name>/).")
@click.option("--dump", type=click.Choice(STAGES), default=None,
              help="Print one pipeline stage's output instead of writing: spec (validated data), "
                   "ir (resolved model), cost (symbolic costs), emit (every generated file).")
def build(spec, out_dir, dump):
    """Generate a standalone package of Triton kernels and PyTorch modules for SPEC.

    \b
    Examples:
      ratc build specs/rat_swa.yaml                  # writes generated/rat_swa/
      ratc build specs/rat_swa.yaml -o /tmp/rat_swa  # elsewhere
      ratc build specs/rat_swa.yaml --dump ir        # show the resolved model
      python -m generated.rat_swa --seq 64           # smoke-run what was built
    Tuning records in autotune/<GPU>.json are baked in (see `ratc tune`). The same spec and ratc
    version always give byte-identical files; a failed build leaves the old output untouched.
    """
    from .build import build as run_build, dump as run_dump
    from .tune.records import RecordError

    try:
        if dump:
            click.echo(run_dump(spec, dump), nl=False)
            return
        result = run_build(spec, out_dir)
    except (SpecError, RecordError) as e:
        raise UserError(str(e)) from None
    n = len(result.files)
    out.print(f"[green]built[/] {result.out_dir}/ ({n} files) from {spec}: "
              f"{result.ir.n_layers} layers, kernels for "
              f"{', '.join(f'{m.name} ({m.kind.value})' for m in result.ir.mixers)}")


# -------------------------------------------------------------------------------------------------
# bench


def _int_list(ctx, param, value):
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


def _batch_arg(ctx, param, value):
    """--batch: None (the mode's default), "auto", or comma-separated positive integers."""
    if value is None or value.strip().lower() == "auto":
        return None if value is None else "auto"
    return _int_list(ctx, param, value)


BENCH_DEFAULT_SIZES = ([16384, 131072], [16, 2])  # ANCHORS.md's layer sizes: T, batch


def bench_plan(mode, seq, batch, prompt, new, layers, plot_path):
    """Check the bench options against --mode; one readable UserError per mistake.

    Returns (sizes [(T, batch)], None) for the layer modes, (None, batch or None for auto) for
    generate.
    """
    if mode == "generate":
        if seq is not None:
            raise UserError("--seq does not apply to --mode generate; use --prompt and --new")
        if layers:
            raise UserError("--layer does not apply to --mode generate: it runs the whole model")
        if plot_path:
            raise UserError("--plot does not apply to --mode generate (use --json)")
        if batch not in (None, "auto") and len(batch) != 1:
            raise UserError(f"--batch: --mode generate takes one batch size or 'auto', got "
                            f"{len(batch)} values")
        return None, (None if batch in (None, "auto") else batch[0])
    if prompt is not None or new is not None:
        raise UserError(f"--prompt and --new apply only to --mode generate (not --mode {mode}); "
                        f"use --seq and --batch")
    if batch == "auto":
        raise UserError(f"--batch auto applies only to --mode generate; --mode {mode} takes "
                        f"integers (one per --seq value, or one for all)")
    seq = BENCH_DEFAULT_SIZES[0] if seq is None else seq
    given = batch is not None
    batch = batch if given else BENCH_DEFAULT_SIZES[1]
    if len(batch) not in (1, len(seq)):
        raise UserError(f"--batch: give one value or one per --seq value ({len(seq)}), "
                        f"got {len(batch)}" + ("" if given else " (the default 16,2)"))
    return list(zip(seq, batch * len(seq) if len(batch) == 1 else batch)), None


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--layer", "layers", multiple=True,
              help="Layer name from the spec (repeatable; default: every layer definition).")
@click.option("--mode", type=click.Choice(["prefill", "train", "decode", "generate"]),
              default="prefill", show_default=True,
              help="prefill: one forward of a layer with its projections, no grad. "
                   "train: forward + backward (with peak memory). "
                   "decode: one token per row against a cache of T tokens (eager and CUDA graph). "
                   "generate: the whole model's tokens/s, Model.generate after a prompt.")
@click.option("--seq", "-t", callback=lambda c, p, v: None if v is None else _int_list(c, p, v),
              default=None, help="Sequence lengths, comma-separated (layer modes; default "
                                 "16384,131072).")
@click.option("--batch", "-b", callback=_batch_arg, default=None,
              help="Batch sizes: one per --seq value, or one for all (default 16,2). "
                   "--mode generate: one size or 'auto' (default: the largest that fits).")
@click.option("--prompt", type=click.IntRange(1), default=None,
              help="--mode generate: prompt tokens per row [default: 3072].")
@click.option("--new", type=click.IntRange(1), default=None,
              help="--mode generate: tokens to generate per row [default: 1024].")
@click.option("--rep", type=click.IntRange(1, 100000), default=100, show_default=True,
              help="Milliseconds of timing per measurement (do_bench rep; decode: wall clock).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the results as JSON here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG of latency against length (the paper's Figure 1).")
@click.option("--records-dir", type=click.Path(file_okay=False), default="autotune",
              show_default=True,
              help="Tuning records baked into the benched package, as `ratc build` bakes them "
                   "(a folder without records for this GPU: the templates' defaults).")
def bench(spec, layers, mode, seq, batch, prompt, new, rep, json_path, plot_path, records_dir):
    """Time generated layers against the paper-style RAT, SDPA and FlexAttention on this GPU.

    \b
    Examples:
      ratc bench specs/rat_swa.yaml --layer rat --seq 16384,131072 --batch 16,2
      ratc bench specs/rat_swa.yaml --mode train --seq 16384,131072 --batch 16,2 --json t.json
      ratc bench specs/rat_swa.yaml --mode decode --layer rat --seq 131072 --batch 2
      ratc bench specs/rat.yaml --mode generate --prompt 3072 --new 1024 --batch auto
    Each baseline's output (train: input gradient; decode: step on a real prefilled cache, small
    size) is checked against the generated layer (rel. error column) before it is timed. Times are
    triton.testing.do_bench medians (decode: wall clock of back-to-back steps, eager and replayed
    from a CUDA graph); TFLOP/s use the cost model's FLOPs (train: train FLOPs); the roofline % is
    the floor / time: max(FLOPs/matmul ceiling, bytes/copy ceiling), decode: (weights + cache
    bytes)/copy ceiling, ceilings measured now.
    """
    import torch

    ir = load_ir(spec)
    sizes, gen_batch = bench_plan(mode, seq, batch, prompt, new, layers, plot_path)
    names = layer_names(spec, ir, layers) if mode != "generate" else []
    from .build import tuned_for
    from .tune.records import RecordError

    try:  # every record file checked whole before anything runs (the bench bakes them in)
        tuned = tuned_for(ir, records_dir)
    except RecordError as e:
        raise UserError(str(e)) from None
    if not torch.cuda.is_available():
        raise UserError("ratc bench: no CUDA GPU on this machine (torch.cuda.is_available() is "
                        "False); run it where the kernels can run")
    from .bench import plot, run_bench, run_generate, save_json

    def progress_to(status):
        """Show progress in the spinner; off a terminal (a log file), also as timed lines."""
        def progress(message):
            status.update(message)
            if not out.is_terminal:
                err.log(message)
        return progress

    if mode == "generate":
        with out.status("generating") as status:
            result = run_generate(ir, prompt or 3072, new or 1024, gen_batch,
                                  progress=progress_to(status), tuned=tuned)
        _generate_table(result)
        _tuned_line(result, records_dir)
        if json_path:
            save_json(result, json_path)
        return
    with out.status("benchmarking") as status:
        result = run_bench(ir, names, sizes, mode, progress=progress_to(status), rep=rep,
                           checkpoint=(lambda r: save_json(r, json_path)) if json_path else None,
                           tuned=tuned)
    ceil = (f"ceilings {result['ceilings']['bf16_matmul_tflops']:.0f} TFLOP/s, "
            f"{result['ceilings']['copy_tb_s']:.2f} TB/s")
    t = Table(title=f"{ir.name} {mode} on {result['device']} (bf16; {ceil})")
    decode = mode == "decode"
    cols = ["layer", "T x B", "implementation"]
    cols += ["step", "us", "speed-up", "% roofline", "rel. err"] if decode else \
        ["ms", "speed-up", "TFLOP/s", "% roofline"] + (["peak GiB"] if mode == "train" else []) \
        + ["rel. err"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("layer", "implementation", "step") else "right")
    for r in result["rows"]:
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        roof = f"{r['roofline_pct']:.0f}%" if r["roofline_pct"] else "-"
        err_s = f"{r['rel_err']:.1e}" if r["rel_err"] is not None else "-"
        head = [r["layer"], f"{r['seq']} x {r['batch']}", r["impl"]]
        if decode:
            t.add_row(*head, "CUDA graph" if r["graph"] else "eager",
                      f"{r['ms'] * 1e3:.1f}" if r["ms"] else r["note"] or "-", speed, roof, err_s)
            continue
        row = head + [f"{r['ms']:.3f}" if r["ms"] else r["note"] or "-", speed,
                      f"{r['tflops']:.0f}" if r["tflops"] else "-", roof]
        if mode == "train":
            row.append(f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-")
        t.add_row(*row, err_s)
    out.print(t)
    _tuned_line(result, records_dir)
    if decode:
        out.print("decode: us per step at position T, back-to-back steps on the wall clock; "
                  "speed-up against the generated step of the same kind (eager or CUDA graph)")
    if json_path:
        save_json(result, json_path)
    if plot_path:
        plot(result, plot_path)


def _tuned_line(result, records_dir):
    """One line: which tuning records of records_dir steered the benched launches."""
    parts = [f"{layer} {mode} {', '.join(buckets)}" for layer, modes in result["tuned"].items()
             for mode, buckets in modes.items()]
    out.print(f"tuning records ({records_dir}/) for {result['device']}: "
              + ("; ".join(parts) if parts else "none, the templates' defaults"))


def _generate_table(result):
    t = Table(title=f"generate on {result['device']} (bf16, random-init weights, greedy, "
                    f"CUDA-graph steps)")
    for c in ("spec", "batch", "prompt + new", "prefill s", "decode s", "decode tok/s",
              "total tok/s", "cache GiB", "peak GiB", "note"):
        t.add_column(c, justify="left" if c in ("spec", "note") else "right")
    for r in result["rows"]:
        t.add_row(r["spec"], f"{r['batch']}{' (auto)' if r['batch_auto'] else ''}",
                  f"{r['prompt']} + {r['new']}", f"{r['prefill_s']:.2f}", f"{r['decode_s']:.2f}",
                  f"{r['decode_tokens_per_s']:,.0f}", f"{r['tokens_per_s']:,.0f}",
                  f"{r['cache_gib']:.1f}", f"{r['peak_gib']:.1f}", r["note"])
    out.print(t)


# -------------------------------------------------------------------------------------------------
# tune


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--layer", "layers", multiple=True, help="Layer to tune (repeatable; default: all).")
@click.option("--mode", type=click.Choice(["prefill", "train", "decode"]), default="prefill",
              show_default=True,
              help="prefill: time one forward launch. train: forward + backward (the backward's "
                   "own keys join the space). decode: one decode step at position T-1 on a cache "
                   "of capacity T. Each mode keeps its own records.")
@click.option("--seq", "-t", callback=_int_list, required=True,
              help="Sequence lengths (decode: context lengths), comma-separated.")
@click.option("--batch", "-b", type=click.IntRange(1, 1 << 16), required=True, help="Batch size.")
@click.option("--trials", type=click.IntRange(1, 100000), default=40, show_default=True,
              help="Finished trials each study should hold (resumed studies count theirs).")
@click.option("--timeout", type=click.FloatRange(1, None), default=None,
              help="Stop each study (or --staged search: it records its best config so far) "
                   "after this many seconds.")
@click.option("--storage", default=None,
              help="Optuna storage shared by workers: a journal file path or a database URL "
                   "(default: .ratc/studies/<device>.journal).")
@click.option("--gpus", default=None,
              help="'all' or a list like 0,1: one worker process per GPU on one shared study.")
@click.option("--records-dir", type=click.Path(file_okay=False), default="autotune",
              show_default=True, help="Where autotune/<GPU name>.json goes.")
@click.option("--sweep", "do_sweep", is_flag=True,
              help="After each study, time every config of its pruned space and report how close "
                   "Optuna's best came and at which trial it first got within 2%.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the study summaries (and sweep reports) as JSON here.")
@click.option("--staged", is_flag=True,
              help="Instead of an Optuna study: sweep one launch's keys at a time (RAT train: "
                   "the forward's, dq's, dK/dV's, the scans'), the others held at the best so "
                   "far, every config timed whole, from the default or the current record, "
                   "whichever is faster. About 150 configs (and each group's best retimed) for RAT "
                   "train, whose joint space (about 7.5 million configs) a study samples too "
                   "thinly. One process; "
                   "not with --trials, --storage, --gpus or --sweep.")
@click.option("--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="--staged: compile each group's configs first in this many processes (into "
                   "Triton's cache), then time them in this one.")
@click.pass_context
def tune(ctx, spec, layers, mode, seq, batch, trials, timeout, storage, gpus, records_dir,
         do_sweep, json_path, staged, jobs):
    """Search tile sizes with Optuna for SPEC's kernels on this GPU; record the winners.

    \b
    Examples:
      ratc tune specs/rat_swa.yaml --seq 16384,131072 --batch 2 --trials 60
      ratc tune specs/rat_swa.yaml --layer rat --seq 131072 --batch 2 --gpus all \\
          --storage sqlite:///studies.db
      ratc tune specs/rat_swa.yaml --layer swa --mode train --seq 16384 --batch 16 --trials 30
      ratc tune specs/rat_swa.yaml --layer rat --mode decode --seq 131072 --batch 2 --sweep
      ratc tune specs/rat_swa.yaml --layer rat --mode train --seq 16384 --batch 16 --staged \\
          --jobs 14
    Every config is verified against the default config's outputs (train: and gradients;
    decode: and the updated cache) before it is timed; failures (compile errors, out of
    resources) are failed trials. Studies resume where they stopped. Results go to
    autotune/<GPU name>.json, keyed by kernel signature, mode and shape bucket; `ratc build`
    bakes them in (train records steer launches whose proj requires grad, prefill the rest).
    """
    from .tune.driver import tune_spec

    if jobs > 1 and not staged:
        raise UserError("--jobs compiles ahead for --staged only (a study's trials are chosen "
                        "one at a time)")
    if staged:
        given = [p.opts[0] for p in ctx.command.params
                 if p.name in ("trials", "storage", "gpus", "do_sweep")
                 and ctx.get_parameter_source(p.name) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise UserError(f"--staged searches in one process without Optuna; drop "
                            f"{', '.join(given)}")
    ir = load_ir(spec)
    names = layer_names(spec, ir, layers)
    try:
        tune_spec(ir, names, mode, seq, batch, trials, timeout, storage, gpus, records_dir,
                  console=out, spec_path=spec, do_sweep=do_sweep, json_path=json_path,
                  staged=staged, jobs=jobs)
    except ValueError as e:
        raise UserError(str(e)) from None


# -------------------------------------------------------------------------------------------------
# train


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--steps", type=click.IntRange(1), default=200, show_default=True)
@click.option("--batch", "-b", type=click.IntRange(1), default=8, show_default=True)
@click.option("--seq", "-t", type=click.IntRange(2), default=256, show_default=True,
              help="Context length in bytes.")
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), default=3e-3, show_default=True)
@click.option("--eval-every", type=click.IntRange(1), default=50, show_default=True)
@click.option("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu",
              show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float64"]), default="float32",
              show_default=True)
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Save a checkpoint here at the end (atomically).")
@click.option("--resume", is_flag=True, help="Continue from --ckpt to --steps.")
@click.option("--sample", "sample_tokens", type=click.IntRange(0), default=200, show_default=True,
              help="Bytes to generate with Model.generate at the end.")
@click.option("--reference", is_flag=True, help="Train ratc's reference modules instead.")
@click.option("--amp", is_flag=True,
              help="bf16 autocast for forward and loss (weights and optimizer stay in --dtype).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the run (losses, validation, tokens/s, sample) as JSON here.")
def train(spec, steps, batch, seq, lr, eval_every, device, dtype, ckpt, resume, sample_tokens,
          reference, amp, seed, json_path):
    """Train SPEC's generated Model as a byte-level LM on the Python standard library's sources.

    \b
    Examples:
      ratc train specs/tiny_byte_rat_swa.yaml --steps 100 --seq 128
      ratc train specs/small_rat_swa.yaml --steps 2000 --batch 16 --seq 2048 --ckpt run/a.pt
      ratc train specs/small_rat_swa.yaml --steps 4000 --batch 16 --seq 2048 --ckpt run/a.pt --resume
    Held-out standard-library files give the validation loss (also in bits per byte).
    """
    import math

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .train import TrainConfig, save_run, train as run_train

    ir = load_ir(spec)
    if resume and not ckpt:
        raise UserError("--resume needs --ckpt PATH")
    cfg = TrainConfig(steps=steps, batch=batch, seq=seq, lr=lr, eval_every=eval_every,
                      device=device, dtype=dtype, ckpt=ckpt, resume=resume,
                      sample_tokens=sample_tokens, seed=seed, amp=amp)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}  {task.fields[status]}"),
                  TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task(f"train {ir.name}", total=steps, status="")

        def progress(step, result):
            val = f"  val {result.val[-1][1]:.3f}" if result.val else ""
            bar.update(task, completed=step, status=f"loss {result.losses[-1]:.3f}{val}")

        try:
            result = run_train(ir, cfg, reference=reference, progress=progress)
        except ValueError as e:
            raise UserError(str(e)) from None
    for step, v in result.val:
        out.print(f"step {step}: validation loss {v:.4f} ({v / math.log(2):.4f} bits per byte)")
    out.print(f"{result.tokens_per_s:,.0f} tokens/s")
    if result.sample:
        out.print("sample: " + repr(result.sample.decode("utf-8", errors="replace")))
    if json_path:
        save_run(json_path, ir, cfg, result, reference)


def run():  # pragma: no cover - console entry for `python -m ratc`
    main(prog_name="ratc")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
