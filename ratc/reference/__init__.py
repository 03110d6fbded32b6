"""Plain-PyTorch reference implementations of every ratc layer and the whole LM (DESIGN.md §1).

The oracle every generated kernel is tested against: readable rather than fast, built from the IR,
with the paper's parameter names, run in float64 on a CPU.

- `functional`: the math as functions of tensors; `mixer_core` is a mixer between its projections.
- `modules`: nn.Modules (`RAT`, `SlidingWindowAttention`, `Attention`, `GatedRNN`, `FFN`, `LM`)
  with forward, prefill that returns a decode cache, and a single-token step on that cache.

    >>> from ratc.lower import lower; from ratc.spec import load_spec
    >>> lm = LM(lower(load_spec("specs/tiny_hybrid.yaml")), dtype=torch.float64)
    >>> logits, cache = lm.prefill(torch.randint(0, 101, (2, 9)))
    >>> lm.step(logits[:, -1].argmax(-1), cache).shape
    torch.Size([2, 101])
"""

from .functional import (
    attention_core, forget_gate, gated_scan, mixer_core, rat_core, rms_norm, rnn_core, rope,
    split_proj,
)
from .modules import (
    DECODE_ROOM, FFN, LM, MIXERS, RAT, Attention, GatedRNN, KVCache, LMCache, Mixer, RATCache,
    RMSNorm, RNNCache, SlidingWindowAttention, mixer_module,
)

__all__ = [
    "DECODE_ROOM", "FFN", "LM", "MIXERS", "RAT", "Attention", "GatedRNN", "KVCache", "LMCache",
    "Mixer", "RATCache", "RMSNorm", "RNNCache", "SlidingWindowAttention", "attention_core",
    "forget_gate", "gated_scan", "mixer_core", "mixer_module", "rat_core", "rms_norm", "rnn_core",
    "rope", "split_proj",
]
