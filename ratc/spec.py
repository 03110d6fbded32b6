"""Spec front end: YAML text -> validated `Spec`, with `file:line:col` errors users can act on.

    version: 1
    model: {d_model: 2048, n_layers: 24, vocab_size: 32000, max_seq_len: 4096}
    layers:
      rat: {kind: rat, heads: 16, head_dim: 128, groups: 2, chunk: 16}
      swa: {kind: sliding_window, heads: 16, head_dim: 128, window: 1024}
    pattern: [rat, swa]

`load_spec(path)` reads, checks every field and every cross-field rule, and either returns a
`Spec` (the normalised data, defaults filled in) or raises `SpecError` holding *all* problems
found, each one line: `specs/x.yaml:12:5: layers.rat.chunk: must be a power of two from 1 to
1024, got 12`. The field-by-field reference is docs/spec.md.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (AliasEvent, CollectionEndEvent, CollectionStartEvent, NodeEvent,
                                ScalarEvent)

from .gates import GateError, parse_gate

SPEC_VERSION = 1
MAX_FILE_BYTES = 256 * 1024
MAX_YAML_DEPTH = 32  # nesting of mappings and lists; a spec needs 4
KINDS = ("rat", "sliding_window", "attention", "rnn")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# -------------------------------------------------------------------------------------------------
# diagnostics


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    path: str  # field path, e.g. layers.rat.chunk ("" for the whole file)
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(Exception):
    """One or more problems in a spec file; str() gives one line per problem."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line, d.col, d.path))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True)
class Spec:
    """A validated spec: normalised plain data with every default filled in."""

    path: str
    name: str
    sha256: str
    data: dict = field(repr=False)


# -------------------------------------------------------------------------------------------------
# reading YAML with positions


class _Reader:
    """Holds the file name and collects diagnostics while fields are checked."""

    def __init__(self, file: str):
        self.file = file
        self.errors: list[Diagnostic] = []

    def error(self, pos: tuple[int, int], path: str, message: str) -> None:
        self.errors.append(Diagnostic(self.file, pos[0] + 1, pos[1] + 1, path, message))


def _describe(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list" if v else "an empty list"
    if isinstance(v, str):
        return repr(str(v)) if len(v) <= 40 else repr(str(v)[:37] + "...")
    return repr(v) if not isinstance(v, float) else f"{float(v)!r}"


def _map_pos(m, key=None, value=True) -> tuple[int, int]:
    lc = getattr(m, "lc", None)
    if lc is None:
        return (0, 0)
    if key is not None and key in m:
        # a null value has no token of its own: ruamel points at the next one, so use the key
        return lc.value(key) if value and m[key] is not None else lc.key(key)
    return (lc.line, lc.col)


class _Section:
    """Typed access to one YAML mapping, recording an error for each bad or unknown field."""

    def __init__(self, r: _Reader, m, path: str, pos=(0, 0)):
        self.r, self.m, self.path, self.pos = r, m, path, pos

    def reject_unknown(self, allowed: tuple[str, ...], elsewhere: dict[str, str] | None = None
                       ) -> "_Section":
        """Record an error for every key not in `allowed`; `elsewhere` maps a key that is valid
        in another context to the message to give instead of a spelling hint."""
        for key in self.m:
            if not isinstance(key, str):
                self.r.error(_map_pos(self.m, key, value=False), self.path,
                             f"keys must be names, got {_describe(key)}")
            elif elsewhere and key in elsewhere and key not in allowed:
                self.r.error(_map_pos(self.m, key, value=False), self._p(key), elsewhere[key])
            elif key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else "expected one of: " + ", ".join(allowed)
                self.r.error(_map_pos(self.m, key, value=False), self._p(key), f"unknown field; {hint}")
        return self

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def where(self, key: str) -> tuple[int, int]:
        return _map_pos(self.m, key) if key in self.m else self.pos

    def error(self, key: str, message: str) -> None:
        self.r.error(self.where(key), self._p(key), message)

    def has(self, key: str) -> bool:
        return key in self.m

    def raw(self, key: str, required: bool):
        if key not in self.m:
            if required:
                self.r.error(self.pos, self._p(key), "required field is missing")
            return None
        return self.m[key]

    def int(self, key: str, lo: int, hi: int, default=None, required=False, hi_name=""):
        v = self.raw(key, required and default is None)
        bound = f"{hi_name} = {hi}" if hi_name else f"{hi}"
        if v is None:
            if key in self.m:
                self.error(key, f"must be an integer from {lo} to {bound}, got {_describe(v)}")
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(key, f"must be an integer from {lo} to {bound}, got {_describe(v)}")
            return None
        if not lo <= v <= hi:
            self.error(key, f"must be an integer from {lo} to {bound}, got {int(v)}")
            return None
        return int(v)

    def float(self, key: str, lo: float, hi: float, default: float, open_lo=True):
        v = self.raw(key, False)
        if key not in self.m:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.error(key, f"must be a number, got {_describe(v)}")
            return None
        v = float(v)
        if not ((lo < v) if open_lo else (lo <= v)) or not v <= hi:
            self.error(key, f"must be a number in ({lo:g}, {hi:g}], got {v:g}")
            return None
        return v

    def bool(self, key: str, default: bool):
        v = self.raw(key, False)
        if key not in self.m:
            return default
        if not isinstance(v, bool):
            self.error(key, f"must be true or false, got {_describe(v)}")
            return None
        return v

    def choice(self, key: str, choices: tuple[str, ...], default=None, required=False, norm=None,
               hints: dict[str, str] | None = None):
        v = self.raw(key, required and default is None)
        if key not in self.m:
            return default
        v = norm(v) if norm else v
        if not isinstance(v, str) or v not in choices:
            close = difflib.get_close_matches(v, choices, n=1) if isinstance(v, str) else []
            close = [hints[v]] if hints and isinstance(v, str) and v in hints else close
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.error(key, f"must be one of {', '.join(choices)}, got {_describe(v)}{hint}")
            return None
        return v

    def mapping(self, key: str, required=True):
        v = self.raw(key, required)
        if v is None:
            if key in self.m:
                self.error(key, "must be a mapping, got nothing (null)")
            return None
        if not isinstance(v, dict):
            self.error(key, f"must be a mapping, got {_describe(v)}")
            return None
        return v


# -------------------------------------------------------------------------------------------------
# the schema


MODEL_FIELDS = ("d_model", "n_layers", "vocab_size", "max_seq_len", "norm", "norm_eps", "ffn",
                "tie_embeddings")
FFN_FIELDS = ("hidden", "activation")
LAYER_FIELDS = {
    "rat": ("kind", "heads", "head_dim", "groups", "chunk", "forget_gate", "input_scale",
            "output_gate", "position", "rope_base"),
    "sliding_window": ("kind", "heads", "head_dim", "window", "position", "rope_base"),
    "attention": ("kind", "heads", "head_dim", "position", "rope_base"),
    "rnn": ("kind", "forget_gate", "input_scale", "output_gate"),
}
POSITIONS = {"rat": ("chunk_rope", "nope"), "sliding_window": ("rope", "nope"),
             "attention": ("rope", "nope")}
# a position that belongs to the other family of kinds -> the one meant
POSITION_HINTS = {"rat": {"rope": "chunk_rope"}, "sliding_window": {"chunk_rope": "rope"},
                  "attention": {"chunk_rope": "rope"}}


def _foreign_fields(kind: str) -> dict[str, str]:
    """Messages for fields that other layer kinds take but `kind` does not."""
    out = {}
    for f in dict.fromkeys(f for k in KINDS for f in LAYER_FIELDS[k]):
        owners = [k for k in KINDS if f in LAYER_FIELDS[k]]
        if kind not in owners:
            names = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"
            out[f] = f"{kind} layers take no {f}; it is a field of {names} layers"
    return out


def _input_scale(v):
    # YAML reads `1` as a number; `1-g`, `1 - g` and `1  -  g` are one spelling.
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "1" if v == 1 else v
    if isinstance(v, str):
        return {"1-g": "1 - g", "1": "1"}.get("".join(v.split()), v)
    return v


def _check_model(r: _Reader, top: _Section) -> dict | None:
    m = top.mapping("model")
    if m is None:
        return None
    s = _Section(r, m, "model", _map_pos(top.m, "model")).reject_unknown(MODEL_FIELDS)
    out = {
        "d_model": s.int("d_model", 1, 65536, required=True),
        "n_layers": s.int("n_layers", 1, 1024, required=True),
        "vocab_size": s.int("vocab_size", 1, 10_000_000, required=True),
        "max_seq_len": s.int("max_seq_len", 1, 1 << 24, required=True),
        "norm": s.choice("norm", ("rmsnorm",), default="rmsnorm"),
        "norm_eps": s.float("norm_eps", 0.0, 1.0, default=1e-6),
        "tie_embeddings": s.bool("tie_embeddings", default=False),
    }
    hidden, activation = None, "gelu"
    if s.has("ffn") and (fm := s.mapping("ffn")) is not None:
        f = _Section(r, fm, "model.ffn", _map_pos(m, "ffn")).reject_unknown(FFN_FIELDS)
        hidden = f.int("hidden", 1, 1 << 20)
        activation = f.choice("activation", ACTIVATIONS, default="gelu")
    if hidden is None and out["d_model"] is not None:
        hidden = 4 * out["d_model"]
    ffn = {"hidden": hidden, "activation": activation}
    out["ffn"] = ffn
    return out


def _check_chunk(s: _Section, max_len: int | None) -> list[int] | None:
    v = s.raw("chunk", True)
    if v is None:
        if s.has("chunk"):
            s.error("chunk", "must be a power of two from 1 to 1024, got nothing (null)")
        return None
    items = list(v) if isinstance(v, list) else [v]
    if isinstance(v, list) and not items:
        s.error("chunk", "the list of candidates is empty")
        return None
    bad = [x for x in items if isinstance(x, bool) or not isinstance(x, int) or x < 1 or x > 1024
           or x & (x - 1)]
    if bad:
        x = bad[0]
        s.error("chunk", f"must be a power of two from 1 to 1024, got {_describe(x)}")
        return None
    if len(set(items)) != len(items):
        s.error("chunk", f"candidates repeat: {[int(x) for x in items]}")
        return None
    if max_len is not None and max(items) > max_len:
        s.error("chunk", f"must not exceed model.max_seq_len = {max_len}, got {max(items)}")
        return None
    return [int(x) for x in items]


def _check_layer(r: _Reader, layers: _Section, name: str, model: dict | None) -> dict | None:
    path = f"layers.{name}"
    v = layers.m[name]
    if not isinstance(v, dict):
        layers.error(name, f"a layer definition must be a mapping, got {_describe(v)}")
        return None
    s = _Section(r, v, path, _map_pos(layers.m, name))
    k = s.choice("kind", KINDS, required=True)
    if k is None:
        return None
    s.reject_unknown(LAYER_FIELDS[k], _foreign_fields(k))
    d_model = model["d_model"] if model else None
    max_len = model["max_seq_len"] if model else None
    out: dict[str, Any] = {"kind": k}
    if k != "rnn":
        out["heads"] = s.int("heads", 1, 1024, required=True)
        out["head_dim"] = s.int("head_dim", 1, 512, required=True)
        position = s.choice("position", POSITIONS[k], default=POSITIONS[k][0],
                            hints=POSITION_HINTS[k])
        out["position"] = position
        out["rope_base"] = s.float("rope_base", 0.0, 1e12, default=10000.0)
        if s.has("rope_base") and position == "nope":
            s.error("rope_base", "has no effect with position: nope; remove it")
        if (out["heads"] and out["head_dim"] and d_model
                and out["heads"] * out["head_dim"] != d_model):
            s.error("heads", f"heads x head_dim = {out['heads']} x {out['head_dim']} = "
                    f"{out['heads'] * out['head_dim']} must equal model.d_model = {d_model}")
        if out["head_dim"] and position in ("rope", "chunk_rope") and out["head_dim"] % 2:
            s.error("head_dim", f"must be even when position is {position}, got {out['head_dim']}")
    if k == "rat":
        groups = s.int("groups", 1, 1024, default=out["heads"])
        if groups is not None and out["heads"] and out["heads"] % groups:
            s.error("groups", f"must divide heads = {out['heads']}, got {groups}")
            groups = None
        out["groups"] = groups
        out["chunk"] = _check_chunk(s, max_len)
    if k == "sliding_window":
        hi = max_len if max_len else 1 << 24
        out["window"] = s.int("window", 1, hi, required=True,
                              hi_name="model.max_seq_len" if max_len else "")
    if k in ("rat", "rnn"):
        gate_text = s.raw("forget_gate", False)
        gate_text = "sigmoid" if not s.has("forget_gate") else gate_text
        out["forget_gate"] = None
        if not isinstance(gate_text, str):
            s.error("forget_gate",
                    f"must be sigmoid or an expression in 'a', got {_describe(gate_text)}")
        else:
            try:
                parse_gate(gate_text)
                out["forget_gate"] = gate_text.strip()
            except GateError as e:
                s.error("forget_gate", str(e))
        out["input_scale"] = s.choice("input_scale", ("1 - g", "1"), default="1 - g", norm=_input_scale)
        out["output_gate"] = s.choice("output_gate", ("sigmoid", "none"), default="sigmoid")
    return out


def _check_pattern(r: _Reader, top: _Section, names: list[str] | None, n_layers: int | None):
    """`names` is None when `layers` is itself missing or broken (reported already)."""
    v = top.raw("pattern", True)
    if v is None:
        if top.has("pattern"):
            top.error("pattern", "must be a list of layer names, got nothing (null)")
        return None
    if not isinstance(v, list) or not v:
        top.error("pattern", f"must be a non-empty list of layer names, got {_describe(v)}")
        return None
    ok = True
    for i, x in enumerate(v):
        pos = v.lc.item(i) if hasattr(v, "lc") else top.where("pattern")
        if not isinstance(x, str):
            r.error(pos, f"pattern[{i}]", f"must be a layer name, got {_describe(x)}")
            ok = False
        elif names is not None and x not in names:
            close = difflib.get_close_matches(x, names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else (
                "; defined: " + ", ".join(names) if names else "; no layers are defined")
            r.error(pos, f"pattern[{i}]", f"layer '{x}' is not defined under layers{hint}")
            ok = False
    if not ok:
        return None
    if n_layers is not None and n_layers % len(v):
        top.error("pattern", f"{len(v)} names do not fill model.n_layers = {n_layers}: give one "
                  f"name per layer or a pattern whose length divides {n_layers}")
        return None
    return [str(x) for x in v]


# -------------------------------------------------------------------------------------------------
# entry points


def _read_yaml(r: _Reader, text: str):
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        depth = 0
        for ev in yaml.parse(text):
            pos = (ev.start_mark.line, ev.start_mark.column)
            if isinstance(ev, AliasEvent) or (isinstance(ev, NodeEvent) and ev.anchor):
                r.error(pos, "", "anchors and aliases are not allowed in a spec")
                return None
            tag = getattr(ev, "tag", None)
            if tag is not None:  # any explicit tag, !!str and !!python/object alike
                tag = str(tag).replace("tag:yaml.org,2002:", "!!", 1)
                r.error(pos, "", f"YAML tags are not allowed in a spec, got {tag}")
                return None
            if isinstance(ev, ScalarEvent) and ev.value == "<<" and ev.style is None:
                r.error(pos, "", "merge keys (<<) are not allowed in a spec")
                return None
            depth += isinstance(ev, CollectionStartEvent) - isinstance(ev, CollectionEndEvent)
            if depth > MAX_YAML_DEPTH:  # the composer recurses: stop before Python's stack does
                r.error(pos, "", f"YAML nests deeper than {MAX_YAML_DEPTH} levels")
                return None
        return yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip()
        if e.context and e.problem and problem.startswith("but "):  # "expected X" "but found Y"
            problem = f"{e.context.strip()}, {problem}"
        if "duplicate key" in str(e).lower():
            problem = "duplicate key " + (str(e.problem).split('"')[1:2] or [""])[0].join('""')
        r.error((mark.line, mark.column) if mark else (0, 0), "", f"YAML syntax error: {problem}")
    except YAMLError as e:
        r.error((0, 0), "", f"YAML error: {str(e).splitlines()[0]}")
    return None


def parse_spec_text(text: str, file: str = "<spec>") -> Spec:
    """Validate spec text; raise SpecError listing every problem, or return the Spec."""
    r = _Reader(file)
    doc = _read_yaml(r, text)
    if r.errors:
        raise SpecError(r.errors)
    if not isinstance(doc, dict):
        r.error((0, 0), "", f"a spec must be a YAML mapping at the top level, got {_describe(doc)}")
        raise SpecError(r.errors)
    top = _Section(r, doc, "").reject_unknown(("version", "model", "layers", "pattern"))
    version = top.raw("version", True)
    if "version" in doc and (isinstance(version, bool) or not isinstance(version, int)
                             or version != SPEC_VERSION):
        top.error("version", f"this ratc reads spec version {SPEC_VERSION}, got {_describe(version)}")
    model = _check_model(r, top)
    layers_map = top.mapping("layers")
    layers: dict[str, dict | None] = {}
    if layers_map is not None:
        ls = _Section(r, layers_map, "layers", _map_pos(doc, "layers"))
        if not layers_map:
            top.error("layers", "define at least one layer")
        for name in layers_map:
            if not isinstance(name, str):
                ls.r.error(_map_pos(layers_map, name, value=False), "layers",
                           f"layer names must be identifiers, got {_describe(name)}")
                continue
            if not NAME_RE.match(name):
                ls.r.error(_map_pos(layers_map, name, value=False), f"layers.{name}",
                           "layer names must be identifiers (letters, digits, _; at most 64)")
                continue
            layers[name] = _check_layer(r, ls, name, model)
    n_layers = model["n_layers"] if model else None
    names = list(layers) if layers_map is not None else None
    pattern = _check_pattern(r, top, names, n_layers)
    for name in layers if pattern is not None else ():
        if name not in pattern:
            r.error(_map_pos(layers_map, name, value=False), f"layers.{name}",
                    "is defined but pattern never uses it: add it to pattern or remove it")
    if r.errors:
        raise SpecError(r.errors)
    reps = n_layers // len(pattern)
    data = {"version": SPEC_VERSION, "model": model, "layers": layers, "pattern": pattern,
            "layer_names": pattern * reps}
    name = Path(file).stem
    return Spec(path=file, name=name, sha256=hashlib.sha256(text.encode()).hexdigest(), data=data)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file. Raises SpecError (one line per problem)."""
    file = str(path)
    try:
        p = Path(path)
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError([Diagnostic(file, 1, 1, "", f"file is {size} bytes, a spec may be at "
                                        f"most {MAX_FILE_BYTES}")])
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError([Diagnostic(file, 1, 1, "", "file is not UTF-8 text")]) from None
    except OSError as e:
        raise SpecError([Diagnostic(file, 1, 1, "", f"cannot read: {e.strerror or e}")]) from None
    return parse_spec_text(text, file)
