"""Kernel tests run the Triton kernels on CPU tensors in the Triton interpreter.

``TRITON_INTERPRET`` is read when a kernel is defined (``@triton.jit``), so it is set here, at
collection time, before any test imports a ``genlib.kernels.*_triton`` module.
"""

import os
import sys

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")
_early = [name for name in sys.modules if name.startswith("genlib.kernels.") and name.endswith("_triton")]
if _early:
    raise RuntimeError(
        f"{_early} were imported before TRITON_INTERPRET=1 was set; the kernel tests need the interpreter"
    )


@pytest.fixture
def force_triton(monkeypatch):
    """Route every genlib.kernels call to its Triton kernel (the interpreter on CPU)."""
    monkeypatch.setenv("GENLIB_KERNELS", "triton")
