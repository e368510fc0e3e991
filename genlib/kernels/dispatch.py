"""Which implementation runs a kernel call: the Triton kernel or the pure-PyTorch reference.

One environment variable, ``GENLIB_KERNELS``, steers every kernel in :mod:`genlib.kernels`:

==========  ===========================================================================
value       what runs
==========  ===========================================================================
``auto``    (default) Triton for CUDA tensors when triton is installed, else the reference
``triton``  always the Triton kernel; CPU tensors run in the Triton *interpreter*, which
            needs ``TRITON_INTERPRET=1`` in the environment before triton is imported
``torch``   always the reference
==========  ===========================================================================

Triton is imported lazily: importing :mod:`genlib.kernels` never imports triton, and a machine
without triton runs every kernel through its reference. :data:`HAS_TRITON` records whether triton
can be imported at all; tests monkeypatch it to check the fallback.

Autograd: the Triton kernels are forward only. Each kernel's public function says what it does
when an input requires a gradient (a custom ``autograd.Function`` whose backward differentiates the
reference, or plainly the reference).
"""

from __future__ import annotations

import importlib.util
import os

import torch

ENV_VAR = "GENLIB_KERNELS"
CHOICES = ("auto", "triton", "torch")

#: Whether ``import triton`` would succeed (checked without importing it).
HAS_TRITON: bool = importlib.util.find_spec("triton") is not None


def requested_backend() -> str:
    """The value of ``GENLIB_KERNELS`` (``auto`` when unset), checked against :data:`CHOICES`."""
    choice = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR}={choice!r} is not a choice; expected one of {', '.join(CHOICES)}")
    return choice


def interpreting() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record an operation on these tensors."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """Decide whether a kernel call on ``tensors`` (``None`` entries are skipped) runs in Triton.

    ``auto`` picks Triton only when triton is installed and every tensor lives on a CUDA device.
    ``triton`` insists, and raises ``RuntimeError`` when it cannot be honoured: triton missing, or
    CPU tensors without the interpreter.
    """
    choice = requested_backend()
    present = [t for t in tensors if t is not None]
    if choice == "torch":
        return False
    if choice == "auto":
        return HAS_TRITON and all(t.is_cuda for t in present)
    if not HAS_TRITON:
        raise RuntimeError(f"{ENV_VAR}=triton, but triton is not installed; unset it to use the reference")
    if not all(t.is_cuda for t in present) and not interpreting():
        raise RuntimeError(
            f"{ENV_VAR}=triton with CPU tensors needs the Triton interpreter: set TRITON_INTERPRET=1 "
            "before triton is imported"
        )
    return True


def backend_for(*tensors: torch.Tensor | None) -> str:
    """``"triton"`` or ``"torch"``: the implementation :func:`use_triton` picks for ``tensors``."""
    return "triton" if use_triton(*tensors) else "torch"


class _TritonForwardReferenceBackward(torch.autograd.Function):
    """Forward through a Triton kernel; backward by differentiating the reference.

    The backward recomputes the reference forward under autograd and asks autograd for the
    gradients: it costs one extra forward in PyTorch, and it is exactly the reference's gradient.
    """

    @staticmethod
    def forward(ctx, triton_fn, reference_fn, kwargs, *tensors):
        ctx.reference_fn, ctx.kwargs = reference_fn, kwargs
        ctx.save_for_backward(*tensors)
        return triton_fn(*tensors, **kwargs)

    @staticmethod
    def backward(ctx, grad_out):
        wants = ctx.needs_input_grad[3:]
        with torch.enable_grad():
            leaves = [
                None if t is None else t.detach().requires_grad_(want)
                for t, want in zip(ctx.saved_tensors, wants)
            ]
            out = ctx.reference_fn(*leaves, **ctx.kwargs)
        wanted = [leaf for leaf, want in zip(leaves, wants) if want]
        grads = iter(torch.autograd.grad(out, wanted, grad_out))
        return (None, None, None, *(next(grads) if want else None for want in wants))


def triton_forward_reference_backward(triton_fn, reference_fn, *tensors, **kwargs):
    """``triton_fn(*tensors, **kwargs)``, differentiable through ``reference_fn``'s gradient.

    ``tensors`` are the positional tensor inputs (``None`` allowed) of both functions; ``kwargs``
    are their non-tensor options.
    """
    return _TritonForwardReferenceBackward.apply(triton_fn, reference_fn, kwargs, *tensors)
