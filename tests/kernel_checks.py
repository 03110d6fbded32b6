"""Helpers shared by the kernel tests: relative error with the worst element named, and a fixture
that NaN-poisons every float tensor torch.empty hands out (unwritten outputs then fail)."""

import math

import pytest
import torch


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, str]:
    """Relative error and a message naming the worst element."""
    y, ref = y.double(), ref.double().to(y.device)
    if not torch.isfinite(y).all():
        bad = (~torch.isfinite(y)).nonzero()[0].tolist()
        return math.inf, (f"non-finite output at [b, t, c] = {bad} "
                          f"({int((~torch.isfinite(y)).sum())} elements)")
    diff = (y - ref).abs()
    err = (diff.norm() / ref.norm().clamp_min(1e-30)).item()
    idx = tuple(int(i) for i in torch.unravel_index(diff.flatten().argmax(), diff.shape))
    return err, (f"rel err {err:.3g}; worst at [b, t, c] = {list(idx)}: got {y[idx].item():.6g}, "
                 f"ref {ref[idx].item():.6g}")


@pytest.fixture
def poisoned(monkeypatch):
    """torch.empty returns NaN-filled float tensors, so unwritten scratch or output shows."""
    empty = torch.empty

    def nan_empty(*args, **kwargs):
        x = empty(*args, **kwargs)
        return x.fill_(float("nan")) if x.is_floating_point() else x

    monkeypatch.setattr(torch, "empty", nan_empty)
