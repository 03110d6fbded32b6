"""Tuning records: `autotune/<GPU name>.json`, keyed by kernel signature and shape bucket.

    {
      "format": "ratc-autotune", "format_version": 1, "device": "NVIDIA H100 80GB HBM3",
      "records": {
        "<signature>": {                        # kind-sha256(rendered kernel, triton version)[:16]
          "kind": "rat", "mode": "prefill",
          "buckets": {
            "T131072xB2": {"config": {...}, "ms": 25.1, "default_ms": 26.2, "trials": 60,
                           "ratc_version": "0.1.0", "triton_version": "3.6.0"}
          }
        }
      }
    }

`load_records` validates the whole file before returning anything: a corrupt, truncated or
foreign-version file raises RecordError with one line naming the file and the problem, and is
never half-applied.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

FORMAT = "ratc-autotune"
FORMAT_VERSION = 1
BUCKET_RE = re.compile(r"^T(\d+)xB(\d+)$")
CONFIG_KEYS = {
    "rat": {"SCAN_BK", "SCAN_WARPS", "BT", "BC", "num_warps", "num_stages", "fp32_dot"},
    "rnn": {"BT", "BS", "BD", "num_warps", "CARRY_BD"},
    "sliding_window": {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "TMA"},
    "attention": {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "TMA"},
}


class RecordError(ValueError):
    """A tuning-record file that cannot be used; the message is one line."""


def device_file_name(device: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'NVIDIA_H100_80GB_HBM3.json'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", device).strip("_") + ".json"


def kernel_signature(kind: str, rendered_source: str, triton_version: str) -> str:
    digest = hashlib.sha256(f"{triton_version}\n{rendered_source}".encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


def bucket_of(seq: int, batch: int) -> str:
    """Shape bucket: T and B rounded up to powers of two."""
    return f"T{1 << max(seq - 1, 0).bit_length()}xB{1 << max(batch - 1, 0).bit_length()}"


def _bad(path, what: str) -> RecordError:
    return RecordError(f"{path}: {what}")


def validate(data, path) -> dict:
    """Check a parsed record file completely; return it or raise RecordError."""
    if not isinstance(data, dict):
        raise _bad(path, "not a ratc tuning-record file (top level is not an object)")
    if data.get("format") != FORMAT:
        raise _bad(path, f"not a ratc tuning-record file (format is {data.get('format')!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"record format version {data.get('format_version')!r}; this ratc reads "
                         f"version {FORMAT_VERSION}: re-run `ratc tune` to regenerate it")
    if not isinstance(data.get("device"), str) or not isinstance(data.get("records"), dict):
        raise _bad(path, "missing 'device' (string) or 'records' (object)")
    for sig, rec in data["records"].items():
        where = f"records.{sig}"
        if not isinstance(rec, dict) or rec.get("kind") not in CONFIG_KEYS:
            raise _bad(path, f"{where}: 'kind' must be one of {sorted(CONFIG_KEYS)}")
        if not isinstance(rec.get("buckets"), dict):
            raise _bad(path, f"{where}: 'buckets' must be an object")
        for bucket, entry in rec["buckets"].items():
            w = f"{where}.buckets.{bucket}"
            if not BUCKET_RE.match(bucket):
                raise _bad(path, f"{w}: bucket names look like T131072xB2")
            cfg = entry.get("config") if isinstance(entry, dict) else None
            if not isinstance(cfg, dict) or not cfg:
                raise _bad(path, f"{w}: 'config' must be a non-empty object")
            unknown = set(cfg) - CONFIG_KEYS[rec["kind"]]
            if unknown:
                raise _bad(path, f"{w}: unknown config keys {sorted(unknown)} for a "
                                 f"{rec['kind']} kernel")
            for k, v in cfg.items():
                if not isinstance(v, (int, bool, str)):
                    raise _bad(path, f"{w}.config.{k}: must be an integer, boolean or string")
            ms = entry.get("ms")
            if not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0:
                raise _bad(path, f"{w}: 'ms' must be a positive number")
    return data


def load_records(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise _bad(path, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise _bad(path, "not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(path, f"corrupt or truncated JSON at line {e.lineno}, column {e.colno}: "
                         f"{e.msg}") from None
    return validate(data, path)


def empty_records(device: str) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "device": device, "records": {}}


def save_record(path: str | Path, device: str, signature: str, kind: str, mode: str,
                bucket: str, entry: dict) -> None:
    """Merge one bucket's result into the device file, atomically (temp file, then replace)."""
    path = Path(path)
    data = load_records(path) if path.exists() else empty_records(device)
    if data["device"] != device:
        raise _bad(path, f"holds records for {data['device']!r}, not {device!r}")
    rec = data["records"].setdefault(signature, {"kind": kind, "mode": mode, "buckets": {}})
    rec["buckets"][bucket] = entry
    validate(data, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def nearest_bucket(buckets: dict, seq: int, batch: int) -> str | None:
    """The recorded bucket closest to (seq, batch) in log2 distance; None if there are none."""
    def dist(name: str) -> float:
        t, b = map(int, BUCKET_RE.match(name).groups())
        return abs(math.log2(t) - math.log2(max(seq, 1))) + abs(math.log2(b) - math.log2(max(batch, 1)))

    return min(sorted(buckets), key=dist) if buckets else None
