"""The spec front end: every malformed spec gets exact `file:line:col: path: message` lines.

Most malformed specs are the tiny BASE below with one small edit, so each expected line's position
can be read off BASE's line numbers (the comment beside it). Positions are 1-based; an error about
a value points at the value, one about a missing field at the mapping that lacks it, one about an
unknown key at the key.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ratc.ir import InputScale, LayerKind, Position
from ratc.lower import lower
from ratc.spec import Diagnostic, SpecError, load_spec, parse_spec_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
F = "specs/x.yaml"

BASE = """\
version: 1
model:
  d_model: 64
  n_layers: 4
  vocab_size: 97
  max_seq_len: 256
layers:
  rat:
    kind: rat
    heads: 4
    head_dim: 16
    chunk: 8
  swa:
    kind: sliding_window
    heads: 4
    head_dim: 16
    window: 12
pattern: [rat, swa]
"""
# line:  1 version  2 model  3 d_model  4 n_layers  5 vocab_size  6 max_seq_len  7 layers  8 rat
#        9 kind  10 heads  11 head_dim  12 chunk  13 swa  14 kind  15 heads  16 head_dim
#        17 window  18 pattern

RAT_BLOCK = "    kind: rat\n    heads: 4\n    head_dim: 16\n    chunk: 8\n"
SWA_BLOCK = "    kind: sliding_window\n    heads: 4\n    head_dim: 16\n    window: 12\n"


def edit(*pairs: str, text: str = BASE) -> str:
    """BASE with each `old` replaced by `new` (pairs old1, new1, old2, new2, ...); each old must
    occur exactly once, so a test cannot silently edit nothing."""
    assert len(pairs) % 2 == 0
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def after_chunk(line: str) -> str:
    """BASE with `line` added to layer rat as its line 13 (after `chunk: 8`)."""
    return edit("    chunk: 8\n", f"    chunk: 8\n    {line}\n")


def after_window(line: str) -> str:
    """BASE with `line` added to layer swa as its line 18 (after `window: 12`)."""
    return edit("    window: 12\n", f"    window: 12\n    {line}\n")


def gate(text: str) -> str:
    """BASE with a forget gate on layer rat (the value starts at 13:18)."""
    return after_chunk(f"forget_gate: {text}")


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, F)
    lines = [str(d) for d in info.value.diagnostics]
    assert str(info.value) == "\n".join(lines)
    return lines


def one(line: str) -> list[str]:
    return [f"{F}:{line}"]


LONG_GATE = "0*a+" * 72 + "sigmoid(a)"  # 298 characters
DEEP_GATE = "sigmoid(" * 25 + "a" + ")" * 25  # 226 characters, 25 calls deep

MALFORMED = [
    # ---- YAML itself
    pytest.param("version: 1\nmodel: {d_model: 64\n",
                 one("3:1: YAML syntax error: expected ',' or '}', but got '<stream end>'"),
                 id="yaml-unclosed-flow-mapping"),
    pytest.param("version: 1\nmodel:\n  d_model: 64\n bad: 1\n",
                 one("4:2: YAML syntax error: expected <block end>, but found '<block mapping start>'"),
                 id="yaml-bad-indent"),
    pytest.param("version: 1\nmodel:\n\td_model: 64\n",
                 one("3:1: YAML syntax error: found character '\\t' that cannot start any token"),
                 id="yaml-tab"),
    pytest.param(BASE + "---\nversion: 1\n",
                 one("19:1: YAML syntax error: expected a single document in the stream, but found "
                     "another document"),
                 id="yaml-two-documents"),
    pytest.param(edit("  n_layers: 4\n", "  n_layers: 4\n  n_layers: 8\n"),
                 one('5:3: YAML syntax error: duplicate key "n_layers"'), id="duplicate-key"),
    pytest.param(BASE + "version: 1\n", one('19:1: YAML syntax error: duplicate key "version"'),
                 id="duplicate-top-level-key"),
    pytest.param(edit("  rat:\n", "  rat: &r\n"),
                 one("8:8: anchors and aliases are not allowed in a spec"), id="anchor"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: [*r]"),
                 one("18:11: anchors and aliases are not allowed in a spec"), id="alias"),
    pytest.param(edit(SWA_BLOCK, "    <<: {kind: sliding_window, window: 999}\n"
                      "    heads: 4\n    head_dim: 16\n"),
                 one("14:5: merge keys (<<) are not allowed in a spec"), id="merge-key"),
    pytest.param(edit("  d_model: 64", "  d_model: !!python/object:os.system 64"),
                 one("3:12: YAML tags are not allowed in a spec, got !!python/object:os.system"),
                 id="tag-python-object"),
    pytest.param(edit("  d_model: 64", "  d_model: !!str 64"),
                 one("3:12: YAML tags are not allowed in a spec, got !!str"), id="tag-str"),
    pytest.param(edit("  d_model: 64", "  d_model: !custom 64"),
                 one("3:12: YAML tags are not allowed in a spec, got !custom"), id="tag-local"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: " + "[" * 40 + "]" * 40),
                 one("18:41: YAML nests deeper than 32 levels"), id="yaml-too-deep"),
    # ---- the document as a whole
    pytest.param("- rat\n- swa\n",
                 one("1:1: a spec must be a YAML mapping at the top level, got a list"),
                 id="top-level-list"),
    pytest.param("rat\n",
                 one("1:1: a spec must be a YAML mapping at the top level, got 'rat'"),
                 id="top-level-scalar"),
    pytest.param("", one("1:1: a spec must be a YAML mapping at the top level, got nothing (null)"),
                 id="empty-file"),
    pytest.param("# only a comment\n",
                 one("1:1: a spec must be a YAML mapping at the top level, got nothing (null)"),
                 id="comment-only"),
    pytest.param(edit("version: 1", "version: 2"),
                 one("1:10: version: this ratc reads spec version 1, got 2"), id="version-2"),
    pytest.param(edit("version: 1", "version: '1'"),
                 one("1:10: version: this ratc reads spec version 1, got '1'"), id="version-string"),
    pytest.param(edit("version: 1", "version: 1.0"),
                 one("1:10: version: this ratc reads spec version 1, got 1.0"), id="version-float"),
    pytest.param(edit("version: 1", "version: true"),
                 one("1:10: version: this ratc reads spec version 1, got true"), id="version-bool"),
    # ---- missing fields
    pytest.param(edit("version: 1\n", ""), one("1:1: version: required field is missing"),
                 id="missing-version"),
    pytest.param(edit("  d_model: 64\n", ""), one("3:3: model.d_model: required field is missing"),
                 id="missing-d_model"),
    pytest.param(edit("model:\n  d_model: 64\n  n_layers: 4\n  vocab_size: 97\n  max_seq_len: 256\n", ""),
                 one("1:1: model: required field is missing"), id="missing-model"),
    pytest.param(edit("layers:\n  rat:\n" + RAT_BLOCK + "  swa:\n" + SWA_BLOCK, ""),
                 one("1:1: layers: required field is missing"), id="missing-layers"),
    pytest.param(edit("pattern: [rat, swa]\n", ""), one("1:1: pattern: required field is missing"),
                 id="missing-pattern"),
    pytest.param(edit("    kind: rat\n", ""), one("9:5: layers.rat.kind: required field is missing"),
                 id="missing-kind"),
    pytest.param(edit("    chunk: 8\n", ""), one("9:5: layers.rat.chunk: required field is missing"),
                 id="missing-chunk"),
    pytest.param(edit("    window: 12\n", ""),
                 one("14:5: layers.swa.window: required field is missing"), id="missing-window"),
    pytest.param(edit("    kind: rat\n    heads: 4\n", "    kind: rat\n"),
                 one("9:5: layers.rat.heads: required field is missing"), id="missing-heads"),
    # ---- unknown fields
    pytest.param(edit("    chunk: 8\n", "    chunks: 8\n"),
                 [f"{F}:9:5: layers.rat.chunk: required field is missing",
                  f"{F}:12:5: layers.rat.chunks: unknown field; did you mean 'chunk'?"],
                 id="unknown-chunks"),
    pytest.param(edit("    head_dim: 16\n    chunk", "    head_dims: 16\n    chunk"),
                 [f"{F}:9:5: layers.rat.head_dim: required field is missing",
                  f"{F}:11:5: layers.rat.head_dims: unknown field; did you mean 'head_dim'?"],
                 id="unknown-head_dims"),
    pytest.param(edit("layers:\n", "layer:\n"),
                 [f"{F}:1:1: layers: required field is missing",
                  f"{F}:7:1: layer: unknown field; did you mean 'layers'?"],
                 id="unknown-top-level-layer"),
    pytest.param(after_chunk("flavour: 3"),
                 one("13:5: layers.rat.flavour: unknown field; expected one of: kind, heads, "
                     "head_dim, groups, chunk, forget_gate, input_scale, output_gate, position, "
                     "rope_base"),
                 id="unknown-no-close-match"),
    pytest.param(BASE + "zzz: 1\n",
                 one("19:1: zzz: unknown field; expected one of: version, model, layers, pattern"),
                 id="unknown-top-level-no-close-match"),
    pytest.param(edit("  max_seq_len: 256\n", "  max_seq_len: 256\n  3: 4\n"),
                 one("7:3: model: keys must be names, got 3"), id="key-not-a-name"),
    # ---- wrong types
    pytest.param(edit("  d_model: 64", "  d_model: '64'"),
                 one("3:12: model.d_model: must be an integer from 1 to 65536, got '64'"),
                 id="string-for-int"),
    pytest.param(edit("    heads: 4\n    head_dim: 16\n    chunk", "    heads: true\n    head_dim: 16\n    chunk"),
                 one("10:12: layers.rat.heads: must be an integer from 1 to 1024, got true"),
                 id="bool-for-int"),
    pytest.param(edit("  d_model: 64", "  d_model: 64.0"),
                 one("3:12: model.d_model: must be an integer from 1 to 65536, got 64.0"),
                 id="float-for-int"),
    pytest.param(edit("  d_model: 64", "  d_model:"),
                 one("3:3: model.d_model: must be an integer from 1 to 65536, got nothing (null)"),
                 id="null-for-int"),
    pytest.param(edit("model:\n  d_model: 64\n  n_layers: 4\n  vocab_size: 97\n  max_seq_len: 256\n",
                      "model: [64, 4, 97, 256]\n"),
                 one("2:8: model: must be a mapping, got a list"), id="list-for-mapping"),
    pytest.param(edit("  swa:\n" + SWA_BLOCK, "  swa: [sliding_window, 12]\n"),
                 one("13:8: layers.swa: a layer definition must be a mapping, got a list"),
                 id="list-for-layer"),
    pytest.param(edit("  max_seq_len: 256\n", "  max_seq_len: 256\n  tie_embeddings: 'yes'\n"),
                 one("7:19: model.tie_embeddings: must be true or false, got 'yes'"),
                 id="string-for-bool"),
    pytest.param(edit("  max_seq_len: 256\n", "  max_seq_len: 256\n  norm_eps: 0\n"),
                 one("7:13: model.norm_eps: must be a number in (0, 1], got 0"), id="norm_eps-zero"),
    pytest.param(after_window("rope_base: .nan"),
                 one("18:16: layers.swa.rope_base: must be a number in (0, 1e+12], got nan"),
                 id="rope_base-nan"),
    pytest.param(edit("  max_seq_len: 256\n", "  max_seq_len: 256\n  ffn: {activation: gelu_new}\n"),
                 one("7:21: model.ffn.activation: must be one of gelu, gelu_tanh, relu, silu, got "
                     "'gelu_new' (did you mean 'gelu_tanh'?)"),
                 id="ffn-activation"),
    pytest.param(edit("    kind: rat\n", "    kind: ratt\n"),
                 one("9:11: layers.rat.kind: must be one of rat, sliding_window, attention, rnn, got "
                     "'ratt' (did you mean 'rat'?)"),
                 id="kind-typo"),
    # ---- out of range
    pytest.param(edit("chunk: 8", "chunk: 12"),
                 one("12:12: layers.rat.chunk: must be a power of two from 1 to 1024, got 12"),
                 id="chunk-12-not-power-of-two"),
    pytest.param(edit("chunk: 8", "chunk: 2048"),
                 one("12:12: layers.rat.chunk: must be a power of two from 1 to 1024, got 2048"),
                 id="chunk-2048"),
    pytest.param(edit("chunk: 8", "chunk: 512"),
                 one("12:12: layers.rat.chunk: must not exceed model.max_seq_len = 256, got 512"),
                 id="chunk-over-max_seq_len"),
    pytest.param(edit("window: 12", "window: 300"),
                 one("17:13: layers.swa.window: must be an integer from 1 to model.max_seq_len = "
                     "256, got 300"),
                 id="window-over-max_seq_len"),
    pytest.param(edit("    heads: 4\n    head_dim: 16\n    chunk", "    heads: 0\n    head_dim: 16\n    chunk"),
                 one("10:12: layers.rat.heads: must be an integer from 1 to 1024, got 0"),
                 id="heads-0"),
    pytest.param(edit("  d_model: 64", "  d_model: 99999999999999999999999"),
                 one("3:12: model.d_model: must be an integer from 1 to 65536, got "
                     "99999999999999999999999"),
                 id="d_model-huge"),
    # ---- chunk candidate lists
    pytest.param(edit("chunk: 8", "chunk: []"),
                 one("12:12: layers.rat.chunk: the list of candidates is empty"), id="chunk-list-empty"),
    pytest.param(edit("chunk: 8", "chunk: [8, 16, 8]"),
                 one("12:12: layers.rat.chunk: candidates repeat: [8, 16, 8]"),
                 id="chunk-list-repeats"),
    pytest.param(edit("chunk: 8", "chunk: [8, 12]"),
                 one("12:12: layers.rat.chunk: must be a power of two from 1 to 1024, got 12"),
                 id="chunk-list-bad-element"),
    pytest.param(edit("chunk: 8", "chunk: [8, x]"),
                 one("12:12: layers.rat.chunk: must be a power of two from 1 to 1024, got 'x'"),
                 id="chunk-list-string-element"),
    pytest.param(edit("chunk: 8", "chunk: [8, 512]"),
                 one("12:12: layers.rat.chunk: must not exceed model.max_seq_len = 256, got 512"),
                 id="chunk-list-over-max_seq_len"),
    pytest.param(edit("chunk: 8", "chunk: {L: 8}"),
                 one("12:12: layers.rat.chunk: must be a power of two from 1 to 1024, got a mapping"),
                 id="chunk-mapping"),
    # ---- cross-field rules
    pytest.param(edit("    head_dim: 16\n    chunk", "    head_dim: 8\n    chunk"),
                 one("10:12: layers.rat.heads: heads x head_dim = 4 x 8 = 32 must equal "
                     "model.d_model = 64"),
                 id="heads-times-head_dim-not-d_model"),
    pytest.param(after_chunk("groups: 3"),
                 one("13:13: layers.rat.groups: must divide heads = 4, got 3"),
                 id="groups-not-dividing-heads"),
    pytest.param(edit("  d_model: 64", "  d_model: 60",
                      "    head_dim: 16\n    chunk", "    head_dim: 15\n    chunk",
                      "    head_dim: 16\n    window", "    head_dim: 15\n    window"),
                 [f"{F}:11:15: layers.rat.head_dim: must be even when position is chunk_rope, got 15",
                  f"{F}:16:15: layers.swa.head_dim: must be even when position is rope, got 15"],
                 id="odd-head_dim-with-rope"),
    pytest.param(after_chunk("position: rope"),
                 one("13:15: layers.rat.position: must be one of chunk_rope, nope, got 'rope' "
                     "(did you mean 'chunk_rope'?)"),
                 id="rope-on-rat"),
    pytest.param(after_window("position: chunk_rope"),
                 one("18:15: layers.swa.position: must be one of rope, nope, got 'chunk_rope' "
                     "(did you mean 'rope'?)"),
                 id="chunk_rope-on-sliding_window"),
    pytest.param(edit("    kind: sliding_window\n    heads: 4\n    head_dim: 16\n    window: 12\n",
                      "    kind: attention\n    heads: 4\n    head_dim: 16\n    position: chunk_rope\n"),
                 one("17:15: layers.swa.position: must be one of rope, nope, got 'chunk_rope' "
                     "(did you mean 'rope'?)"),
                 id="chunk_rope-on-attention"),
    pytest.param(edit("    window: 12\n", "    window: 12\n    position: nope\n    rope_base: 500\n"),
                 one("19:16: layers.swa.rope_base: has no effect with position: nope; remove it"),
                 id="rope_base-with-nope"),
    pytest.param(after_chunk("window: 4"),
                 one("13:5: layers.rat.window: rat layers take no window; it is a field of "
                     "sliding_window layers"),
                 id="window-on-rat"),
    pytest.param(edit("    kind: sliding_window\n", "    kind: attention\n",
                      "    window: 12\n", "    chunk: 8\n"),
                 one("17:5: layers.swa.chunk: attention layers take no chunk; it is a field of "
                     "rat layers"),
                 id="chunk-on-attention"),
    pytest.param(edit(RAT_BLOCK, "    kind: rnn\n    heads: 4\n"),
                 one("10:5: layers.rat.heads: rnn layers take no heads; it is a field of rat, "
                     "sliding_window and attention layers"),
                 id="heads-on-rnn"),
    pytest.param(after_window("forget_gate: sigmoid"),
                 one("18:5: layers.swa.forget_gate: sliding_window layers take no forget_gate; it "
                     "is a field of rat and rnn layers"),
                 id="forget_gate-on-sliding_window"),
    # ---- pattern and layer names
    pytest.param(edit("pattern: [rat, swa]", "pattern: [rat, sw]"),
                 one("18:16: pattern[1]: layer 'sw' is not defined under layers; did you mean 'swa'?"),
                 id="pattern-undefined-did-you-mean"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: [rat, mamba]"),
                 one("18:16: pattern[1]: layer 'mamba' is not defined under layers; defined: rat, swa"),
                 id="pattern-undefined-no-close-match"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: [rat]"),
                 one("13:3: layers.swa: is defined but pattern never uses it: add it to pattern "
                     "or remove it"),
                 id="layer-defined-unused"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: [rat, swa, rat]"),
                 one("18:10: pattern: 3 names do not fill model.n_layers = 4: give one name per "
                     "layer or a pattern whose length divides 4"),
                 id="pattern-not-filling-n_layers"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: []"),
                 one("18:10: pattern: must be a non-empty list of layer names, got an empty list"),
                 id="pattern-empty"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: rat"),
                 one("18:10: pattern: must be a non-empty list of layer names, got 'rat'"),
                 id="pattern-string"),
    pytest.param(edit("pattern: [rat, swa]", "pattern: [rat, 3]"),
                 one("18:16: pattern[1]: must be a layer name, got 3"), id="pattern-number"),
    pytest.param(edit("  swa:\n", "  swa-1:\n", "pattern: [rat, swa]", "pattern: [rat, swa-1]"),
                 [f"{F}:13:3: layers.swa-1: layer names must be identifiers (letters, digits, _; "
                  "at most 64)",
                  f"{F}:18:16: pattern[1]: layer 'swa-1' is not defined under layers; defined: rat"],
                 id="layer-name-invalid"),
    pytest.param(edit("  swa:\n", "  5:\n", "pattern: [rat, swa]", "pattern: [rat]"),
                 one("13:3: layers: layer names must be identifiers, got 5"),
                 id="layer-name-number"),
    pytest.param(edit("layers:\n  rat:\n" + RAT_BLOCK + "  swa:\n" + SWA_BLOCK, "layers: {}\n"),
                 [f"{F}:7:9: layers: define at least one layer",
                  f"{F}:8:11: pattern[0]: layer 'rat' is not defined under layers; no layers are defined",
                  f"{F}:8:16: pattern[1]: layer 'swa' is not defined under layers; no layers are defined"],
                 id="layers-empty"),
    # ---- input scale and output gate
    pytest.param(after_chunk("input_scale: g"),
                 one("13:18: layers.rat.input_scale: must be one of 1 - g, 1, got 'g'"),
                 id="input_scale-g"),
    pytest.param(after_chunk("input_scale: 2"),
                 one("13:18: layers.rat.input_scale: must be one of 1 - g, 1, got 2"),
                 id="input_scale-2"),
    pytest.param(after_chunk("input_scale: true"),
                 one("13:18: layers.rat.input_scale: must be one of 1 - g, 1, got true"),
                 id="input_scale-bool"),
    pytest.param(after_chunk("output_gate: relu"),
                 one("13:18: layers.rat.output_gate: must be one of sigmoid, none, got 'relu'"),
                 id="output_gate-relu"),
    pytest.param(after_chunk("output_gate: false"),
                 one("13:18: layers.rat.output_gate: must be one of sigmoid, none, got false"),
                 id="output_gate-false"),
    # ---- hostile and broken forget gates
    pytest.param(gate("__import__('os').system('x')"),
                 one("13:18: layers.rat.forget_gate: only the functions sigmoid, softplus, exp, "
                     "log, tanh, sqrt, abs may be called"),
                 id="gate-import"),
    pytest.param(gate("a.__class__"),
                 one("13:18: layers.rat.forget_gate: attribute access is not allowed in a gate "
                     "expression"),
                 id="gate-dunder-attribute"),
    pytest.param(gate('"lambda: 0"'),
                 one("13:18: layers.rat.forget_gate: lambda is not allowed in a gate expression"),
                 id="gate-lambda"),
    pytest.param(gate("open('f')"),
                 one("13:18: layers.rat.forget_gate: unknown function 'open': allowed are sigmoid, "
                     "softplus, exp, log, tanh, sqrt, abs"),
                 id="gate-open"),
    pytest.param(gate("exp(a)"),
                 one("13:18: layers.rat.forget_gate: a forget gate must lie in [0, 1], but at "
                     "a = 0.25 it is 1.284"),
                 id="gate-exp-above-1"),
    pytest.param(gate("9**9**9"),
                 one("13:18: layers.rat.forget_gate: exponents must be numbers from -8 to 8"),
                 id="gate-power-tower"),
    pytest.param(gate("(((((((((9**8)**8)**8)**8)**8)**8)**8)**8)**8)*0+sigmoid(a)"),
                 one("13:18: layers.rat.forget_gate: a constant power is out of range (outside "
                     "1e-300 to 1e300)"),
                 id="gate-nested-constant-powers"),
    pytest.param(gate(LONG_GATE),
                 one("13:18: layers.rat.forget_gate: expression is 298 characters long, the limit "
                     "is 256"),
                 id="gate-300-chars"),
    pytest.param(gate(DEEP_GATE),
                 one("13:18: layers.rat.forget_gate: expression nests deeper than 24 levels"),
                 id="gate-deeply-nested"),
    pytest.param(gate("'[a]'"),
                 one("13:18: layers.rat.forget_gate: a list is not allowed in a gate expression"),
                 id="gate-list"),
    pytest.param(gate("a if a else 0"),
                 one("13:18: layers.rat.forget_gate: conditional is not allowed in a gate expression"),
                 id="gate-conditional"),
    pytest.param(gate("'1'"),
                 one("13:18: layers.rat.forget_gate: the gate must depend on 'a' (the pre-activation)"),
                 id="gate-constant-string"),
    pytest.param(gate("1"),
                 one("13:18: layers.rat.forget_gate: must be sigmoid or an expression in 'a', got 1"),
                 id="gate-constant-number"),
    pytest.param(gate(""),
                 one("13:5: layers.rat.forget_gate: must be sigmoid or an expression in 'a', got "
                     "nothing (null)"),
                 id="gate-null"),
    pytest.param(gate("log(a)"),
                 one("13:18: layers.rat.forget_gate: the gate or its derivative is not finite at "
                     "a = -30"),
                 id="gate-log-not-finite"),
    pytest.param(gate("sigmoid(a, 1)"),
                 one("13:18: layers.rat.forget_gate: sigmoid() takes exactly one argument"),
                 id="gate-two-arguments"),
    pytest.param(gate("sigmoid(a) % 1"),
                 one("13:18: layers.rat.forget_gate: operator % is not allowed in a gate "
                     "expression; use + - * / **"),
                 id="gate-modulo"),
    pytest.param(gate("sigmoid(b)"),
                 one("13:18: layers.rat.forget_gate: unknown name 'b': the only variable is 'a'"),
                 id="gate-unknown-variable"),
    # ---- many problems in one file: all reported, in file order
    pytest.param(edit("version: 1", "version: 3",
                      "  d_model: 64", "  d_model: 65",
                      "chunk: 8", "chunk: 12",
                      "    window: 12\n", "    window: 300\n    chunk: 4\n",
                      "pattern: [rat, swa]", "pattern: [rat, swb]"),
                 [f"{F}:1:10: version: this ratc reads spec version 1, got 3",
                  f"{F}:10:12: layers.rat.heads: heads x head_dim = 4 x 16 = 64 must equal "
                  "model.d_model = 65",
                  f"{F}:12:12: layers.rat.chunk: must be a power of two from 1 to 1024, got 12",
                  f"{F}:15:12: layers.swa.heads: heads x head_dim = 4 x 16 = 64 must equal "
                  "model.d_model = 65",
                  f"{F}:17:13: layers.swa.window: must be an integer from 1 to model.max_seq_len = "
                  "256, got 300",
                  f"{F}:18:5: layers.swa.chunk: sliding_window layers take no chunk; it is a "
                  "field of rat layers",
                  f"{F}:19:16: pattern[1]: layer 'swb' is not defined under layers; did you mean "
                  "'swa'?"],
                 id="many-errors"),
]


@pytest.mark.parametrize("text, expected", MALFORMED)
def test_malformed_spec(text, expected):
    assert errors(text) == expected


# -------------------------------------------------------------------------------------------------
# load_spec: files


def test_load_spec_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert [str(d) for d in info.value.diagnostics] == [
        f"{p}:1:1: cannot read: No such file or directory"]


def test_load_spec_not_utf8(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(BASE.replace("rat", "r\xe4t").encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert [str(d) for d in info.value.diagnostics] == [f"{p}:1:1: file is not UTF-8 text"]


def test_load_spec_too_large(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text(BASE + "#" * (256 * 1024))
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert [str(d) for d in info.value.diagnostics] == [
        f"{p}:1:1: file is {len(BASE) + 256 * 1024} bytes, a spec may be at most 262144"]


def test_load_spec_reports_its_path(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(edit("chunk: 8", "chunk: 12"))
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert str(info.value) == (
        f"{p}:12:12: layers.rat.chunk: must be a power of two from 1 to 1024, got 12")


def test_load_spec_reads_a_good_file(tmp_path):
    p = tmp_path / "good.yaml"
    p.write_text(BASE)
    spec = load_spec(p)
    assert spec.name == "good" and spec.path == str(p)
    assert spec.data == parse_spec_text(BASE, str(p)).data


def test_diagnostic_format():
    assert str(Diagnostic("f.yaml", 3, 7, "model.d_model", "bad")) == "f.yaml:3:7: model.d_model: bad"
    assert str(Diagnostic("f.yaml", 1, 1, "", "bad")) == "f.yaml:1:1: bad"


# -------------------------------------------------------------------------------------------------
# specs that are fine


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_example_spec_loads_and_lowers(path):
    spec = load_spec(path)
    ir = lower(spec)
    assert ir.name == path.stem
    assert ir.n_layers == spec.data["model"]["n_layers"]
    assert {m.name for m in ir.block_mixers} == set(spec.data["layers"])


def test_example_specs_exist():
    names = {p.stem for p in SPECS}
    assert {"attention", "rat", "rnn", "attention_swa", "rat_swa", "tiny_hybrid"} <= names


def test_rat_swa_is_24_alternating_layers():
    ir = lower(load_spec(SPECS[0].parent / "rat_swa.yaml"))
    assert ir.layers == ("rat", "swa") * 12
    kinds = [m.kind for m in ir.block_mixers]
    assert kinds == [LayerKind.RAT, LayerKind.SLIDING_WINDOW] * 12
    rat, swa = ir.mixer("rat"), ir.mixer("swa")
    assert (rat.heads, rat.head_dim, rat.groups, rat.chunk) == (16, 128, 2, 16)
    assert rat.position is Position.CHUNK_ROPE and rat.forget_gate.is_sigmoid
    assert (swa.window, swa.position, swa.rope_base) == (1024, Position.ROPE, 10000.0)


def test_tiny_hybrid_keeps_its_options():
    ir = lower(load_spec(SPECS[0].parent / "tiny_hybrid.yaml"))
    assert ir.layers == ("rat_nope", "local", "rnn", "global", "rat_nope")
    rat = ir.mixer("rat_nope")
    assert rat.chunk == 4 and rat.chunk_candidates == (4, 8, 16)
    assert rat.input_scale is InputScale.ONE and rat.output_gate is False
    assert str(rat.forget_gate.expr) == "exp(-softplus(a))"
    assert ir.mixer("local").rope_base == 500.0
    assert ir.tie_embeddings is True and ir.ffn.hidden == 96


MINIMAL = """\
version: 1
model: {d_model: 64, n_layers: 6, vocab_size: 97, max_seq_len: 256}
layers:
  r: {kind: rat, heads: 4, head_dim: 16, chunk: 16}
  w: {kind: sliding_window, heads: 4, head_dim: 16, window: 256}
  f: {kind: attention, heads: 2, head_dim: 32}
  g: {kind: rnn}
pattern: [r, w, f, g, r, r]
"""


def test_defaults_are_filled():
    d = parse_spec_text(MINIMAL, F).data
    assert d["model"] == {"d_model": 64, "n_layers": 6, "vocab_size": 97, "max_seq_len": 256,
                          "norm": "rmsnorm", "norm_eps": 1e-6, "tie_embeddings": False,
                          "ffn": {"hidden": 256, "activation": "gelu"}}
    assert d["layers"]["r"] == {"kind": "rat", "heads": 4, "head_dim": 16, "position": "chunk_rope",
                                "rope_base": 10000.0, "groups": 4, "chunk": [16],
                                "forget_gate": "sigmoid", "input_scale": "1 - g",
                                "output_gate": "sigmoid"}
    assert d["layers"]["w"]["position"] == "rope" and d["layers"]["f"]["position"] == "rope"
    assert d["layers"]["g"] == {"kind": "rnn", "forget_gate": "sigmoid", "input_scale": "1 - g",
                                "output_gate": "sigmoid"}
    assert d["layer_names"] == ["r", "w", "f", "g", "r", "r"]


def test_pattern_repeats_to_fill_n_layers():
    d = parse_spec_text(edit("  n_layers: 4", "  n_layers: 8"), F).data
    assert d["pattern"] == ["rat", "swa"] and d["layer_names"] == ["rat", "swa"] * 4


def test_groups_defaults_to_heads_and_ffn_to_four_d_model():
    ir = lower(parse_spec_text(BASE, F))
    assert ir.mixer("rat").groups == 4 and ir.ffn.hidden == 4 * 64


@pytest.mark.parametrize("value, scale", [
    pytest.param("1", InputScale.ONE, id="int-1"),
    pytest.param("'1'", InputScale.ONE, id="string-1"),
    pytest.param("1.0", InputScale.ONE, id="float-1"),
    pytest.param("1 - g", InputScale.ONE_MINUS_G, id="1-minus-g"),
    pytest.param("1-g", InputScale.ONE_MINUS_G, id="1-minus-g-no-spaces"),
    pytest.param("'1  -  g'", InputScale.ONE_MINUS_G, id="1-minus-g-extra-spaces"),
])
def test_input_scale_spellings(value, scale):
    spec = parse_spec_text(after_chunk(f"input_scale: {value}"), F)
    assert spec.data["layers"]["rat"]["input_scale"] == scale.value
    assert lower(spec).mixer("rat").input_scale is scale


@pytest.mark.parametrize("line", [
    pytest.param("chunk: 256", id="chunk-equal-max_seq_len"),
    pytest.param("chunk: 1", id="chunk-1"),
    pytest.param("chunk: [16, 1, 256]", id="chunk-candidates"),
    pytest.param("groups: 1", id="groups-1"),
    pytest.param("position: nope", id="rat-nope"),
    pytest.param("rope_base: 500000", id="rope_base"),
    pytest.param("forget_gate: exp(-softplus(a))", id="gate-expression"),
    pytest.param("output_gate: none", id="no-output-gate"),
])
def test_valid_variations(line):
    text = edit("    chunk: 8\n", f"    {line}\n") if line.startswith("chunk") else after_chunk(line)
    lower(parse_spec_text(text, F))


def test_chunk_candidates_lower_in_order():
    ir = lower(parse_spec_text(edit("chunk: 8", "chunk: [16, 4, 64]"), F))
    rat = ir.mixer("rat")
    assert rat.chunk == 16 and rat.chunk_candidates == (16, 4, 64)
    assert lower(parse_spec_text(edit("chunk: 8", "chunk: [16, 4, 64]"), F),
                 chunks={"rat": 64}).mixer("rat").chunk == 64


def test_odd_head_dim_is_fine_without_rope():
    text = edit("  d_model: 64", "  d_model: 60",
                "    head_dim: 16\n    chunk", "    head_dim: 15\n    position: nope\n    chunk",
                "    head_dim: 16\n    window", "    head_dim: 15\n    position: nope\n    window")
    assert lower(parse_spec_text(text, F)).mixer("swa").head_dim == 15


def test_window_may_equal_max_seq_len():
    assert lower(parse_spec_text(edit("window: 12", "window: 256"), F)).mixer("swa").window == 256


def test_sha256_and_name():
    a, b = parse_spec_text(BASE, "specs/a.yaml"), parse_spec_text(BASE + "# c\n", "specs/a.yaml")
    assert a.name == "a" and a.data == b.data and a.sha256 != b.sha256


def test_docs_error_example_is_real_output():
    """docs/spec.md shows validator output; keep it what the validator prints."""
    doc = (ROOT / "docs" / "spec.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    for example in blocks[:2]:  # rat_swa.yaml and tiny_hybrid.yaml, copied
        assert example in [p.read_text() for p in SPECS]
    with pytest.raises(SpecError) as info:
        parse_spec_text(blocks[2], "specs/broken.yaml")
    assert f"$ ratc check specs/broken.yaml\n{info.value}\n```" in doc
    text = (ROOT / "specs" / "tiny_rnn.yaml").read_text()
    with pytest.raises(SpecError) as info:
        parse_spec_text(edit("forget_gate: sigmoid", "forget_gate: exp(a)", text=text),
                         "specs/exp_gate.yaml")
    assert f"$ ratc check specs/exp_gate.yaml\n{info.value}\n```" in doc
