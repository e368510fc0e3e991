"""The dispatcher picks Triton or the reference as GENLIB_KERNELS, the device and triton's presence say."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import genlib.kernels as kernels
from genlib.kernels import dispatch

CPU = torch.zeros(2)
CUDA = SimpleNamespace(is_cuda=True)  # stands in for a CUDA tensor: the dispatcher reads .is_cuda


@pytest.mark.parametrize(
    "env, has_triton, tensor, expected",
    [
        ("", True, CPU, "torch"),  # auto: CPU tensors take the reference
        ("auto", True, CUDA, "triton"),  # auto: CUDA tensors take Triton
        ("auto", False, CUDA, "torch"),  # ... unless triton is missing
        ("torch", True, CUDA, "torch"),
        ("triton", True, CPU, "triton"),  # the interpreter (TRITON_INTERPRET=1 in conftest)
        (" Triton ", True, CUDA, "triton"),
    ],
)
def test_backend_choice(monkeypatch, env, has_triton, tensor, expected):
    monkeypatch.setenv("GENLIB_KERNELS", env)
    monkeypatch.setattr(dispatch, "HAS_TRITON", has_triton)
    assert dispatch.backend_for(tensor) == expected


def test_none_entries_are_skipped(monkeypatch):
    monkeypatch.delenv("GENLIB_KERNELS", raising=False)
    assert dispatch.backend_for(CUDA, None) == "triton"


def test_unknown_choice_is_rejected(monkeypatch):
    monkeypatch.setenv("GENLIB_KERNELS", "cuda")
    with pytest.raises(ValueError, match="GENLIB_KERNELS='cuda' is not a choice"):
        dispatch.backend_for(CPU)


def test_forcing_triton_without_triton_raises(monkeypatch):
    monkeypatch.setenv("GENLIB_KERNELS", "triton")
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    with pytest.raises(RuntimeError, match="triton is not installed"):
        kernels.attention(torch.zeros(1, 1, 4, 16), torch.zeros(1, 1, 4, 16), torch.zeros(1, 1, 4, 16))


def test_forcing_triton_on_cpu_without_the_interpreter_raises(monkeypatch):
    monkeypatch.setenv("GENLIB_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        dispatch.backend_for(CPU)


def test_every_kernel_falls_back_to_its_reference_without_triton(monkeypatch):
    """With triton missing, auto dispatch runs the references, whatever the device."""
    monkeypatch.delenv("GENLIB_KERNELS", raising=False)
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 5, 8, generator=gen)
    assert torch.equal(kernels.attention(q, q, q), kernels.attention_reference(q, q, q))
    z, codebook = torch.randn(7, 3, generator=gen), torch.randn(4, 3, generator=gen)
    assert torch.equal(kernels.vq_nearest(z, codebook), kernels.vq_nearest_reference(z, codebook))
    x = torch.randn(2, 4, 3, 3, generator=gen)
    assert torch.equal(kernels.group_norm_silu(x, 2), kernels.group_norm_silu_reference(x, num_groups=2))
    step = dict(abar_t=0.3, abar_prev=0.6)
    for a, b in zip(kernels.sampler_step(x, x, **step), kernels.sampler_step_reference(x, x, **step)):
        assert torch.equal(a, b)


def test_genlib_imports_and_runs_without_triton():
    """In a fresh process where ``import triton`` fails, genlib.kernels imports and runs: so no
    genlib module imports triton at import time."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, genlib, genlib.kernels as K\n"
        "assert not K.dispatch.HAS_TRITON\n"
        "q = torch.randn(1, 1, 4, 8)\n"
        "assert K.backend_for(q) == 'torch' and K.attention(q, q, q).shape == q.shape\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GENLIB_KERNELS"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
