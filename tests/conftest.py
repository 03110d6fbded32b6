"""Session-wide test setup.

Without a GPU, Triton kernels run through Triton's interpreter: TRITON_INTERPRET=1 must be set
before any rendered kernel module is imported (triton.jit reads it at decoration time). Generated
modules dispatch at call time: CUDA tensors or TRITON_INTERPRET=1 -> Triton, else the emitted
PyTorch path; tests that mean the PyTorch path unset the variable around the call.

Tests marked `gpu` are skipped where there is no CUDA GPU (one rule here, not one per file).

On a machine with several GPUs, `RATC_TEST_GPUS=0,1,2 pytest -n 24 ...` (pytest-xdist) spreads the
workers over those GPUs: worker gwN sees GPU N mod 3 alone.
"""

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if os.environ.get("RATC_TEST_GPUS") and _worker.startswith("gw"):  # before torch touches CUDA
    _gpus = os.environ["RATC_TEST_GPUS"].split(",")
    os.environ["CUDA_VISIBLE_DEVICES"] = _gpus[int(_worker[2:]) % len(_gpus)]

import pytest  # noqa: E402
import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
torch.set_num_threads(min(torch.get_num_threads(), 2))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
