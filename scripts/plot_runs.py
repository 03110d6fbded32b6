"""Table and loss-curve plot from `ratc train --json` runs (docs/results.md is built from these).

    python scripts/plot_runs.py runs/small_*.json --png docs/img/loss_curves.png
    python scripts/plot_runs.py runs/*.generated.json runs/*.reference.json --png docs/img/ref.png

Prints a markdown table: spec, implementation, parameters, tokens, final validation loss and bits
per byte, tokens/s; the plot shows training loss (smoothed) and validation loss against tokens.
"""

import argparse
import json
import math
from pathlib import Path


def smooth(values, beta=0.95):
    out, avg = [], None
    for v in values:
        avg = v if avg is None else beta * avg + (1 - beta) * v
        out.append(avg)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--png", required=True)
    args = ap.parse_args()
    runs = [json.loads(Path(p).read_text()) for p in args.runs]
    runs.sort(key=lambda r: r["val"][-1][1])
    print("| spec | implementation | parameters | tokens | val loss | bits/byte | tokens/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in runs:
        v = r["val"][-1][1]
        print(f"| {r['spec']} | {r['implementation']} | {r['parameters'] / 1e6:.1f} M | "
              f"{r['tokens'] / 1e6:.1f} M | {v:.4f} | {v / math.log(2):.4f} | "
              f"{r['tokens_per_s']:,.0f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in runs:
        per_step = r["config"]["batch"] * r["config"]["seq"] / 1e6
        label = f"{r['spec']} ({r['implementation']})"
        steps = range(1, len(r["losses"]) + 1)
        (line,) = left.plot([s * per_step for s in steps], smooth(r["losses"]), label=label, lw=1)
        right.plot([s * per_step for s, _ in r["val"]], [v / math.log(2) for _, v in r["val"]],
                   "o-", color=line.get_color(), label=label, ms=3)
    left.set(xlabel="tokens (M)", ylabel="training loss (nats, smoothed)", title="training loss")
    right.set(xlabel="tokens (M)", ylabel="bits per byte", title="validation")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=8)
    first = runs[0]
    fig.suptitle(f"byte-level LM on the Python standard library, {first['device']}")
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
