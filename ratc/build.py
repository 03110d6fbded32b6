"""`ratc build`: the whole pipeline, one named stage per line.

    spec   = load_spec(path)                 # YAML -> validated Spec
    ir     = lower(spec)                     # Spec -> ModelIR
    tuned  = tuned_for(ir)                   # matching autotune/<GPU>.json records
    files  = emit(ir, tuned)                 # IR -> {path: text}, tuned configs baked in
    write(files, out_dir)                    # temp folder, then an atomic swap
(the cost model, `model_cost(ir)`, is its own stage: `--dump cost`).

`ratc build --dump STAGE` prints one stage's output instead of writing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .codegen.emit import emit
from .cost import model_cost
from .ir import ModelIR, ir_hash, to_jsonable
from .lower import lower
from .spec import Spec, load_spec

STAGES = ("spec", "ir", "cost", "emit")


@dataclass
class BuildResult:
    spec: Spec
    ir: ModelIR
    files: dict[str, str]
    out_dir: Path | None


def tuned_for(ir: ModelIR, records_dir: str | Path = "autotune") -> dict[str, dict]:
    """{layer name: {device name: {mode: {shape bucket: launch config}}}} from every record file
    in records_dir: each mode's records whose signature matches the text that mode runs
    (codegen.render.signature_of: the forward without its backward for prefill, the whole forward
    module for train, the decode module for decode). Every file is validated whole first: a bad
    one raises RecordError and nothing is applied."""
    from .codegen.render import signature_of
    from .tune.records import MODES, load_records

    files = [load_records(p) for p in sorted(Path(records_dir).glob("*.json"))]
    out: dict[str, dict] = {}
    for m in ir.mixers:
        sigs = {mode: signature_of(m, mode) for mode in MODES}
        for data in files:
            for mode, sig in sorted(sigs.items()):
                buckets = data["records"].get(sig, {}).get("modes", {}).get(mode)
                if buckets:
                    out.setdefault(m.name, {}).setdefault(data["device"], {})[mode] = {
                        bucket: entry["config"] for bucket, entry in sorted(buckets.items())}
    return out


def manifest(spec: Spec, ir: ModelIR, files: dict[str, str], tuned: dict[str, dict]) -> str:
    data = {
        "ratc_version": __version__,
        "spec": spec.path,
        "spec_sha256": spec.sha256,
        "ir_sha256": ir_hash(ir),
        "tuned_configs": tuned,
        "files": {p: hashlib.sha256(t.encode()).hexdigest() for p, t in sorted(files.items())},
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def run_pipeline(path: str | Path, records_dir: str | Path = "autotune") -> BuildResult:
    spec = load_spec(path)                        # YAML -> validated Spec
    ir = lower(spec)                              # Spec -> ModelIR
    tuned = tuned_for(ir, records_dir)            # autotune records that match these kernels
    files = emit(ir, tuned)                       # IR -> {path: text}
    files["manifest.json"] = manifest(spec, ir, files, tuned)
    return BuildResult(spec, ir, files, None)


def dump(path: str | Path, stage: str) -> str:
    """The output of one stage as text."""
    spec = load_spec(path)
    if stage == "spec":
        return json.dumps(spec.data, indent=2)
    ir = lower(spec)
    if stage == "ir":
        return json.dumps(to_jsonable(ir), indent=2)
    if stage == "cost":
        mc = model_cost(ir)
        rows = [{"layer": m.name, **{k: str(getattr(m, k)) for k in
                                     ("params", "fwd_flops", "train_flops", "bytes_moved",
                                      "cache_bytes")}} for m, _ in mc.blocks[:len(ir.mixers)]]
        return json.dumps({"layers": rows, "total_params": str(mc.total.params)}, indent=2)
    files = run_pipeline(path).files
    return "".join(f"# ===== {p} =====\n{t}" for p, t in files.items())


def write(files: dict[str, str], out_dir: Path) -> None:
    """Write into a temporary sibling folder, then swap it in: a failure leaves out_dir as it was."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old.{os.getpid()}")
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            if old is not None:
                os.replace(old, out_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def import_built(folder: str | Path):
    """Import a built package from its folder (relative imports intact), under a unique name."""
    folder = Path(folder).resolve()
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:10]
    mod_name = f"ratc_built_{folder.name}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def build(path: str | Path, out_dir: str | Path | None = None,
          records_dir: str | Path = "autotune") -> BuildResult:
    result = run_pipeline(path, records_dir)
    out = Path(out_dir) if out_dir else Path("generated") / result.spec.name
    write(result.files, out)
    result.out_dir = out
    return result
