"""Move a layer's tuning records, unchanged, from an old kernel signature to the current one.

A template edit that changes a mode's rendered text (a comment, a refactor, a kernel whose launch
keys keep their meaning) changes that mode's signature, and the records keyed by the old one no
longer apply. When the launch keys still mean what they meant, this moves them:

    python scripts/rekey_records.py specs/rat_swa.yaml --layer rat --mode decode [--dir autotune]

Every device file under --dir is searched for records of the layer's kind in that mode whose
signature is not the current one; if exactly one such signature holds the mode, its buckets move
to the current signature (existing buckets there are kept) and the old signature loses the mode.
Prints each move; autotune/README.md should say why it was done.
"""
import argparse
import sys
from pathlib import Path

from ratc.codegen.render import signature_of
from ratc.lower import lower
from ratc.spec import load_spec
from ratc.tune.records import load_records, write_records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--layer", required=True)
    ap.add_argument("--mode", required=True, choices=("prefill", "train", "decode"))
    ap.add_argument("--dir", default="autotune")
    args = ap.parse_args(argv)
    ir = lower(load_spec(args.spec))
    mixers = {m.name: m for m in ir.mixers}
    if args.layer not in mixers:
        sys.exit(f"{args.spec}: no layer {args.layer!r} (layers: {', '.join(sorted(mixers))})")
    m = mixers[args.layer]
    new = signature_of(m, args.mode)
    for path in sorted(Path(args.dir).glob("*.json")):
        data = load_records(path)
        recs = data["records"]
        old = [s for s, r in recs.items()
               if s != new and r["kind"] == m.kind.value and args.mode in r["modes"]]
        if not old:
            continue
        if len(old) > 1:
            sys.exit(f"{path}: several old {m.kind.value} signatures hold {args.mode}: {old}")
        moved = recs[old[0]]["modes"].pop(args.mode)
        if not recs[old[0]]["modes"]:
            del recs[old[0]]
        target = recs.setdefault(new, {"kind": m.kind.value, "modes": {}})
        target["modes"].setdefault(args.mode, {})
        for bucket, entry in moved.items():
            target["modes"][args.mode].setdefault(bucket, entry)
        write_records(path, data)
        print(f"{path.name}: {args.mode} {old[0]} -> {new}: {', '.join(sorted(moved))}")


if __name__ == "__main__":
    main()
