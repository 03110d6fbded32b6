"""Tuning records: `autotune/<GPU name>.json`, keyed by kernel signature, mode and shape bucket.

    {
      "format": "ratc-autotune", "format_version": 2, "device": "NVIDIA H100 80GB HBM3",
      "records": {
        "<signature>": {                        # kind-sha256(triton version, rendered text)[:16]
          "kind": "rat",
          "modes": {
            "prefill": {"T131072xB2": {"config": {...}, "ms": 25.1, "default_ms": 26.2,
                                       "trials": 60, "ratc_version": "0.1.0",
                                       "triton_version": "3.6.0"}},
            "train": {"T131072xB2": {...}}
          }
        }
      }
    }

Modes, and which launches a baked record steers (templates/_tuned.py.jinja `_launch_config`):

    prefill  forward module (signature of kernels/<kind>_<name>.py rendered without its backward:
             a backward edit keeps these records), timed: one forward. Applies
             to forward launches whose proj does not require grad (inference).
    train    the same module, whole (its own signature), timed: forward + backward. Applies
             to every launch of a differentiated call: the forward launched while proj requires
             grad, and its backward (which sees the saved proj). With no train record for the
             device, those launches use the prefill record. Its config may hold the backward-only
             keys (attention's BWD_*, bwd_num_*).
    decode   decode module (signature of kernels/decode_<kind>_<name>.py), timed: one step on a
             cache of context T. Buckets key on the cache length the host knows without a sync:
             (capacity // L) * L chunk rows for RAT, the slots for attention (min(T, W + 1) for a
             window), 1 for the RNN (its step does not depend on T).

A kernel's prefill and train records sit under their own signatures; the modes and buckets under
one signature sit side by side, and saving one never overwrites another. Version-1 files (one mode
per signature: "mode" and "buckets") are read and upgraded in memory, and written back as version 2
by the next `ratc tune`.

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
FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)  # version 1 is upgraded on load
MODES = ("prefill", "train", "decode")
BUCKET_RE = re.compile(r"^T(\d+)xB(\d+)$")
_ATTENTION_BWD = {"BWD_BLOCK_M1", "BWD_BLOCK_N1", "BWD_BLOCK_M2", "BWD_BLOCK_N2", "bwd_num_warps",
                  "bwd_num_stages"}
FORWARD_KEYS = {
    "rat": {"SCAN_BK", "SCAN_WARPS", "BT", "BC", "num_warps", "num_stages", "fp32_dot", "WS",
            "WS_KS", "WS_VS"},
    "rnn": {"BT", "BS", "BD", "num_warps", "CARRY_BD"},
    "sliding_window": {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "TMA"},
    "attention": {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "TMA"},
}
DECODE_KEYS = {
    "rat": {"DECODE_BC", "DECODE_WARPS", "DECODE_STAGES", "DECODE_SPLIT_ROWS"},
    "rnn": {"DECODE_BD", "DECODE_WARPS"},
    "sliding_window": {"DECODE_BN", "DECODE_WARPS", "DECODE_STAGES", "DECODE_SPLIT_ROWS"},
    "attention": {"DECODE_BN", "DECODE_WARPS", "DECODE_STAGES", "DECODE_SPLIT_ROWS"},
}
_RAT_BWD = {"BWD_BT", "BWD_BC", "bwd_num_warps", "bwd_num_stages",
            "DQ_BT", "DQ_BC", "dq_num_warps", "dq_num_stages", "BWD_SCAN_BK", "bwd_scan_num_warps",
            "bwd_scan_num_stages",
            "DQ_WS", "DQ_WS_KS", "DQ_WS_VS", "BWD_WS", "BWD_WS_BT", "BWD_WS_QS"}
_BACKWARD_KEYS = {"rat": _RAT_BWD, "rnn": set(), "sliding_window": _ATTENTION_BWD,
                  "attention": _ATTENTION_BWD}
CONFIG_KEYS = {  # mode -> kind -> the launch parameters a record may set
    "prefill": FORWARD_KEYS,
    "train": {k: v | _BACKWARD_KEYS[k] for k, v in FORWARD_KEYS.items()},
    "decode": DECODE_KEYS,
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


def upgrade(data: dict) -> dict:
    """A version-1 file's records ({"mode", "buckets"} per signature) in version 2's shape."""
    if not isinstance(data.get("records"), dict):
        return data  # validate reports it
    records = {}
    for sig, rec in data["records"].items():
        if isinstance(rec, dict) and "buckets" in rec and "modes" not in rec:
            rec = {"kind": rec.get("kind"), "modes": {rec.get("mode", "prefill"): rec["buckets"]}}
        records[sig] = rec
    return {**data, "format_version": FORMAT_VERSION, "records": records}


def validate(data, path) -> dict:
    """Check a parsed record file completely; return it (upgraded to version 2) or raise
    RecordError."""
    if not isinstance(data, dict):
        raise _bad(path, "not a ratc tuning-record file (top level is not an object)")
    if data.get("format") != FORMAT:
        raise _bad(path, f"not a ratc tuning-record file (format is {data.get('format')!r})")
    if data.get("format_version") not in READS_VERSIONS:
        raise _bad(path, f"record format version {data.get('format_version')!r}; this ratc reads "
                         f"versions {', '.join(map(str, READS_VERSIONS))}: re-run `ratc tune` to "
                         f"regenerate it")
    if data["format_version"] == 1:
        data = upgrade(data)
    if not isinstance(data.get("device"), str) or not isinstance(data.get("records"), dict):
        raise _bad(path, "missing 'device' (string) or 'records' (object)")
    for sig, rec in data["records"].items():
        where = f"records.{sig}"
        if not isinstance(rec, dict) or rec.get("kind") not in FORWARD_KEYS:
            raise _bad(path, f"{where}: 'kind' must be one of {sorted(FORWARD_KEYS)}")
        if not isinstance(rec.get("modes"), dict):
            raise _bad(path, f"{where}: 'modes' must be an object")
        for mode, buckets in rec["modes"].items():
            if mode not in MODES:
                raise _bad(path, f"{where}.modes.{mode}: mode must be one of {', '.join(MODES)}")
            if not isinstance(buckets, dict):
                raise _bad(path, f"{where}.modes.{mode}: must be an object of buckets")
            for bucket, entry in buckets.items():
                _check_entry(path, f"{where}.modes.{mode}.{bucket}", bucket, entry,
                             CONFIG_KEYS[mode][rec["kind"]], f"{rec['kind']} {mode}")
    return data


def _check_entry(path, w, bucket, entry, allowed, what) -> None:
    if not BUCKET_RE.match(bucket):
        raise _bad(path, f"{w}: bucket names look like T131072xB2")
    cfg = entry.get("config") if isinstance(entry, dict) else None
    if not isinstance(cfg, dict) or not cfg:
        raise _bad(path, f"{w}: 'config' must be a non-empty object")
    unknown = set(cfg) - allowed
    if unknown:
        raise _bad(path, f"{w}: unknown config keys {sorted(unknown)} for a {what} kernel")
    for k, v in cfg.items():
        if not isinstance(v, (int, bool, str)):
            raise _bad(path, f"{w}.config.{k}: must be an integer, boolean or string")
    ms = entry.get("ms")
    if not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0:
        raise _bad(path, f"{w}: 'ms' must be a positive number")


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
    """Merge one (mode, bucket) result into the device file, atomically (temp file, then
    replace); other modes and buckets of the signature stay as they were."""
    path = Path(path)
    data = load_records(path) if path.exists() else empty_records(device)
    if data["device"] != device:
        raise _bad(path, f"holds records for {data['device']!r}, not {device!r}")
    rec = data["records"].setdefault(signature, {"kind": kind, "modes": {}})
    rec["modes"].setdefault(mode, {})[bucket] = entry
    write_records(path, data)


def write_records(path: str | Path, data: dict) -> None:
    """Validate a whole device file's data, then write it atomically (temp file, then replace)."""
    path = Path(path)
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
