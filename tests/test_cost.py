"""Cost model against hand counts at small sizes."""

import dataclasses

import pytest

from ratc.cost import attention_keys, cache_elements, mixer_cost, model_cost, ffn_cost, T
from ratc.ir import LayerKind
from ratc.lower import lower
from ratc.spec import load_spec

HYBRID = lower(load_spec("specs/tiny_hybrid.yaml"))
RAT_SWA = lower(load_spec("specs/rat_swa.yaml"))


def visible_keys(m, t):
    """Keys query t scores, enumerated one by one (an independent statement of each rule)."""
    if m.kind is LayerKind.RAT:
        return [("chunk", c) for c in range(t // m.chunk)] + [("self", t)]
    if m.kind is LayerKind.SLIDING_WINDOW:
        return [s for s in range(t + 1) if t - s <= m.window]
    if m.kind is LayerKind.ATTENTION:
        return list(range(t + 1))
    return []


@pytest.mark.parametrize("seq", [1, 3, 4, 5, 8, 13, 16, 17, 40])
@pytest.mark.parametrize("layer", ["rat_nope", "local", "global", "rnn"])
def test_attention_keys_match_enumeration(layer, seq):
    m = HYBRID.mixer(layer)
    for chunk in ([1, 2, 4, 16, 64] if m.kind is LayerKind.RAT else [None]):
        mm = dataclasses.replace(m, chunk=chunk) if chunk else m
        want = sum(len(visible_keys(mm, t)) for t in range(seq))
        assert attention_keys(mm).subs(T, seq) == want, (layer, chunk, seq)


@pytest.mark.parametrize("batch,seq", [(1, 1), (2, 7), (3, 33)], ids=["B1-T1", "B2-T7", "B3-T33"])
def test_mixer_flops_by_hand(batch, seq):
    for m in HYBRID.mixers:
        D, F = m.d_model, m.in_features
        proj = 2 * batch * seq * D * F + 2 * batch * seq * D * D  # in_proj, out_proj
        pairs = sum(len(visible_keys(m, t)) for t in range(seq))
        attn = batch * m.heads * pairs * (2 * m.head_dim + 2 * m.head_dim)  # q.k, p.v
        c = mixer_cost(m).evaluate(batch, seq)
        assert c["fwd_flops"] == proj + attn, m.name
        assert c["train_flops"] == 3 * proj + 3.5 * attn, m.name


def test_params_by_hand():
    # rat_nope: no output gate -> in_proj rows x, a (D each) + q, k (G*d each) = 64+64+64+64
    D = 64
    assert mixer_cost(HYBRID.mixer("rat_nope")).params == 256 * D + D * D + D + D
    assert mixer_cost(HYBRID.mixer("local")).params == 3 * D * D + D * D + D
    assert mixer_cost(HYBRID.mixer("rnn")).params == 3 * D * D + D * D + D + D  # z, x, a
    assert ffn_cost(HYBRID.ffn).params == 2 * D * 96 + D
    # tied embeddings: one V x D matrix plus the final norm
    assert model_cost(HYBRID).embedding.params == 101 * D + D


def test_rat_swa_parameter_count():
    D, V, Fh = 2048, 32000, 8192
    rat = (3 * D + 2 * 2 * 128) * D + D * D + D + D
    swa = 3 * D * D + D * D + D
    ffn = 2 * D * Fh + D
    want = 2 * V * D + D + 12 * rat + 12 * swa + 24 * ffn
    assert want == 1_351_739_392
    assert model_cost(RAT_SWA).total.params == want


def test_rat_swa_layer_floor_matches_anchors():
    """The ANCHORS floor: RAT layer prefill 131072 x 2 at 687 TFLOP/s is 26.4 ms, train 85.7 ms."""
    c = mixer_cost(RAT_SWA.mixer("rat")).evaluate(2, 131072)
    assert round(c["fwd_flops"] / 687e12 * 1e3, 1) == 26.4
    # ANCHORS quotes 85.7 ms; this count gives 85.63 ms, 0.1% apart (its rounding is not stated)
    assert round(c["train_flops"] / 687e12 * 1e3, 1) == 85.6


@pytest.mark.parametrize("seq", [1, 5, 8, 9, 100])
def test_cache_elements_by_hand(seq):
    D = 64
    for m in HYBRID.mixers:
        n = cache_elements(m).subs(T, seq)
        if m.kind is LayerKind.RAT:
            assert n == 2 * D * (seq // m.chunk) + 2 * D
        elif m.kind is LayerKind.SLIDING_WINDOW:
            assert n == 2 * D * min(seq, m.window + 1)
        elif m.kind is LayerKind.ATTENTION:
            assert n == 2 * D * seq
        else:
            assert n == D
    # bytes follow the element size
    m = HYBRID.mixer("global")
    assert mixer_cost(m, dtype_bytes=4).cache_bytes.subs(T, seq) == 4 * 2 * D * seq


def test_bytes_moved_by_hand():
    m = HYBRID.mixer("local")
    D, F = 64, 192
    c = mixer_cost(m, dtype_bytes=2).evaluate(2, 10)
    assert c["bytes_moved"] == 2 * ((F * D + D * D + D) + 2 * 10 * (2 * D + 2 * F + 2 * D))
